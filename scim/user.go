package scim

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kdesk/portalgate/storage"
)

// userFields are the contact fields a User resource gives.
type userFields struct {
	email, name, directoryID string
	active                   bool
}

// checkUser normalizes a User resource as the directory wrote it (active
// as a boolean, no password, no id or meta) and reads the contact fields
// from it.
func checkUser(m resource) (userFields, error) {
	var f userFields
	for _, k := range []string{"id", "meta", "password"} {
		set(m, k, nil)
	}
	set(m, "schemas", schemasOf(m, UserSchema))
	userName := strings.TrimSpace(getString(m, "userName"))
	if userName == "" {
		return f, errorf(400, InvalidValue, "userName is required")
	}
	f.active = true
	if v, ok := get(m, "active"); ok && v != nil {
		switch a := v.(type) {
		case bool:
			f.active = a
		case string:
			b, ok := parseBool(a)
			if !ok {
				return f, errorf(400, InvalidValue, "active must be true or false")
			}
			f.active = b
		default:
			return f, errorf(400, InvalidValue, "active must be true or false")
		}
	}
	set(m, "active", f.active)

	email := primaryEmail(m)
	if email == "" && strings.Contains(userName, "@") {
		email = userName
	}
	if email == "" {
		return f, errorf(400, InvalidValue, "the user needs an email address: emails, or a userName that is one")
	}
	e, err := storage.NormalizeEmail(email)
	if err != nil {
		return f, errorf(400, InvalidValue, "the user's email is not a valid address")
	}
	f.email = e

	f.name = getString(m, "displayName")
	if f.name == "" {
		if n, ok := get(m, "name"); ok {
			if nm, ok := n.(resource); ok {
				f.name = getString(nm, "formatted")
				if f.name == "" {
					f.name = strings.TrimSpace(getString(nm, "givenName") + " " + getString(nm, "familyName"))
				}
			}
		}
	}
	f.name = oneLine(f.name, 200)

	if v, ok := get(m, "externalId"); ok && v != nil {
		s, ok := v.(string)
		if !ok || len(s) > 256 || strings.ContainsAny(s, "\r\n\x00/") {
			return f, errorf(400, InvalidValue, "externalId is not valid")
		}
		f.directoryID = strings.TrimSpace(s)
	}
	return f, nil
}

// primaryEmail is the emails value marked primary, else the work one,
// else the first.
func primaryEmail(m resource) string {
	v, _ := get(m, "emails")
	list, _ := v.([]any)
	var work, first string
	for _, it := range list {
		obj, ok := it.(resource)
		if !ok {
			continue
		}
		val := getString(obj, "value")
		if val == "" {
			continue
		}
		if p, _ := get(obj, "primary"); p == true || p == "true" || p == "True" {
			return val
		}
		if work == "" && strings.EqualFold(getString(obj, "type"), "work") {
			work = val
		}
		if first == "" {
			first = val
		}
	}
	if work != "" {
		return work
	}
	return first
}

// schemasOf is the resource's schemas with the core one first.
func schemasOf(m resource, core string) []any {
	out := []any{core}
	v, _ := get(m, "schemas")
	list, _ := v.([]any)
	for _, s := range list {
		if str, ok := s.(string); ok && !strings.EqualFold(str, core) {
			out = append(out, str)
		}
	}
	// An extension object present is an extension in use.
	if _, ok := get(m, EnterpriseSchema); ok && !containsFold(out, EnterpriseSchema) {
		out = append(out, EnterpriseSchema)
	}
	return out
}

func containsFold(list []any, s string) bool {
	for _, v := range list {
		if str, ok := v.(string); ok && strings.EqualFold(str, s) {
			return true
		}
	}
	return false
}

// oneLine makes s one line of at most n bytes, cut on a character.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// storedUser is a contact's SCIM resource: the one the directory wrote, or
// one made from the contact's fields for a contact that came another way.
func storedUser(c storage.Contact) resource {
	if c.SCIM != "" {
		var m resource
		if json.Unmarshal([]byte(c.SCIM), &m) == nil && m != nil {
			return m
		}
	}
	m := resource{
		"schemas":  []any{UserSchema},
		"userName": c.Email,
		"emails":   []any{resource{"value": c.Email, "type": "work", "primary": true}},
		"active":   c.Active(),
	}
	if c.Name != "" {
		m["displayName"] = c.Name
	}
	return m
}

// renderUser is the User a GET answers: the stored resource with what the
// service provider owns (id, externalId, meta) filled in.
func renderUser(c storage.Contact, location string) resource {
	m := storedUser(c)
	set(m, "id", c.ID)
	if c.DirectoryID != "" {
		set(m, "externalId", c.DirectoryID)
	}
	created := c.UpdatedAt
	if v, ok := get(m, "meta"); ok {
		if mm, ok := v.(resource); ok {
			if t, err := time.Parse(time.RFC3339Nano, getString(mm, "created")); err == nil {
				created = t
			}
		}
	}
	set(m, "meta", resource{
		"resourceType": "User",
		"created":      created.UTC().Format(time.RFC3339Nano),
		"lastModified": c.UpdatedAt.UTC().Format(time.RFC3339Nano),
		"location":     location,
		"version":      etag(c.UpdatedAt),
	})
	return m
}

// etag is a record's version: its last write.
func etag(t time.Time) string {
	return `W/"` + strconv.FormatInt(t.UnixNano(), 36) + `"`
}

// newID makes the id of a new User or Group: a random UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// encodeStored is the resource as the contact keeps it, with the time it
// was created.
func encodeStored(m resource, created time.Time) (storage.RawJSON, error) {
	keep := make(resource, len(m))
	for k, v := range m {
		keep[k] = v
	}
	set(keep, "id", nil)
	set(keep, "meta", resource{"created": created.UTC().Format(time.RFC3339Nano)})
	b, err := json.Marshal(keep)
	return storage.RawJSON(b), err
}
