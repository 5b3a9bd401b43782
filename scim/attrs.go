package scim

import (
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// A resource is a SCIM resource as JSON decodes it. Attribute names are
// case-insensitive (RFC 7643 §2.1): every lookup goes through key.
type resource = map[string]any

// Core schema URNs; an attribute path prefixed with one of them names a
// top-level attribute, any other URN an extension object.
const (
	UserSchema       = "urn:ietf:params:scim:schemas:core:2.0:User"
	GroupSchema      = "urn:ietf:params:scim:schemas:core:2.0:Group"
	EnterpriseSchema = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	ListSchema       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	PatchSchema      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

// key is the key of m that names attribute name, ignoring case; name
// itself when m has none.
func key(m resource, name string) string {
	if _, ok := m[name]; ok {
		return name
	}
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return name
}

// get returns attribute name of m, ignoring case.
func get(m resource, name string) (any, bool) {
	v, ok := m[key(m, name)]
	return v, ok
}

// getString returns a string attribute, "" when absent or not a string.
func getString(m resource, name string) string {
	v, _ := get(m, name)
	s, _ := v.(string)
	return s
}

// set sets attribute name of m under the spelling it already has; nil
// removes it.
func set(m resource, name string, v any) {
	k := key(m, name)
	if v == nil {
		delete(m, k)
		return
	}
	m[k] = v
}

// isCoreURN reports whether uri is the core schema of Users or Groups.
func isCoreURN(uri string) bool {
	return strings.EqualFold(uri, UserSchema) || strings.EqualFold(uri, GroupSchema)
}

// container is the object an attribute path's name lives in: m itself,
// or the extension object of its URN (made when create is set).
func container(m resource, p filter.AttributePath, create bool) resource {
	uri := p.URI()
	if uri == "" || isCoreURN(uri) {
		return m
	}
	if ext, ok := get(m, uri); ok {
		if e, ok := ext.(resource); ok {
			return e
		}
	}
	if !create {
		return nil
	}
	e := resource{}
	set(m, uri, e)
	return e
}

// values are the values an attribute path selects in m, multi-valued
// attributes flattened: emails.value gives every email address, emails
// alone the value of each email.
func values(m resource, p filter.AttributePath) []any {
	base := container(m, p, false)
	if base == nil {
		return nil
	}
	v, ok := get(base, p.AttributeName)
	if !ok || v == nil {
		return nil
	}
	items, multi := v.([]any)
	if !multi {
		items = []any{v}
	}
	sub := p.SubAttributeName()
	if sub == "" && !multi {
		return items
	}
	if sub == "" {
		sub = "value"
	}
	var out []any
	for _, it := range items {
		if obj, ok := it.(resource); ok {
			if sv, ok := get(obj, sub); ok && sv != nil {
				out = append(out, sv)
			}
		} else if p.SubAttributeName() == "" {
			out = append(out, it)
		}
	}
	return out
}
