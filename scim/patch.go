package scim

import (
	"encoding/json"
	"reflect"
	"strings"

	filter "github.com/scim2/filter-parser/v2"
)

// patchRequest is a PATCH body (RFC 7644 §3.5.2).
type patchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []patchOp `json:"Operations"`
}

// patchOp is one operation. Op is compared ignoring case.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Value any    `json:"value,omitempty"`
}

// maxOps bounds the operations of one PATCH.
const maxOps = 1000

// decodePatch reads a PATCH body.
func decodePatch(b []byte) (patchRequest, error) {
	var p patchRequest
	if err := json.Unmarshal(b, &p); err != nil {
		return p, errorf(400, InvalidSyntax, "the body is not a PatchOp")
	}
	if len(p.Operations) == 0 {
		return p, errorf(400, InvalidSyntax, "the PatchOp has no Operations")
	}
	if len(p.Operations) > maxOps {
		return p, errorf(400, TooMany, "too many Operations")
	}
	return p, nil
}

// applyPatch applies the operations to m in order; on error m may be
// half changed, and the caller drops it.
func applyPatch(m resource, ops []patchOp) error {
	for _, op := range ops {
		if err := applyOp(m, op); err != nil {
			return err
		}
	}
	return nil
}

func applyOp(m resource, op patchOp) error {
	kind := strings.ToLower(strings.TrimSpace(op.Op))
	switch kind {
	case "add", "replace", "remove":
	default:
		return errorf(400, InvalidSyntax, "op must be add, replace or remove")
	}
	if strings.TrimSpace(op.Path) == "" {
		if kind == "remove" {
			return errorf(400, NoTarget, "remove needs a path")
		}
		obj, ok := op.Value.(resource)
		if !ok {
			return errorf(400, InvalidValue, "an operation without a path needs an object value")
		}
		// Each key is a path of its own: Entra ID sends "name.givenName".
		for k, v := range obj {
			if err := applyPath(m, kind, k, v); err != nil {
				return err
			}
		}
		return nil
	}
	return applyPath(m, kind, op.Path, op.Value)
}

// parsePath parses a PATCH path.
func parsePath(s string) (filter.Path, error) {
	if len(s) > maxFilter {
		return filter.Path{}, errorf(400, InvalidPath, "the path is too long")
	}
	p, err := parseSafely(func() (filter.Path, error) { return filter.ParsePath([]byte(s)) })
	if err != nil || p.AttributePath.AttributeName == "" {
		return filter.Path{}, errorf(400, InvalidPath, "the path does not parse")
	}
	return p, nil
}

func applyPath(m resource, kind, raw string, v any) error {
	if isCoreURN(raw) {
		obj, _ := v.(resource)
		for k, sv := range obj {
			if err := applyPath(m, kind, k, sv); err != nil {
				return err
			}
		}
		return nil
	}
	if isSchemaURN(raw) {
		// A path-less value keyed by an extension's URN: its object.
		obj, ok := v.(resource)
		if !ok && kind != "remove" {
			return errorf(400, InvalidValue, "an extension needs an object value")
		}
		ext, _ := get(m, raw)
		cur, _ := ext.(resource)
		switch {
		case kind == "remove":
			set(m, raw, nil)
		case kind == "replace" || cur == nil:
			if cur == nil {
				cur = resource{}
				set(m, raw, cur)
			}
			merge(cur, obj)
		default:
			merge(cur, obj)
		}
		return nil
	}
	p, err := parsePath(raw)
	if err != nil {
		return err
	}
	if isReadOnly(p.AttributePath) {
		// id and meta belong to the service provider; schemas too.
		return nil
	}
	base := container(m, p.AttributePath, kind != "remove")
	if base == nil {
		return nil // removing from an extension that is not there
	}
	name := p.AttributePath.AttributeName
	if p.ValueExpression != nil {
		return applyFiltered(base, kind, name, p, v)
	}
	if sub := p.AttributePath.SubAttributeName(); sub != "" {
		cur, _ := get(base, name)
		switch c := cur.(type) {
		case resource:
			return setValue(c, kind, sub, v)
		case []any:
			for _, it := range c {
				if obj, ok := it.(resource); ok {
					if err := setValue(obj, kind, sub, v); err != nil {
						return err
					}
				}
			}
			return nil
		case nil:
			if kind == "remove" {
				return nil
			}
			obj := resource{}
			set(base, name, obj)
			return setValue(obj, kind, sub, v)
		default:
			return errorf(400, InvalidPath, name+" has no sub-attributes")
		}
	}
	return setValue(base, kind, name, v)
}

