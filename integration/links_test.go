package integration

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// mintLink asks the admin API for a personalized link.
func (g *gateway) mintLink(t *testing.T, body string) (int, string, string) {
	t.Helper()
	status, resp := g.adminDo(http.MethodPost, "/portal/workspaces/acme/links", "application/json", []byte(body))
	if status != http.StatusCreated {
		return status, "", resp
	}
	var v struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(resp), &v); err != nil {
		t.Fatal(err)
	}
	if v.ExpiresAt.Before(time.Now()) {
		t.Fatalf("link already expired: %s", resp)
	}
	return status, v.URL, resp
}

// pathOf returns the path of a link, checking it points at the configured
// public URL.
func (g *gateway) pathOf(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Scheme+"://"+u.Host != g.base() || !strings.HasPrefix(u.Path, "/_portal/link/") {
		t.Fatalf("link %q is not under %s/_portal/link/", link, g.base())
	}
	return u.EscapedPath()
}

func TestPersonalizedLinkSendsCodeAndReturnsToItsPath(t *testing.T) {
	g := newGateway(t)
	g.start()
	_, link, _ := g.mintLink(t, `{"contact_id":"c-2","return_to":"/tickets/1043?tab=replies","ttl":"2h"}`)
	if len(link) > 200 {
		t.Errorf("link is %d characters; too long for an email", len(link))
	}
	p := g.pathOf(t, link)

	b := g.browser()
	r := b.get(p)
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/code" {
		t.Fatalf("opening the link: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	m := g.mail.wait(t, 10*time.Second)
	if m.To[0] != "sam@acme.example" {
		t.Fatalf("mail to %v", m.To)
	}
	// Opening the link again (a mail scanner, a double click) sends nothing
	// more within the cooldown, and never signs anyone in by itself.
	r = g.browser().get(p)
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/code" {
		t.Fatalf("second open: %d", r.Status)
	}
	g.mail.none(t, 400*time.Millisecond)
	if r := b.get("/tickets/1043?tab=replies", "Accept", "application/json"); r.Status != http.StatusUnauthorized {
		t.Fatalf("opening a link signed the browser in: %d", r.Status)
	}
	code := b.get("/_portal/code")
	r = b.enterCode(csrfOf(t, code.Body), m.Code())
	if r.Status != http.StatusSeeOther || r.Location != "/tickets/1043?tab=replies" {
		t.Fatalf("code: %d %q", r.Status, r.Location)
	}
	if r := b.get("/tickets/1043?tab=replies"); r.Status != http.StatusOK {
		t.Fatalf("after sign-in: %d", r.Status)
	}
}

func TestBadLinksShowInvalidPortalLink(t *testing.T) {
	g := newGateway(t)
	g.start()
	_, link, _ := g.mintLink(t, `{"contact_id":"c-1","return_to":"/dashboard"}`)
	p := g.pathOf(t, link)
	tok := strings.TrimPrefix(p, "/_portal/link/")
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	var bad []string
	for i := range raw {
		c := append([]byte{}, raw...)
		c[i] ^= 0x01
		bad = append(bad, base64.RawURLEncoding.EncodeToString(c))
	}
	bad = append(bad, "x", tok[:len(tok)-1], tok[:len(tok)/2], tok+"A", "%00", strings.Repeat("A", 3000))
	for _, b := range bad {
		r := g.browser().get("/_portal/link/" + b)
		if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "Invalid portal link") || !strings.Contains(r.Body, "fresh link") {
			t.Fatalf("token %q: %d", b, r.Status)
		}
	}

	// A contact disabled after the link was made.
	if s, body := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts", "application/json",
		[]byte(`[{"id":"c-1","email":"jane@acme.example","status":"disabled"}]`)); s != http.StatusOK {
		t.Fatalf("disabling: %d %s", s, body)
	}
	if r := g.browser().get(p); r.Status != http.StatusBadRequest {
		t.Fatalf("link of a disabled contact: %d", r.Status)
	}
	g.mail.none(t, 500*time.Millisecond)
	// One client opened them all: its refusals are recorded as the 1st
	// and the 10th of the window, not one record each.
	if n := len(g.auditEvents("event=link_invalid&limit=1000")); n != 2 {
		t.Fatalf("%d link_invalid audit events for %d invalid opens from one client, want 2 (the 1st and the 10th)", n, len(bad)+1)
	}
}

func TestLinkAdminAPIRefusesBadInput(t *testing.T) {
	g := newGateway(t)
	g.start()
	for _, tc := range []struct{ body, want string }{
		{`{"contact_id":"nobody"}`, "no contact"},
		{`{"contact_id":"c-3"}`, "disabled"},
		{`{"contact_id":"c-1","return_to":"//evil.example/x"}`, "local path"},
		{`{"contact_id":"c-1","return_to":"https://evil.example/"}`, "local path"},
		{`{"contact_id":"c-1","return_to":"/_portal/signin"}`, "local path"},
		{`{"contact_id":"c-1","ttl":"400d"}`, "at most"},
		{`{"contact_id":"c-1","ttl":"soon"}`, "duration"},
		{`{"contact_id":"c-1","ttl":"-5m"}`, "duration"},
		{`{"contact_id":""}`, "contact_id or email is required"},
		{`{"contact_id":"c-1","email":"jane@acme.example"}`, "not both"},
		{`{"email":"nobody@acme.example"}`, "no contact"},
		{`{"contact":"c-1"}`, "unknown field"},
		{`not json`, "JSON object"},
	} {
		status, _, body := g.mintLink(t, tc.body)
		if status != http.StatusBadRequest || !strings.Contains(body, tc.want) || !strings.HasPrefix(strings.TrimSpace(body), "{") {
			t.Errorf("%s: %d %s, want 400 mentioning %q", tc.body, status, body, tc.want)
		}
	}
	if s, body := g.adminDo(http.MethodPost, "/portal/workspaces/nope/links", "application/json", []byte(`{"contact_id":"c-1"}`)); s != http.StatusNotFound {
		t.Errorf("unknown workspace: %d %s", s, body)
	}
	if n := len(g.signInEvents("")); n != 0 {
		t.Errorf("refused calls left %d audit events", n)
	}
}
