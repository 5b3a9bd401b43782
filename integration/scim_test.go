package integration

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/integration/oidctest"
)

const scimToken = "scim-test-token-0123456789abcdef0123456789"

// scimBlock is the workspace option the tests configure.
func scimBlock(groups string) string {
	s := "scim {\n\t\t\t\ttoken " + scimToken + "\n"
	if groups != "" {
		s += "\t\t\t\tgroups " + groups + "\n"
	}
	return s + "\t\t\t}"
}

// scimCall is one SCIM request to base with token; it returns the status,
// the decoded body (nil for none) and the headers.
func scimCall(t *testing.T, base, token, method, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, base+"/_portal/scim/v2"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 && resp.Header.Get("Content-Type") == "application/scim+json" {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %d %v: %s", method, path, resp.StatusCode, err, b)
		}
	}
	return resp.StatusCode, m, resp.Header
}

// scimWant is scimCall with the token, failing unless the status is want.
func scimWant(t *testing.T, base string, want int, method, path, body string) map[string]any {
	t.Helper()
	got, m, _ := scimCall(t, base, scimToken, method, path, body)
	if got != want {
		t.Fatalf("%s %s = %d %v, want %d", method, path, got, m, want)
	}
	return m
}

const patchSchema = `"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]`

// entraUser is the body Entra ID's default attribute mappings send.
func entraUser(upn, mail, objectID string) string {
	return `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "externalId":"` + objectID + `","userName":"` + upn + `","active":true,"displayName":"Ivy Chen",
	  "emails":[{"primary":true,"type":"work","value":"` + mail + `"}],
	  "meta":{"resourceType":"User"},"name":{"formatted":"Ivy Chen","familyName":"Chen","givenName":"Ivy"},
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Support"}}`
}

