package storage

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
)

// Contact is a person who may sign in to a workspace's portal.
type Contact struct {
	// ID is the contact's id in the support system: 1 to 128 letters,
	// digits or ._:@-, starting with a letter or digit, unique in the
	// workspace.
	ID string `json:"id"`
	// Email is the primary email, stored lowercased and unique in the
	// workspace, so it matches case-insensitively.
	Email string `json:"email"`
	// Name is the contact's display name, passed to the portal; one line
	// of at most 200 characters, optional.
	Name string `json:"name,omitempty"`
	// Status is "active" or "disabled"; only an active contact may sign
	// in. Default: active.
	Status string `json:"status,omitempty"`
	// Source is "manual" or "directory" (synced from the customer's
	// directory). Default: manual.
	Source string `json:"source,omitempty"`
	// DirectoryID is the id of the directory record this contact was
	// synced from, such as an Entra object id; unique in the workspace
	// when set.
	DirectoryID string `json:"directory_id,omitempty"`
	// SCIM is the contact's SCIM User resource as the directory last wrote
	// it (package scim), kept so that attributes the contact has no field
	// for are returned unchanged; empty for contacts that did not come
	// through SCIM. Backends store it as part of the record.
	SCIM RawJSON `json:"scim,omitempty"`
	// UpdatedAt is set by the store, to its clock, on every write.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Contact statuses and sources.
const (
	// StatusActive is a contact who may sign in.
	StatusActive = "active"
	// StatusDisabled is a contact who may not sign in.
	StatusDisabled = "disabled"
	// SourceManual is a contact added by the contacts file or the admin API.
	SourceManual = "manual"
	// SourceDirectory is a contact synced from the customer's directory.
	SourceDirectory = "directory"
)

var contactIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// Normalize fills defaults and lowercases the email. It returns an error
// that names what is wrong with the record.
func (c *Contact) Normalize() error {
	c.ID = strings.TrimSpace(c.ID)
	if !contactIDPattern.MatchString(c.ID) {
		return fmt.Errorf("id %q: must be 1-128 letters, digits or ._:@- and start with a letter or digit", c.ID)
	}
	email, err := NormalizeEmail(c.Email)
	if err != nil {
		return fmt.Errorf("contact %s: %w", c.ID, err)
	}
	c.Email = email
	c.Name = strings.TrimSpace(c.Name)
	if len(c.Name) > 200 || strings.ContainsAny(c.Name, "\r\n\x00") {
		return fmt.Errorf("contact %s: name must be one line of at most 200 characters", c.ID)
	}
	switch c.Status {
	case "":
		c.Status = StatusActive
	case StatusActive, StatusDisabled:
	default:
		return fmt.Errorf("contact %s: status %q: must be active or disabled", c.ID, c.Status)
	}
	switch c.Source {
	case "":
		c.Source = SourceManual
	case SourceManual, SourceDirectory:
	default:
		return fmt.Errorf("contact %s: source %q: must be manual or directory", c.ID, c.Source)
	}
	c.DirectoryID = strings.TrimSpace(c.DirectoryID)
	if len(c.DirectoryID) > 256 || strings.ContainsAny(c.DirectoryID, "\r\n\x00/") {
		return fmt.Errorf("contact %s: directory_id is not valid", c.ID)
	}
	return nil
}

// Active reports whether the contact may sign in.
func (c Contact) Active() bool { return c.Status == StatusActive }

// NormalizeEmail lowercases and checks a bare email address.
func NormalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", errors.New("email is required")
	}
	if len(s) > 254 {
		return "", errors.New("email is too long")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") && !strings.HasSuffix(s, "@localhost") {
		return "", fmt.Errorf("email %q is not a valid address", s)
	}
	return s, nil
}

// ParseContactsJSON decodes and validates a JSON array of contacts (the
// contacts file and the admin API's body). Ids and emails must be unique
// within it; unknown fields are an error.
func ParseContactsJSON(b []byte) ([]Contact, error) {
	var cs []Contact
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cs); err != nil {
		return nil, fmt.Errorf("want a JSON array of contacts: %w", err)
	}
	return cs, ValidateContacts(cs)
}

// ParseContactsCSV decodes and validates contacts from CSV whose header row
// names the columns (id, email, name, status, source, directory_id; id and
// email are required). Errors name the CSV row, counting the header as 1.
func ParseContactsCSV(b []byte) ([]Contact, error) {
	rd := csv.NewReader(bytes.NewReader(b))
	rd.FieldsPerRecord = -1
	rows, err := rd.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	if len(rows) == 0 {
		return nil, errors.New("csv: no header row")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		h = strings.ToLower(strings.TrimSpace(h))
		switch h {
		case "id", "email", "name", "status", "source", "directory_id":
			col[h] = i
		default:
			return nil, fmt.Errorf("csv: unknown column %q", h)
		}
	}
	if _, ok := col["id"]; !ok {
		return nil, errors.New("csv: the header needs an id column")
	}
	if _, ok := col["email"]; !ok {
		return nil, errors.New("csv: the header needs an email column")
	}
	cs := make([]Contact, 0, len(rows)-1)
	for n, row := range rows[1:] {
		if len(row) != len(rows[0]) {
			return nil, fmt.Errorf("csv row %d: %d fields, want %d", n+2, len(row), len(rows[0]))
		}
		get := func(k string) string {
			if i, ok := col[k]; ok {
				return row[i]
			}
			return ""
		}
		cs = append(cs, Contact{ID: get("id"), Email: get("email"), Name: get("name"),
			Status: get("status"), Source: get("source"), DirectoryID: get("directory_id")})
	}
	// Records are counted from the first data row, the header is row 1.
	if err := validateContacts(cs, "csv row", 1); err != nil {
		return nil, err
	}
	return cs, nil
}

// ValidateContacts normalises contacts in place and checks that ids and
// emails are unique; the error names the first bad record (1-based).
func ValidateContacts(cs []Contact) error { return validateContacts(cs, "record", 0) }

// validateContacts is ValidateContacts naming a bad record as unit and its
// position plus offset; a repeated record is always named by its record
// number.
func validateContacts(cs []Contact, unit string, offset int) error {
	ids, emails := map[string]int{}, map[string]int{}
	for i := range cs {
		if err := cs[i].Normalize(); err != nil {
			return fmt.Errorf("%s %d: %w", unit, i+1+offset, err)
		}
		if j, dup := ids[cs[i].ID]; dup {
			return fmt.Errorf("%s %d: id %s repeats record %d", unit, i+1+offset, cs[i].ID, j)
		}
		if j, dup := emails[cs[i].Email]; dup {
			return fmt.Errorf("%s %d: email %s repeats record %d", unit, i+1+offset, cs[i].Email, j)
		}
		ids[cs[i].ID], emails[cs[i].Email] = i+1, i+1
	}
	return nil
}
