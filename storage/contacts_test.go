package storage

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseContactsJSON(t *testing.T) {
	cs, err := ParseContactsJSON([]byte(`[
		{"id": " c-1 ", "email": "Jane@Acme.example", "name": " Jane Doe "},
		{"id": "c-2", "email": "joe@acme.example", "status": "disabled", "source": "directory", "directory_id": "entra-2"}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Contact{
		{ID: "c-1", Email: "jane@acme.example", Name: "Jane Doe", Status: StatusActive, Source: SourceManual},
		{ID: "c-2", Email: "joe@acme.example", Status: StatusDisabled, Source: SourceDirectory, DirectoryID: "entra-2"},
	}
	if !reflect.DeepEqual(cs, want) {
		t.Fatalf("ParseContactsJSON = %+v, want %+v", cs, want)
	}

	for in, wantErr := range map[string]string{
		``:   "want a JSON array of contacts: EOF",
		`{}`: "want a JSON array of contacts: json: cannot unmarshal object into Go value of type []storage.Contact",
		`[{"id":"c-1","email":"a@b.example","x":1}]`:                              `want a JSON array of contacts: json: unknown field "x"`,
		`[{"id":"c-1","email":"a@b.example"},{"id":"c-1","email":"c@b.example"}]`: "record 2: id c-1 repeats record 1",
		`[{"id":"c-1","email":"a@b.example"},{"id":"c-2","email":"A@b.example"}]`: "record 2: email a@b.example repeats record 1",
		`[{"id":"","email":"a@b.example"}]`:                                       `record 1: id "": must be 1-128 letters, digits or ._:@- and start with a letter or digit`,
		`[{"id":"c-1","email":"nope"}]`:                                           `record 1: contact c-1: email "nope" is not a valid address`,
		`[{"id":"c-1"}]`:                                                          "record 1: contact c-1: email is required",
		`[{"id":"c-1","email":"a@b.example","status":"gone"}]`:                    `record 1: contact c-1: status "gone": must be active or disabled`,
		`[{"id":"c-1","email":"a@b.example","source":"x"}]`:                       `record 1: contact c-1: source "x": must be manual or directory`,
		`[{"id":"c-1","email":"a@b.example","directory_id":"a/b"}]`:               "record 1: contact c-1: directory_id must be at most 256 bytes of UTF-8 without '/'",
	} {
		if _, err := ParseContactsJSON([]byte(in)); err == nil || err.Error() != wantErr {
			t.Errorf("ParseContactsJSON(%s): err = %v, want %q", in, err, wantErr)
		}
	}
}

func TestParseContactsCSV(t *testing.T) {
	cs, err := ParseContactsCSV([]byte("Name, ID ,email,status,source,directory_id\nJane,c-1,JANE@acme.example,,directory,entra-1\nJoe,c-2,joe@acme.example,disabled,,\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Contact{
		{ID: "c-1", Email: "jane@acme.example", Name: "Jane", Status: StatusActive, Source: SourceDirectory, DirectoryID: "entra-1"},
		{ID: "c-2", Email: "joe@acme.example", Name: "Joe", Status: StatusDisabled, Source: SourceManual},
	}
	if !reflect.DeepEqual(cs, want) {
		t.Fatalf("ParseContactsCSV = %+v, want %+v", cs, want)
	}
	if cs, err := ParseContactsCSV([]byte("id,email\n")); err != nil || len(cs) != 0 {
		t.Errorf("header only: %v, %v; want no contacts", cs, err)
	}

	for in, wantErr := range map[string]string{
		``:                                       "csv: no header row",
		"id\n":                                   "csv: the header needs an email column",
		"email\n":                                "csv: the header needs an id column",
		"id,email,foo\n":                         `csv: unknown column "foo"`,
		"id,email\nc-1\n":                        "csv row 2: 1 fields, want 2",
		"id,email\n\"c-1,a@b\n":                  `csv: parse error on line 2, column 10: extraneous or missing " in quoted-field`,
		"id,email\n,a@b.example\n":               `csv row 2: id "": must be 1-128 letters, digits or ._:@- and start with a letter or digit`,
		"id,email,status\nc-1,a@b.example,zzz\n": `csv row 2: contact c-1: status "zzz": must be active or disabled`,
		"id,email\nc-1,a@b.example\nc-2,A@b.example\n": "csv row 3: email a@b.example repeats record 1",
		"id,email\nc-1,a@b.example\nc-1,x@b.example\n": "csv row 3: id c-1 repeats record 1",
	} {
		if _, err := ParseContactsCSV([]byte(in)); err == nil || err.Error() != wantErr {
			t.Errorf("ParseContactsCSV(%q): err = %v, want %q", in, err, wantErr)
		}
	}
}

func TestValidateContacts(t *testing.T) {
	cs := []Contact{{ID: "c-1", Email: " A@B.example "}, {ID: "c-2", Email: "b@b.example"}}
	if err := ValidateContacts(cs); err != nil {
		t.Fatal(err)
	}
	if cs[0].Email != "a@b.example" || cs[0].Status != StatusActive || cs[0].Source != SourceManual {
		t.Errorf("ValidateContacts did not normalise in place: %+v", cs[0])
	}
	if err := ValidateContacts(nil); err != nil {
		t.Errorf("ValidateContacts(nil) = %v", err)
	}
	err := ValidateContacts([]Contact{{ID: "c-1", Email: "a@b.example"}, {ID: "c-2", Email: "a@localhost"}, {ID: "c-3", Email: "a@b"}})
	if err == nil || err.Error() != `record 3: contact c-3: email "a@b" is not a valid address` {
		t.Errorf("ValidateContacts: err = %v", err)
	}
}

// checkParsed is what every successful parse guarantees.
func checkParsed(t *testing.T, cs []Contact) {
	t.Helper()
	ids, emails := map[string]bool{}, map[string]bool{}
	for _, c := range cs {
		again := c
		if err := again.Normalize(); err != nil || again != c {
			t.Fatalf("parsed contact %+v is not normalised: %+v, %v", c, again, err)
		}
		if ids[c.ID] || emails[c.Email] {
			t.Fatalf("parsed contacts repeat an id or email: %+v", cs)
		}
		ids[c.ID], emails[c.Email] = true, true
	}
}

func FuzzParseContactsJSON(f *testing.F) {
	f.Add([]byte(`[{"id":"c-1","email":"a@b.example"},{"id":"c-2","email":"B@b.example","status":"disabled"}]`))
	f.Add([]byte(`[{"id":"c-1","email":"a@b.example","source":"directory","directory_id":"x"}]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := ParseContactsJSON(b)
		if err == nil {
			checkParsed(t, cs)
		}
	})
}

func FuzzParseContactsCSV(f *testing.F) {
	f.Add([]byte("id,email,name\nc-1,a@b.example,Jane\nc-2,b@b.example,\"Doe, Joe\"\n"))
	f.Add([]byte("email,id,status,source,directory_id\na@b.example,c-1,disabled,directory,d\n"))
	f.Add([]byte("id\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := ParseContactsCSV(b)
		if err == nil {
			checkParsed(t, cs)
		} else if !strings.HasPrefix(err.Error(), "csv") {
			t.Fatalf("CSV error %q does not say csv", err)
		}
	})
}

// TestNormalizeEmail: the one form every comparison uses, and the
// addresses that must be refused because folding them turns non-ASCII
// into ASCII.
func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{
		" Jane@Acme.Example ":           "jane@acme.example",
		"jane@localhost":                "jane@localhost",
		"Jose\u0301@acme.example":       "jos\u00e9@acme.example", // NFD local part → NFC
		"jos\u00e9@acme.example":        "jos\u00e9@acme.example",
		"jane@B\u00fccher.Example":      "jane@xn--bcher-kva.example", // IDNA
		"jane@xn--bcher-kva.example":    "jane@xn--bcher-kva.example",
		"jane@\u00e9xample.example":     "jane@xn--xample-9ua.example",
		"\u00c9lodie@acme.example":      "\u00e9lodie@acme.example",
		"jane@\uff41cme.example":        "jane@acme.example", // full-width a, mapped by UTS #46
		"jane+tag@support.acme.example": "jane+tag@support.acme.example",
	} {
		got, err := NormalizeEmail(in)
		if err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
		// Normalizing is idempotent.
		if again, err := NormalizeEmail(got); err != nil || again != got {
			t.Errorf("NormalizeEmail(%q) = %q, %v; not stable", got, again, err)
		}
	}
	for _, in := range []string{
		"",
		"nope",
		"@acme.example",
		"jane@",
		"jane@acme",
		"Jane Doe <jane@acme.example>",
		"\u212Aate@acme.example",  // KELVIN SIGN → k
		"ja\u017Fon@acme.example", // LONG S → s
		"\u0130da@acme.example",   // I WITH DOT ABOVE → i
		"jane@\u212Acme.example",  // in the domain too
		"ja\u0000ne@acme.example",
		"jane\n@acme.example",
		"jane@acme..example",
		"jane@-acme.example",
		"\xff@acme.example",
		strings.Repeat("a", 250) + "@b.example",
	} {
		if got, err := NormalizeEmail(in); err == nil {
			t.Errorf("NormalizeEmail(%q) = %q, want an error", in, got)
		}
	}
}

// TestControlCharactersRefused: a name or directory id with a control
// character is refused at every import path, naming the record.
func TestControlCharactersRefused(t *testing.T) {
	for _, bad := range []string{"\x00", "\t", "\r", "\n", "\x1b[31m", "\u0085", "\x7f"} {
		name, _ := json.Marshal("Jane" + bad + "Doe")
		dir, _ := json.Marshal("entra" + bad + "1")
		for _, tc := range []struct{ in, want string }{
			{`[{"id":"c-1","email":"a@b.example"},{"id":"c-2","email":"b@b.example","name":` + string(name) + `}]`,
				"record 2: contact c-2: name must not contain control characters"},
			{`[{"id":"c-1","email":"a@b.example","source":"directory","directory_id":` + string(dir) + `}]`,
				"record 1: contact c-1: directory_id must not contain control characters"},
		} {
			if _, err := ParseContactsJSON([]byte(tc.in)); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("ParseContactsJSON(%s): err = %v, want %q", tc.in, err, tc.want)
			}
		}
		csv := "id,email,name,directory_id\nc-1,a@b.example,Jane,\n\"c-2\",b@b.example,\"Jane" + bad + "Doe\",\n"
		if _, err := ParseContactsCSV([]byte(csv)); err == nil || !strings.HasPrefix(err.Error(), "csv row 3: contact c-2: name must not contain control characters") {
			t.Errorf("ParseContactsCSV with %q in a name: err = %v", bad, err)
		}
		csv = "id,email,directory_id\nc-1,a@b.example,\"entra" + bad + "1\"\n"
		if _, err := ParseContactsCSV([]byte(csv)); err == nil || !strings.HasPrefix(err.Error(), "csv row 2: contact c-1: directory_id must not contain control characters") {
			t.Errorf("ParseContactsCSV with %q in a directory id: err = %v", bad, err)
		}
	}
	// Blanks around a name are trimmed, not refused.
	cs, err := ParseContactsJSON([]byte(`[{"id":"c-1","email":"a@b.example","name":" Jane\t"}]`))
	if err != nil || cs[0].Name != "Jane" {
		t.Errorf("a name with blanks around it: %+v, %v", cs, err)
	}
}

// emailSeeds are the fuzz seeds of FuzzNormalizeEmail: tricky forms of
// addresses (folding, NFC/NFD, IDNA, controls, lengths).
var emailSeeds = []string{
	"jane@acme.example", " JANE@ACME.EXAMPLE ", "jane@localhost",
	"\u212Aate@acme.example", "ja\u017Fon@acme.example", "\u0130da@acme.example",
	"Jose\u0301@acme.example", "jos\u00e9@acme.example", "jane@B\u00fccher.example",
	"jane@xn--bcher-kva.example", "jane@\uff41cme.example", "jane@acme.example\u3002",
	"ja\u0000ne@acme.example", "jane\r\n@acme.example", "\"jane doe\"@acme.example",
	"jane@[192.0.2.1]", "jane@acme..example", "@", "a@b", "\xff\xfe@acme.example",
	"\u00df@acme.example", "\u03a3\u03c3\u03c2@acme.example", "jane@xn--.example",
}

// FuzzNormalizeEmail: an accepted address is normalized for good
// (idempotent), holds no control character, no rune that folds into ASCII,
// and an ASCII domain.
func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range emailSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeEmail(in)
		if err != nil {
			return
		}
		if again, err := NormalizeEmail(out); err != nil || again != out {
			t.Fatalf("NormalizeEmail(%q) = %q, but again %q, %v", in, out, again, err)
		}
		if hasControl(out) || !utf8.ValidString(out) {
			t.Fatalf("NormalizeEmail(%q) = %q holds a control character or bad UTF-8", in, out)
		}
		if r, bad := foldsToASCII(out); bad {
			t.Fatalf("NormalizeEmail(%q) = %q holds %q, which folds into ASCII", in, out, r)
		}
		if d := out[strings.LastIndexByte(out, '@')+1:]; asciiCount(d) != len(d) || d != strings.ToLower(d) {
			t.Fatalf("NormalizeEmail(%q) = %q: domain %q is not lowercase ASCII", in, out, d)
		}
	})
}
