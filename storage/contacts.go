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
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Contact is a person who may sign in to a workspace's portal.
type Contact struct {
	// ID is the contact's id in the support system: 1 to 128 letters,
	// digits or ._:@-, starting with a letter or digit, unique in the
	// workspace.
	ID string `json:"id"`
	// Email is the primary email, stored in the form NormalizeEmail gives
	// (lowercase, NFC local part, ASCII domain) and unique in the
	// workspace, so it matches case-insensitively.
	Email string `json:"email"`
	// Name is the contact's display name, passed to the portal; at most
	// 200 characters without control characters, optional.
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
	// Origin says which import owns the contact: OriginFile for a contact
	// brought in by the workspace's contacts_file, which disables it once
	// the file no longer lists it; empty for contacts written through the
	// admin API (an admin upsert takes a contact over). Set by the store's
	// ReplaceContacts, never taken from input. Unlike Source, it is no
	// product field.
	Origin string `json:"origin,omitempty"`
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
	// OriginFile marks a contact imported from a workspace's contacts_file.
	OriginFile = "file"
)

// ContactSet names the contacts a ReplaceContacts call is the whole of:
// by Origin (the contacts an import owns, such as a contacts_file's) or
// by Source (the contacts of a product source, such as every directory
// contact, for a scripted sync). Exactly one is set.
type ContactSet struct {
	// Origin, when set, is the import that owns the set (OriginFile).
	Origin string `json:"origin,omitempty"`
	// Source, when set, is the source whose contacts make the set
	// (SourceDirectory or SourceManual), whatever imported them.
	Source string `json:"source,omitempty"`
}

// Holds reports whether c belongs to the set.
func (s ContactSet) Holds(c Contact) bool {
	if s.Origin != "" {
		return c.Origin == s.Origin
	}
	return s.Source != "" && c.Source == s.Source
}

// Mark makes c a member of the set, as ReplaceContacts writes it: of the
// set's origin, or of its source and then owned by no import (an admin
// write takes a contact over).
func (s ContactSet) Mark(c *Contact) {
	if s.Origin != "" {
		c.Origin = s.Origin
		return
	}
	c.Source, c.Origin = s.Source, ""
}

// Validate reports a set that names neither or both, or an unknown source.
func (s ContactSet) Validate() error {
	switch {
	case (s.Origin == "") == (s.Source == ""):
		return errors.New("a contact set is named by an origin or by a source")
	case s.Source != "" && s.Source != SourceManual && s.Source != SourceDirectory:
		return fmt.Errorf("source %q: must be manual or directory", s.Source)
	}
	return nil
}

// ReplaceResult counts what ReplaceContacts did.
type ReplaceResult struct {
	// Upserted counts contacts written: new, or changed.
	Upserted int `json:"upserted"`
	// Disabled counts contacts of the origin that the new set no longer
	// holds, now disabled and signed out.
	Disabled int `json:"disabled"`
	// Unchanged counts contacts already stored exactly as given.
	Unchanged int `json:"unchanged"`
}

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
	if hasControl(c.Name) {
		return fmt.Errorf("contact %s: name must not contain control characters (such as a line break, tab or NUL)", c.ID)
	}
	if utf8.RuneCountInString(c.Name) > 200 || !utf8.ValidString(c.Name) {
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
	if hasControl(c.DirectoryID) {
		return fmt.Errorf("contact %s: directory_id must not contain control characters", c.ID)
	}
	if len(c.DirectoryID) > 256 || strings.ContainsRune(c.DirectoryID, '/') || !utf8.ValidString(c.DirectoryID) {
		return fmt.Errorf("contact %s: directory_id must be at most 256 bytes of UTF-8 without '/'", c.ID)
	}
	return nil
}

// Active reports whether the contact may sign in.
func (c Contact) Active() bool { return c.Status == StatusActive }

// hasControl reports whether s holds a control character (Unicode
// category Cc), which would break headers, logs and CSV exports.
func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}

// NormalizeEmail checks a bare email address and returns the one form
// every comparison uses (contacts, the sign-in form, SSO claims): the local
// part NFC-normalized and lowercased, the domain in its IDNA (UTS #46)
// ASCII form, lowercase. Addresses with a character that case folding
// turns into ASCII (U+212A KELVIN SIGN into k, U+017F LONG S into s, U+0130
// into i) are refused: they would look like, or fold into, another address.
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("email is required")
	}
	if len(s) > 254 {
		return "", errors.New("email is too long")
	}
	if !utf8.ValidString(s) || hasControl(s) {
		return "", fmt.Errorf("email %q is not a valid address", s)
	}
	if r, ok := foldsToASCII(s); ok {
		return "", fmt.Errorf("email %q: the character %q (U+%04X) reads as an ASCII letter; type the address in plain letters", s, r, r)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 1 || at == len(s)-1 {
		return "", fmt.Errorf("email %q is not a valid address", s)
	}
	local := strings.ToLower(norm.NFC.String(s[:at]))
	domain, err := idna.Lookup.ToASCII(s[at+1:])
	if err != nil {
		return "", fmt.Errorf("email %q: the domain is not a valid internationalized domain name", s)
	}
	domain = strings.ToLower(domain)
	out := local + "@" + domain
	if len(out) > 254 {
		return "", errors.New("email is too long")
	}
	a, err := mail.ParseAddress(out)
	if err != nil || a.Address != out || a.Name != "" || !strings.Contains(domain, ".") && domain != "localhost" {
		return "", fmt.Errorf("email %q is not a valid address", s)
	}
	return out, nil
}

// foldsToASCII returns the first non-ASCII rune of s that lowercasing or
// case folding maps onto ASCII. It checks rune by rune what
// strings.ToLower(s) would do, and the rune's whole case-folding orbit.
func foldsToASCII(s string) (rune, bool) {
	for _, r := range s {
		if r < utf8.RuneSelf {
			continue
		}
		if unicode.ToLower(r) < utf8.RuneSelf || unicode.ToUpper(r) < utf8.RuneSelf {
			return r, true
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < utf8.RuneSelf {
				return r, true
			}
		}
	}
	// strings.ToLower may expand a rune (U+0130 into "i" and a combining
	// dot): any ASCII it yields that the input did not hold is refused too.
	if asciiCount(strings.ToLower(s)) != asciiCount(s) {
		for _, r := range s {
			if r >= utf8.RuneSelf && asciiCount(strings.ToLower(string(r))) > 0 {
				return r, true
			}
		}
	}
	return 0, false
}

func asciiCount(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < utf8.RuneSelf {
			n++
		}
	}
	return n
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
	// Origin is the store's to set: a record read back from the admin API
	// and sent again is taken over by the sender, not kept the file's.
	for i := range cs {
		cs[i].Origin = ""
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