// setValue applies an operation to attribute name of obj: add appends to
// a multi-valued attribute and merges into a complex one, replace merges
// a complex one and sets the rest, remove deletes the attribute, or only
// the listed values of a multi-valued one (as Entra ID removes members).
func setValue(obj resource, kind, name string, v any) error {
	cur, has := get(obj, name)
	switch kind {
	case "remove":
		list, multi := cur.([]any)
		if v == nil || !multi {
			set(obj, name, nil)
			return nil
		}
		drop, ok := v.([]any)
		if !ok {
			drop = []any{v}
		}
		kept := list[:0:0]
		for _, it := range list {
			if !containsValue(drop, it) {
				kept = append(kept, it)
			}
		}
		if len(kept) == 0 {
			set(obj, name, nil)
		} else {
			set(obj, name, kept)
		}
		return nil
	case "add":
		if list, multi := cur.([]any); multi && has {
			add, ok := v.([]any)
			if !ok {
				add = []any{v}
			}
			for _, it := range add {
				if !containsValue(list, it) {
					list = append(list, it)
				}
			}
			set(obj, name, list)
			return nil
		}
	}
	if c, ok := cur.(resource); ok {
		if nv, ok := v.(resource); ok {
			merge(c, nv)
			return nil
		}
	}
	if v == nil {
		return errorf(400, InvalidValue, "a value is required for "+kind+" "+name)
	}
	set(obj, name, v)
	return nil
}

// applyFiltered applies an operation to the elements of a multi-valued
// attribute that match the path's filter, such as emails[type eq "work"]
// or members[value eq "…"]. An add or replace that matches nothing makes
// the element the filter describes, when it is a plain equality, as
// Entra ID expects for emails[type eq "work"].value.
func applyFiltered(base resource, kind, name string, p filter.Path, v any) error {
	cur, _ := get(base, name)
	list, _ := cur.([]any)
	sub := p.SubAttributeName()
	var kept []any
	matched := false
	for _, it := range list {
		obj, ok := it.(resource)
		if !ok || !matches(p.ValueExpression, obj) {
			kept = append(kept, it)
			continue
		}
		matched = true
		switch {
		case kind == "remove" && sub == "":
			continue
		case kind == "remove":
			set(obj, sub, nil)
		case sub != "":
			if err := setValue(obj, kind, sub, v); err != nil {
				return err
			}
		default:
			nv, ok := v.(resource)
			if !ok {
				return errorf(400, InvalidValue, "a filtered "+name+" needs an object value")
			}
			merge(obj, nv)
		}
		kept = append(kept, obj)
	}
	if !matched && kind != "remove" {
		obj := resource{}
		if !equalities(p.ValueExpression, obj) {
			return errorf(400, NoTarget, "no "+name+" matches the path's filter")
		}
		if sub != "" {
			if err := setValue(obj, "replace", sub, v); err != nil {
				return err
			}
		} else if nv, ok := v.(resource); ok {
			merge(obj, nv)
		}
		kept = append(kept, obj)
	}
	if len(kept) == 0 {
		set(base, name, nil)
	} else {
		set(base, name, kept)
	}
	return nil
}

// equalities fills obj from a filter made only of "attr eq literal"
// joined by and; false for any other filter.
func equalities(e filter.Expression, obj resource) bool {
	switch e := e.(type) {
	case *filter.AttributeExpression:
		if e.Operator != filter.EQ || e.AttributePath.SubAttribute != nil || e.AttributePath.URIPrefix != nil {
			return false
		}
		set(obj, e.AttributePath.AttributeName, e.CompareValue)
		return true
	case *filter.LogicalExpression:
		return e.Operator == filter.AND && equalities(e.Left, obj) && equalities(e.Right, obj)
	}
	return false
}

// merge copies the attributes of src into dst.
func merge(dst, src resource) {
	for k, v := range src {
		set(dst, k, v)
	}
}

// containsValue reports whether list holds v, or an object with the same
// "value" as v's.
func containsValue(list []any, v any) bool {
	vv := v
	if obj, ok := v.(resource); ok {
		if x, ok := get(obj, "value"); ok {
			vv = x
		}
	}
	for _, it := range list {
		iv := it
		if obj, ok := it.(resource); ok {
			if x, ok := get(obj, "value"); ok {
				iv = x
			}
		}
		if reflect.DeepEqual(iv, vv) {
			return true
		}
	}
	return false
}

// isReadOnly reports whether a path names an attribute the service
// provider owns.
func isReadOnly(p filter.AttributePath) bool {
	if p.URI() != "" && !isCoreURN(p.URI()) {
		return false
	}
	switch strings.ToLower(p.AttributeName) {
	case "id", "meta", "schemas":
		return true
	}
	return false
}

// isSchemaURN reports whether s is a schema URN alone, with no attribute
// after it.
func isSchemaURN(s string) bool {
	return strings.EqualFold(s, EnterpriseSchema) || strings.EqualFold(s, UserSchema) || strings.EqualFold(s, GroupSchema)
}
