package scim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
)

const ws = "acme"

type fixture struct {
	t      *testing.T
	h      *Handler
	store  *badgerstore.Store
	events []storage.AuditEvent
}

func newFixture(t *testing.T, groups ...string) *fixture {
	t.Helper()
	s, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := &fixture{t: t, store: s}
	f.h = &Handler{Store: s, Workspace: ws, Prefix: "/_portal/scim/v2", Groups: groups,
		Audit: func(_ *http.Request, e storage.AuditEvent) { f.events = append(f.events, e) }}
	return f
}

// do sends one request and decodes the JSON answer (nil for none).
func (f *fixture) do(method, path, body string, hdr ...string) (int, map[string]any, http.Header) {
	f.t.Helper()
	r := httptest.NewRequest(method, "/_portal/scim/v2"+path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	var m map[string]any
	if w.Body.Len() > 0 {
		if ct := w.Header().Get("Content-Type"); ct != ContentType {
			f.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
			f.t.Fatalf("%s %s: %v: %s", method, path, err, w.Body)
		}
	}
	return w.Code, m, w.Header()
}

func (f *fixture) want(status int, method, path, body string) map[string]any {
	f.t.Helper()
	got, m, _ := f.do(method, path, body)
	if got != status {
		f.t.Fatalf("%s %s = %d %v, want %d", method, path, got, m, status)
	}
	return m
}

func (f *fixture) contact(id string) storage.Contact {
	f.t.Helper()
	c, err := f.store.Contact(context.Background(), ws, id)
	if err != nil {
		f.t.Fatalf("contact %s: %v", id, err)
	}
	return c
}

func (f *fixture) session(contactID string) string {
	f.t.Helper()
	hash := newID()
	now := time.Now()
	err := f.store.PutSession(context.Background(), storage.Session{IDHash: hash, Workspace: ws, ContactID: contactID,
		Method: "code", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		f.t.Fatal(err)
	}
	return hash
}

func (f *fixture) sessions(contactID string) int {
	f.t.Helper()
	ss, err := f.store.Sessions(context.Background(), ws, contactID)
	if err != nil {
		f.t.Fatal(err)
	}
	return len(ss)
}

func (f *fixture) lastEvent() storage.AuditEvent {
	if len(f.events) == 0 {
		return storage.AuditEvent{}
	}
	return f.events[len(f.events)-1]
}

const janeBody = `{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
  "externalId": "0a1b2c3d-entra-object-id",
  "userName": "jane@acme.onmicrosoft.com",
  "active": true,
  "displayName": "Jane Doe",
  "title": "Engineer",
  "emails": [{"primary": true, "type": "work", "value": "Jane.Doe@Acme.Example"}],
  "name": {"formatted": "Jane Doe", "familyName": "Doe", "givenName": "Jane"},
  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "42", "department": "R&D"}
}`

// TestEntraSequence replays Entra ID's documented provisioning calls.
func TestEntraSequence(t *testing.T) {
	f := newFixture(t)
	// The validation probe: a random userName must give an empty list.
	m := f.want(200, "GET", `/Users?filter=userName+eq+"7b9f3c1e-0000-4a7c-9c33-random"`, "")
	if m["totalResults"] != 0.0 || len(m["Resources"].([]any)) != 0 || m["schemas"].([]any)[0] != ListSchema {
		t.Fatalf("probe = %v, want an empty ListResponse", m)
	}
	m = f.want(201, "POST", "/Users", janeBody)
	id := m["id"].(string)
	c := f.contact(id)
	if c.Email != "jane.doe@acme.example" || c.Name != "Jane Doe" || c.DirectoryID != "0a1b2c3d-entra-object-id" ||
		c.Source != storage.SourceDirectory || !c.Active() {
		t.Fatalf("contact = %+v", c)
	}
	if f.lastEvent().Event != EventProvisioned || f.lastEvent().Actor != Actor {
		t.Errorf("event = %+v", f.lastEvent())
	}
	// Read back: nothing the directory wrote is lost.
	m = f.want(200, "GET", "/Users/"+id, "")
	ext := m[EnterpriseSchema].(map[string]any)
	if m["title"] != "Engineer" || ext["employeeNumber"] != "42" || m["userName"] != "jane@acme.onmicrosoft.com" || m["active"] != true {
		t.Fatalf("read back = %v", m)
	}
	m = f.want(200, "GET", `/Users?filter=externalId+eq+"0a1b2c3d-entra-object-id"`, "")
	if m["totalResults"] != 1.0 {
		t.Fatalf("by externalId = %v", m)
	}
	// Updates: capitalised ops, path-less values with path keys, the
	// work email by filter.
	f.want(200, "PATCH", "/Users/"+id, `{"schemas":["`+PatchSchema+`"],"Operations":[
	  {"op":"Replace","path":"emails[type eq \"work\"].value","value":"jane@acme.example"},
	  {"op":"Replace","value":{"displayName":"Jane Q. Doe","name.givenName":"Janet"}},
	  {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Support"}]}`)
	c = f.contact(id)
	if c.Email != "jane@acme.example" || c.Name != "Jane Q. Doe" {
		t.Fatalf("after PATCH = %+v", c)
	}
	if e := f.lastEvent(); e.Event != EventChanged || !strings.Contains(e.Reason, "email jane@acme.example (was jane.doe@acme.example)") {
		t.Errorf("event = %+v", e)
	}
	m = f.want(200, "GET", "/Users/"+id, "")
	if m["name"].(map[string]any)["givenName"] != "Janet" || m[EnterpriseSchema].(map[string]any)["department"] != "Support" {
		t.Fatalf("after PATCH = %v", m)
	}
	// Deactivation with active as the string "False" ends the sessions.
	f.session(id)
	f.want(200, "PATCH", "/Users/"+id, `{"schemas":["`+PatchSchema+`"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	if c = f.contact(id); c.Active() || f.sessions(id) != 0 {
		t.Fatalf("after deactivation: %+v, %d sessions", c, f.sessions(id))
	}
	if e := f.lastEvent(); e.Event != EventDeprovisioned || !strings.Contains(e.Reason, "status disabled (was active)") {
		t.Errorf("event = %+v", e)
	}
	m = f.want(200, "GET", "/Users/"+id, "")
	if m["active"] != false {
		t.Errorf("active = %v", m["active"])
	}
	f.want(200, "PATCH", "/Users/"+id, `{"Operations":[{"op":"Replace","value":{"active":"True"}}]}`)
	if !f.contact(id).Active() {
		t.Fatal("not reactivated")
	}
	f.want(204, "DELETE", "/Users/"+id, "")
	f.want(404, "GET", "/Users/"+id, "")
	if e := f.lastEvent(); e.Event != EventDeleted {
		t.Errorf("event = %+v", e)
	}
}

// TestOktaSequence: Okta filters with paging, creates, updates with PUT
// and deactivates with PUT or PATCH.
func TestOktaSequence(t *testing.T) {
	f := newFixture(t)
	m := f.want(200, "GET", `/Users?filter=userName+eq+"bob@acme.example"&startIndex=1&count=100`, "")
	if m["totalResults"] != 0.0 || m["startIndex"] != 1.0 {
		t.Fatalf("probe = %v", m)
	}
	body := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"bob@acme.example",
	  "name":{"givenName":"Bob","familyName":"Smith"},"emails":[{"primary":true,"value":"bob@acme.example","type":"work"}],
	  "displayName":"","locale":"en-US","externalId":"00u1okta","groups":[],"password":"hunter2hunter2","active":true}`
	m = f.want(201, "POST", "/Users", body)
	id := m["id"].(string)
	if _, has := m["password"]; has {
		t.Fatal("password returned")
	}
	if c := f.contact(id); c.Name != "Bob Smith" || strings.Contains(string(c.SCIM), "hunter2") {
		t.Fatalf("contact = %+v", c)
	}
	m = f.want(200, "GET", `/Users?filter=userName+eq+"BOB@acme.example"&startIndex=1&count=100`, "")
	if m["totalResults"] != 1.0 {
		t.Fatalf("lookup = %v", m)
	}
	put := strings.Replace(body, `"givenName":"Bob"`, `"givenName":"Robert"`, 1)
	f.want(200, "PUT", "/Users/"+id, put)
	if c := f.contact(id); c.Name != "Robert Smith" {
		t.Fatalf("after PUT = %+v", c)
	}
	f.session(id)
	f.want(200, "PUT", "/Users/"+id, strings.Replace(put, `"active":true`, `"active":false`, 1))
	if c := f.contact(id); c.Active() || f.sessions(id) != 0 {
		t.Fatalf("after PUT active false = %+v", c)
	}
	f.want(200, "PATCH", "/Users/"+id, `{"schemas":["`+PatchSchema+`"],"Operations":[{"op":"replace","value":{"active":true}}]}`)
	f.want(200, "PATCH", "/Users/"+id, `{"schemas":["`+PatchSchema+`"],"Operations":[{"op":"replace","value":{"active":false}}]}`)
	if f.contact(id).Active() {
		t.Fatal("PATCH active false did not disable")
	}
}

func TestFilters(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{
		`{"userName":"ann@acme.example","displayName":"Ann","externalId":"x-1","emails":[{"value":"ann@acme.example","type":"work"}]}`,
		`{"userName":"ben@acme.example","displayName":"Ben","externalId":"x-2"}`,
		`{"userName":"cyd@globex.example","displayName":"Cyd","emails":[{"value":"cyd@globex.example","type":"home"}]}`,
	} {
		f.want(201, "POST", "/Users", u)
	}
	count := func(filter string) float64 {
		t.Helper()
		m := f.want(200, "GET", "/Users?filter="+strings.ReplaceAll(filter, " ", "+"), "")
		return m["totalResults"].(float64)
	}
	for filter, want := range map[string]float64{
		`userName eq "ANN@acme.example"`:               1,
		`userName sw "b"`:                              1,
		`emails.value eq "cyd@globex.example"`:         1,
		`emails[type eq "work"]`:                       1,
		`displayName eq "Ben" or displayName eq "Cyd"`: 2,
		`userName sw "a" and externalId eq "x-1"`:      1,
		`externalId eq "X-1"`:                          0,
		`externalId pr`:                                2,
		`not (externalId pr)`:                          1,
		`userName co "acme"`:                           2,
		`meta.resourceType eq "User"`:                  3,
		`urn:ietf:params:scim:schemas:core:2.0:User:userName ew "globex.example"`: 1,
	} {
		if got := count(filter); got != want {
			t.Errorf("%s: %v results, want %v", filter, got, want)
		}
	}
	m := f.want(200, "GET", "/Users", "")
	id := m["Resources"].([]any)[0].(map[string]any)["id"].(string)
	if count(`id eq "`+id+`"`) != 1 {
		t.Error("id eq")
	}
	code, m, _ := f.do("GET", "/Users?filter=userName+eq", "")
	if code != 400 || m["scimType"] != InvalidFilter || m["schemas"].([]any)[0] != ErrorSchema {
		t.Errorf("bad filter = %d %v", code, m)
	}
	// Paging.
	m = f.want(200, "GET", "/Users?startIndex=2&count=1", "")
	if m["totalResults"] != 3.0 || m["itemsPerPage"] != 1.0 || m["startIndex"] != 2.0 {
		t.Errorf("page = %v", m)
	}
	m = f.want(200, "GET", "/Users?startIndex=3&count=10", "")
	if m["itemsPerPage"] != 1.0 {
		t.Errorf("last page = %v", m)
	}
	m = f.want(200, "GET", "/Users?count=0", "")
	if m["totalResults"] != 3.0 || len(m["Resources"].([]any)) != 0 {
		t.Errorf("count=0 = %v", m)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	m := f.want(201, "POST", "/Users", `{"userName":"ann@acme.example"}`)
	id := m["id"].(string)
	for _, tc := range []struct {
		method, path, body string
		status             int
		scimType           string
	}{
		{"POST", "/Users", `{"userName":"ann2","emails":[{"value":"ANN@acme.example"}]}`, 409, Uniqueness},
		{"POST", "/Users", `{"userName":"nobody"}`, 400, InvalidValue},
		{"POST", "/Users", `{"userName":"x@acme.example","active":"maybe"}`, 400, InvalidValue},
		{"POST", "/Users", `{not json`, 400, InvalidSyntax},
		{"POST", "/Users", `{"emails":[{"value":"y@acme.example"}]}`, 400, InvalidValue},
		{"PATCH", "/Users/" + id, `{"Operations":[{"op":"jump","path":"active","value":false}]}`, 400, InvalidSyntax},
		{"PATCH", "/Users/" + id, `{"Operations":[{"op":"remove"}]}`, 400, NoTarget},
		{"PATCH", "/Users/" + id, `{"Operations":[{"op":"replace","path":"emails[type eq","value":1}]}`, 400, InvalidPath},
		{"PATCH", "/Users/" + id, `{"Operations":[]}`, 400, InvalidSyntax},
		{"GET", "/Users/nope", ``, 404, ""},
		{"DELETE", "/Groups/nope", ``, 404, ""},
		{"GET", "/Bulk", ``, 404, ""},
		{"POST", "/Users", `{"userName":"` + strings.Repeat("a", MaxBody) + `"}`, 413, ""},
	} {
		code, m, _ := f.do(tc.method, tc.path, tc.body)
		if code != tc.status || (tc.scimType != "" && m["scimType"] != tc.scimType) || m["status"] != http.StatusText(code) && m["status"] != itoa(code) {
			t.Errorf("%s %s %.40s = %d %v, want %d %s", tc.method, tc.path, tc.body, code, m, tc.status, tc.scimType)
		}
	}
	// If-Match.
	_, _, hdr := f.do("GET", "/Users/"+id, "")
	tag := hdr.Get("ETag")
	if tag == "" {
		t.Fatal("no ETag")
	}
	if code, _, _ := f.do("PATCH", "/Users/"+id, `{"Operations":[{"op":"replace","path":"displayName","value":"A"}]}`, "If-Match", `W/"old"`); code != 412 {
		t.Errorf("stale If-Match = %d, want 412", code)
	}
	if code, _, _ := f.do("PATCH", "/Users/"+id, `{"Operations":[{"op":"replace","path":"displayName","value":"A"}]}`, "If-Match", tag); code != 200 {
		t.Errorf("current If-Match = %d, want 200", code)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestGroupsScopeAccess(t *testing.T) {
	f := newFixture(t, "Portal Users", "Partners")
	ann := f.want(201, "POST", "/Users", `{"userName":"ann@acme.example"}`)["id"].(string)
	ben := f.want(201, "POST", "/Users", `{"userName":"ben@acme.example"}`)["id"].(string)
	if f.contact(ann).Active() {
		t.Fatal("a user in no configured group is active")
	}
	g := f.want(201, "POST", "/Groups", `{"schemas":["`+GroupSchema+`"],"displayName":"Portal Users","members":[{"value":"`+ann+`"}]}`)
	gid := g["id"].(string)
	if !f.contact(ann).Active() || f.contact(ben).Active() {
		t.Fatal("membership did not activate ann alone")
	}
	other := f.want(201, "POST", "/Groups", `{"displayName":"Everyone","members":[{"value":"`+ben+`"}]}`)["id"].(string)
	if f.contact(ben).Active() {
		t.Fatal("an unconfigured group activated ben")
	}
	// Entra ID adds and removes members by PATCH with a value list.
	f.want(204, "PATCH", "/Groups/"+gid, `{"schemas":["`+PatchSchema+`"],"Operations":[{"op":"Add","path":"members","value":[{"value":"`+ben+`"}]}]}`)
	if !f.contact(ben).Active() {
		t.Fatal("added member not active")
	}
	f.session(ben)
	f.want(204, "PATCH", "/Groups/"+gid, `{"schemas":["`+PatchSchema+`"],"Operations":[{"op":"Remove","path":"members","value":[{"value":"`+ben+`"}]}]}`)
	if f.contact(ben).Active() || f.sessions(ben) != 0 {
		t.Fatal("removed member still active or signed in")
	}
	if e := f.lastEvent(); e.Event != EventDeprovisioned || e.ContactID != ben {
		t.Errorf("event = %+v", e)
	}
	// Okta removes by filter.
	f.want(204, "PATCH", "/Groups/"+gid, `{"Operations":[{"op":"remove","path":"members[value eq \"`+ann+`\"]"}]}`)
	if f.contact(ann).Active() {
		t.Fatal("member removed by filter still active")
	}
	f.want(200, "PUT", "/Groups/"+gid, `{"displayName":"Portal Users","members":[{"value":"`+ann+`"},{"value":"`+ben+`"}]}`)
	if !f.contact(ann).Active() || !f.contact(ben).Active() {
		t.Fatal("PUT members not active")
	}
	// A user deactivated stays disabled whatever its groups.
	f.want(200, "PATCH", "/Users/"+ann, `{"Operations":[{"op":"replace","path":"active","value":false}]}`)
	if f.contact(ann).Active() {
		t.Fatal("deactivated member active")
	}
	// Deleting the group deprovisions its members.
	f.want(204, "DELETE", "/Groups/"+gid, "")
	if f.contact(ben).Active() {
		t.Fatal("member of a deleted group still active")
	}
	m := f.want(200, "GET", `/Groups?filter=displayName+eq+"Everyone"&excludedAttributes=members`, "")
	res := m["Resources"].([]any)
	if len(res) != 1 || res[0].(map[string]any)["id"] != other {
		t.Fatalf("groups = %v", m)
	}
	if _, has := res[0].(map[string]any)["members"]; has {
		t.Error("excludedAttributes=members ignored")
	}
	if code, m, _ := f.do("POST", "/Groups", `{"displayName":"x","members":[{"value":"nope"}]}`); code != 400 || m["scimType"] != InvalidValue {
		t.Errorf("unknown member = %d %v", code, m)
	}
	if code, m, _ := f.do("POST", "/Groups", `{"displayName":"everyone"}`); code != 409 || m["scimType"] != Uniqueness {
		t.Errorf("repeated group = %d %v", code, m)
	}
}

func TestDiscovery(t *testing.T) {
	f := newFixture(t)
	m := f.want(200, "GET", "/ServiceProviderConfig", "")
	if m["patch"].(map[string]any)["supported"] != true {
		t.Errorf("ServiceProviderConfig = %v", m)
	}
	m = f.want(200, "GET", "/ResourceTypes", "")
	if m["totalResults"] != 2.0 {
		t.Errorf("ResourceTypes = %v", m)
	}
	f.want(200, "GET", "/ResourceTypes/User", "")
	m = f.want(200, "GET", "/Schemas", "")
	if m["totalResults"] != 3.0 {
		t.Errorf("Schemas = %v", m)
	}
	f.want(200, "GET", "/Schemas/"+UserSchema, "")
	if code, _, _ := f.do("DELETE", "/ServiceProviderConfig", ""); code != 405 {
		t.Errorf("DELETE ServiceProviderConfig = %d", code)
	}
}