// TestSCIMEntraSequence replays Entra ID's provisioning against a real
// Caddy on Badger: the probe, create, read back, PATCH updates, and a
// deactivation that ends the contact's open session at its next request.
func TestSCIMEntraSequence(t *testing.T) {
	g := newGateway(t)
	g.extraWorkspace = scimBlock("")
	g.start()
	base := g.base()

	// Without a token, or with a wrong one: 401, the same answer.
	for _, tok := range []string{"", "wrong-token-wrong-token-wrong-token-xx", scimToken + "x"} {
		status, m, hdr := scimCall(t, base, tok, "GET", "/Users", "")
		if status != 401 || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") ||
			m["detail"] != "authentication required" || hdr.Get("Content-Type") != "application/scim+json" {
			t.Fatalf("token %q: %d %v %v", tok, status, hdr, m)
		}
	}
	if ev := g.auditEvents("event=scim_unauthorized"); len(ev) != 1 {
		t.Errorf("bad tokens audited %d times, want once per window", len(ev))
	}

	m := scimWant(t, base, 200, "GET", `/Users?filter=userName+eq+%22a1b2c3d4-random%22`, "")
	if m["totalResults"] != 0.0 {
		t.Fatalf("probe = %v", m)
	}
	m = scimWant(t, base, 201, "POST", "/Users", entraUser("ivy@acme.onmicrosoft.com", "Ivy@Acme.Example", "6b1e-ivy-object-id"))
	id := m["id"].(string)
	m = scimWant(t, base, 200, "GET", "/Users/"+id, "")
	if m["userName"] != "ivy@acme.onmicrosoft.com" || m["externalId"] != "6b1e-ivy-object-id" ||
		m["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)["department"] != "Support" {
		t.Fatalf("read back = %v", m)
	}
	scimWant(t, base, 200, "PATCH", "/Users/"+id, `{`+patchSchema+`,"Operations":[
	  {"op":"Replace","path":"displayName","value":"Ivy Q. Chen"},
	  {"op":"Add","value":{"name.givenName":"Ivy Q."}}]}`)

	// Ivy signs in and uses the portal.
	b := g.browser()
	b.signIn("ivy@acme.example", "/tickets")
	if r := b.get("/tickets"); r.Status != http.StatusOK {
		t.Fatalf("signed in: %d", r.Status)
	}
	_, h := seen(t, b.get("/tickets"))
	if h.Get("X-Portal-Contact-Id") != id || h.Get("X-Portal-Contact-Name") != "Ivy Q. Chen" {
		t.Fatalf("identity = %v", h)
	}

	// Entra ID deactivates: active as the string "False".
	scimWant(t, base, 200, "PATCH", "/Users/"+id, `{`+patchSchema+`,"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	if r := b.get("/tickets"); r.Status != http.StatusSeeOther {
		t.Fatalf("deprovisioned contact's session still works: %d", r.Status)
	}
	// Re-activation does not revive the old session.
	scimWant(t, base, 200, "PATCH", "/Users/"+id, `{`+patchSchema+`,"Operations":[{"op":"Replace","value":{"active":"True"}}]}`)
	if r := b.get("/tickets"); r.Status != http.StatusSeeOther {
		t.Fatalf("re-activation revived a session: %d", r.Status)
	}
	scimWant(t, base, 204, "DELETE", "/Users/"+id, "")
	scimWant(t, base, 404, "GET", "/Users/"+id, "")

	events := strings.Join(g.auditEvents("limit=100"), " ")
	for _, e := range []string{"contact_provisioned", "contact_changed", "contact_deprovisioned", "contact_deleted"} {
		if !strings.Contains(events, e) {
			t.Errorf("audit lacks %s: %s", e, events)
		}
	}
	status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?event=contact_deprovisioned", "", nil)
	if status != 200 || !strings.Contains(body, `"actor":"scim"`) || !strings.Contains(body, "status disabled (was active)") {
		t.Errorf("deprovisioned event: %d %s", status, body)
	}
}

// TestSCIMAbsentWithoutBlock: no scim block, no endpoints.
func TestSCIMAbsentWithoutBlock(t *testing.T) {
	g := newGateway(t)
	g.start()
	if status, _, _ := scimCall(t, g.base(), scimToken, "GET", "/Users", ""); status != 404 {
		t.Fatalf("GET /Users without a scim block = %d, want 404", status)
	}
}

// TestSCIMOktaOnRedis replays Okta's sequence (paged filter, POST, PUT
// updates, PATCH deactivation, group push) against a Redis-backed Caddy
// whose workspace admits only members of "Portal Users".
func TestSCIMOktaOnRedis(t *testing.T) {
	redis := startRedis(t)
	mb := startMailbox(t, "")
	up := startUpstream(t)
	in := startInstance(t, redis, mb.Addr, up, "A", scimBlock(`"Portal Users"`))
	base := in.base()

	m := scimWant(t, base, 200, "GET", `/Users?filter=userName+eq+%22kim@acme.example%22&startIndex=1&count=100`, "")
	if m["totalResults"] != 0.0 || m["startIndex"] != 1.0 {
		t.Fatalf("probe = %v", m)
	}
	user := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"kim@acme.example",
	  "name":{"givenName":"Kim","familyName":"Lee"},"emails":[{"primary":true,"value":"kim@acme.example","type":"work"}],
	  "displayName":"Kim Lee","locale":"en-US","externalId":"00u1kim","groups":[],"active":true}`
	id := scimWant(t, base, 201, "POST", "/Users", user)["id"].(string)
	scimWant(t, base, 200, "PUT", "/Users/"+id, strings.Replace(user, `"displayName":"Kim Lee"`, `"displayName":"Kim S. Lee"`, 1))
	m = scimWant(t, base, 200, "GET", `/Users?filter=userName+eq+%22kim@acme.example%22&startIndex=1&count=100`, "")
	if m["totalResults"] != 1.0 || m["Resources"].([]any)[0].(map[string]any)["displayName"] != "Kim S. Lee" {
		t.Fatalf("after PUT = %v", m)
	}

	// Not yet in Portal Users: no code is sent, no sign-in.
	b := in.browser()
	b.submitEmail("kim@acme.example")
	mb.none(t, time.Second)
	time.Sleep(2500 * time.Millisecond) // the instance's resend_cooldown

	gid := scimWant(t, base, 201, "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Portal Users","members":[]}`)["id"].(string)
	scimWant(t, base, 204, "PATCH", "/Groups/"+gid, `{`+patchSchema+`,"Operations":[{"op":"add","path":"members","value":[{"value":"`+id+`","display":"kim@acme.example"}]}]}`)

	b = in.browser()
	csrf := b.submitEmail("kim@acme.example")
	r := b.enterCode(csrf, mb.wait(t, 15*time.Second).Code())
	if r.Status != http.StatusSeeOther {
		t.Fatalf("code: %d %s", r.Status, r.Body)
	}
	if r := b.get("/tickets"); r.Status != http.StatusOK {
		t.Fatalf("signed in: %d", r.Status)
	}
	// Okta unassigns the user from the group: access ends at once.
	scimWant(t, base, 204, "PATCH", "/Groups/"+gid, `{`+patchSchema+`,"Operations":[{"op":"remove","path":"members[value eq \"`+id+`\"]"}]}`)
	if r := b.get("/tickets"); r.Status != http.StatusSeeOther {
		t.Fatalf("session after leaving the group: %d", r.Status)
	}
	// Back in the group, then deactivated by PATCH.
	scimWant(t, base, 204, "PATCH", "/Groups/"+gid, `{`+patchSchema+`,"Operations":[{"op":"add","path":"members","value":[{"value":"`+id+`"}]}]}`)
	m = scimWant(t, base, 200, "GET", "/Users/"+id, "")
	if m["active"] != true {
		t.Fatalf("user = %v", m)
	}
	scimWant(t, base, 200, "PATCH", "/Users/"+id, `{`+patchSchema+`,"Operations":[{"op":"replace","value":{"active":false}}]}`)
	status, body := in.adminDo(http.MethodGet, "/portal/workspaces/acme/contacts/"+id, "", nil)
	if status != 200 || !strings.Contains(body, `"status":"disabled"`) {
		t.Fatalf("contact after deactivation: %d %s", status, body)
	}
	scimWant(t, base, 204, "DELETE", "/Groups/"+gid, "")
	scimWant(t, base, 204, "DELETE", "/Users/"+id, "")
}

// TestSCIMDirectoryMatchSSO: the SSO directory rule accepts a contact
// provisioned by SCIM whose externalId is the token's subject, and
// refuses it once the directory deactivates it.
func TestSCIMDirectoryMatchSSO(t *testing.T) {
	g, idp := ssoGateway(t, "generic", "corp", "")
	g.extraWorkspace += "\n\t\t\tsso_directory_match\n\t\t\t" + scimBlock("")
	g.start()
	id := scimWant(t, g.base(), 201, "POST", "/Users", entraUser("ivy@acme.example", "ivy@acme.example", "oid-ivy"))["id"].(string)
	idp.SetUser(oidctest.User{Subject: "oid-ivy", Email: "ivy@acme.example", EmailVerified: new(true)})
	b := g.browser()
	if r := b.ssoSignIn("corp"); r.Status != http.StatusSeeOther {
		t.Fatalf("SCIM contact via SSO: %d\n%s", r.Status, r.Body)
	}
	if r := b.get("/tickets"); r.Status != http.StatusOK {
		t.Fatalf("signed in: %d", r.Status)
	}
	scimWant(t, g.base(), 200, "PATCH", "/Users/"+id, `{`+patchSchema+`,"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	if r := b.get("/tickets"); r.Status != http.StatusSeeOther {
		t.Fatalf("session after deactivation: %d", r.Status)
	}
	g.failed(t, g.browser().ssoSignIn("corp"), "contact disabled")
}
