package storage

import (
	"reflect"
	"strings"
	"testing"
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
		`[{"id":"c-1","email":"a@b.example","directory_id":"a/b"}]`:               "record 1: contact c-1: directory_id is not valid",
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
