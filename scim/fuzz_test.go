package scim

import (
	"encoding/json"
	"testing"
)

// sample is a resource the fuzzed filters and patches work on.
func sample() resource {
	var m resource
	_ = json.Unmarshal([]byte(janeBody), &m)
	m["id"] = "c-1"
	return m
}

// FuzzFilter: no filter panics the parser or the matcher, and one that
// parses matches or not without error.
func FuzzFilter(f *testing.F) {
	for _, s := range []string{
		`userName eq "jane@acme.example"`, `emails[type eq "work" and value co "@"]`, `not (externalId pr)`,
		`displayName sw "J" or id eq "c-1"`, `meta.lastModified gt "2020-01-01T00:00:00Z"`, `emails.value ew ".example"`,
		`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "42"`, `active eq true`, `x eq 1.5`,
		`((`, `userName eq`, `a[b[c eq 1]]`, `"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := parseFilter(s)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not a SCIM error", err)
			}
			return
		}
		matches(e, sample())
	})
}

// FuzzPatch: no PATCH body panics the applier, and whatever it leaves
// either passes checkUser or is refused with a SCIM error.
func FuzzPatch(f *testing.F) {
	for _, s := range []string{
		`{"Operations":[{"op":"Replace","value":{"active":"False","name.givenName":"J"}}]}`,
		`{"Operations":[{"op":"replace","path":"emails[type eq \"work\"].value","value":"j@acme.example"}]}`,
		`{"Operations":[{"op":"Add","path":"members","value":[{"value":"c-2"}]}]}`,
		`{"Operations":[{"op":"remove","path":"members[value eq \"c-2\"]"}]}`,
		`{"Operations":[{"op":"remove","path":"emails","value":[{"value":"x"}]}]}`,
		`{"Operations":[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":{"value":"m"}}]}`,
		`{"Operations":[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"x"}}}]}`,
		`{"Operations":[{"op":"replace","path":"id","value":"evil"}]}`,
		`{"Operations":[{"op":"add","path":"name.familyName","value":null}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePatch(b)
		if err != nil {
			return
		}
		m := sample()
		if err := applyPatch(m, p.Operations); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not a SCIM error", err)
			}
			return
		}
		if m["id"] != "c-1" {
			t.Fatalf("PATCH changed the id: %v", m["id"])
		}
		if _, err := checkUser(m); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("checkUser error %T is not a SCIM error", err)
			}
		}
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("result does not marshal: %v", err)
		}
	})
}
