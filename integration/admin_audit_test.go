package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/handlers"
)

// signInEvents returns the audit trail's event names, newest first,
// without those every start records (config_loaded, contacts_imported
// from contacts_file).
func (g *gateway) signInEvents(query string) []string {
	g.t.Helper()
	var out []string
	for _, e := range g.auditEvents(query) {
		if e != "config_loaded" && e != "contacts_imported" {
			out = append(out, e)
		}
	}
	return out
}

// linkRow is one link of GET links.
type linkRow struct {
	ID           string    `json:"id"`
	ContactID    string    `json:"contact_id"`
	ReturnTo     string    `json:"return_to"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	CreatedBy    string    `json:"created_by"`
	Opens        int       `json:"opens"`
	LastOpenedAt time.Time `json:"last_opened_at"`
}

func (g *gateway) links(t *testing.T, query string) []linkRow {
	t.Helper()
	status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/links?"+query, "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET links?%s: %d %s", query, status, body)
	}
	var ls []linkRow
	if err := json.Unmarshal([]byte(body), &ls); err != nil {
		t.Fatalf("GET links: %v\n%s", err, body)
	}
	return ls
}

func TestLinksAdminAPIListsAndRevokes(t *testing.T) {
	g := newGateway(t)
	g.start()
	_, link, resp := g.mintLink(t, `{"email":"Sam@acme.example","return_to":"/tickets/7","ttl":"1h"}`)
	var made struct{ ID string }
	if err := json.Unmarshal([]byte(resp), &made); err != nil || len(made.ID) != 32 {
		t.Fatalf("POST links answered %s", resp)
	}
	p := g.pathOf(t, link)
	if strings.Contains(p, "c-2") || strings.Contains(p, "tickets") {
		t.Fatalf("the link shows its contact or path: %s", p)
	}
	ls := g.links(t, "contact_id=c-2")
	if len(ls) != 1 || ls[0].ID != made.ID || ls[0].ContactID != "c-2" || ls[0].ReturnTo != "/tickets/7" ||
		!strings.HasPrefix(ls[0].CreatedBy, "127.0.0.1:") || ls[0].Opens != 0 || !ls[0].LastOpenedAt.IsZero() {
		t.Fatalf("GET links: %+v", ls)
	}
	if r := g.browser().get(p); r.Status != http.StatusSeeOther {
		t.Fatalf("opening the link: %d", r.Status)
	}
	g.mail.wait(t, 10*time.Second)
	if ls := g.links(t, ""); len(ls) != 1 || ls[0].Opens != 1 || ls[0].LastOpenedAt.IsZero() {
		t.Fatalf("after an open: %+v", ls)
	}

	// Revoked at once: the next open is refused.
	if s, body := g.adminDo(http.MethodDelete, "/portal/workspaces/acme/links/"+made.ID, "", nil); s != http.StatusOK || !strings.Contains(body, `"revoked":1`) {
		t.Fatalf("DELETE links/{id}: %d %s", s, body)
	}
	if r := g.browser().get(p); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "Invalid portal link") {
		t.Fatalf("revoked link: %d", r.Status)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		want         string
	}{
		{http.MethodDelete, "links/" + made.ID, http.StatusNotFound, "no live link"},
		{http.MethodDelete, "links/not-an-id", http.StatusNotFound, "no link"},
		{http.MethodDelete, "links", http.StatusBadRequest, "contact_id is required"},
		{http.MethodPut, "links", http.StatusMethodNotAllowed, "not allowed"},
	} {
		if s, body := g.adminDo(tc.method, "/portal/workspaces/acme/"+tc.path, "", nil); s != tc.status || !strings.Contains(body, tc.want) || !strings.HasPrefix(strings.TrimSpace(body), "{") {
			t.Errorf("%s %s: %d %s, want %d mentioning %q", tc.method, tc.path, s, body, tc.status, tc.want)
		}
	}

	// Every link of a contact at once.
	var paths []string
	for range 2 {
		_, l, _ := g.mintLink(t, `{"contact_id":"c-1"}`)
		paths = append(paths, g.pathOf(t, l))
	}
	g.mintLink(t, `{"contact_id":"c-2"}`)
	if s, body := g.adminDo(http.MethodDelete, "/portal/workspaces/acme/links?contact_id=c-1", "", nil); s != http.StatusOK || !strings.Contains(body, `"revoked":2`) {
		t.Fatalf("DELETE links?contact_id: %d %s", s, body)
	}
	for _, p := range paths {
		if r := g.browser().get(p); r.Status != http.StatusBadRequest {
			t.Fatalf("link of a contact whose links were revoked: %d", r.Status)
		}
	}
	if ls := g.links(t, ""); len(ls) != 1 || ls[0].ContactID != "c-2" {
		t.Fatalf("left after revoking c-1's links: %+v", ls)
	}
	revoked := 0
	for _, e := range g.auditEvents("event=link_revoked") {
		if e == "link_revoked" {
			revoked++
		}
	}
	if created := len(g.auditEvents("event=link_created")); created != 4 || revoked != 2 {
		t.Fatalf("%d link_created and %d link_revoked events, want 4 and 2", created, revoked)
	}
}

func TestLinksCLI(t *testing.T) {
	g := newGateway(t)
	g.start()
	out, err := g.cli(t, "link", "--email", "sam@acme.example", "--to", "/tickets/3")
	if err != nil || !strings.Contains(out, "/_portal/link/") {
		t.Fatalf("portal link --email: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "link", "--email", "sam@acme.example", "--contact", "c-2"); err == nil {
		t.Fatalf("portal link with --email and --contact: no error\n%s", out)
	}
	if out, err := g.cli(t, "link"); err == nil {
		t.Fatalf("portal link without a contact: no error\n%s", out)
	}
	g.cli(t, "link", "--contact", "c-1")
	out, err = g.cli(t, "links", "list", "--contact", "c-2")
	if err != nil || !strings.Contains(out, "CREATED BY") || !strings.Contains(out, "/tickets/3") || strings.Contains(out, "c-1") {
		t.Fatalf("links list --contact: %v\n%s", err, out)
	}
	ls := g.links(t, "contact_id=c-2")
	if len(ls) != 1 {
		t.Fatalf("links of c-2: %+v", ls)
	}
	if out, err := g.cli(t, "links", "revoke", "--id", ls[0].ID); err != nil || !strings.Contains(out, "1 links revoked") {
		t.Fatalf("links revoke --id: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "links", "revoke", "--id", ls[0].ID); err == nil || !strings.Contains(out, "no live link") {
		t.Fatalf("links revoke --id twice: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "links", "revoke", "--contact", "c-1"); err != nil || !strings.Contains(out, "1 links revoked") {
		t.Fatalf("links revoke --contact: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "links", "revoke"); err == nil {
		t.Fatalf("links revoke without --id or --contact: no error\n%s", out)
	}
	if out, _ := g.cli(t, "links", "list"); strings.Contains(out, "c-1") || strings.Contains(out, "c-2") {
		t.Fatalf("links left after revoking:\n%s", out)
	}
}

// auditEvent is one event of GET audit.
type auditEvent struct {
	Event     string `json:"event"`
	Actor     string `json:"actor"`
	ContactID string `json:"contact_id"`
	Email     string `json:"email"`
	Reason    string `json:"reason"`
	Count     int    `json:"count"`
}

func (g *gateway) audit(t *testing.T, query string) []auditEvent {
	t.Helper()
	status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?"+query, "", nil)
	if status != http.StatusOK {
		t.Fatalf("audit?%s: %d %s", query, status, body)
	}
	var v struct{ Events []auditEvent }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	return v.Events
}

func TestAdminActionsAuditedWithActor(t *testing.T) {
	g := newGateway(t)
	const secret = "an-integration-secret-of-32-chars!"
	g.extraGlobal = "secret " + secret
	g.start()

	loaded := g.audit(t, "event=config_loaded")
	if len(loaded) != 1 || loaded[0].Actor != "config" || !strings.Contains(loaded[0].Reason, "workspaces acme") ||
		!strings.Contains(loaded[0].Reason, "secret id "+handlers.SecretID([]byte(secret))) || strings.Contains(loaded[0].Reason, secret) {
		t.Fatalf("config_loaded: %+v", loaded)
	}
	if ev := g.audit(t, "event=contacts_imported"); len(ev) != 1 || ev[0].Actor != "file" || ev[0].Count == 0 {
		t.Fatalf("contacts_file import: %+v", ev)
	}

	// An import that disables one contact, changes another's email and
	// adds a third.
	body := `[{"id":"c-1","email":"jane@acme.example","status":"disabled"},
		{"id":"c-2","email":"samuel@acme.example"},{"id":"n-1","email":"new@acme.example"}]`
	if s, resp := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts", "application/json", []byte(body)); s != http.StatusOK {
		t.Fatalf("PUT contacts: %d %s", s, resp)
	}
	imported := g.audit(t, "event=contacts_imported&limit=1")
	if len(imported) != 1 || imported[0].Count != 3 || !strings.HasPrefix(imported[0].Actor, "127.0.0.1:") ||
		!strings.Contains(imported[0].Reason, "1 new, 2 with a new status or email") {
		t.Fatalf("contacts_imported: %+v", imported)
	}
	changed := map[string]auditEvent{}
	for _, e := range g.audit(t, "event=contact_changed") {
		changed[e.ContactID] = e
	}
	if len(changed) != 2 || changed["c-1"].Reason != "status active -> disabled" ||
		changed["c-2"].Reason != "email sam@acme.example -> samuel@acme.example" || changed["c-2"].Actor == "" {
		t.Fatalf("contact_changed: %+v", changed)
	}
	// A refused import changes nothing and audits nothing.
	if s, _ := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts", "application/json", []byte(`[{"id":"c-2","email":"bad"}]`)); s != http.StatusBadRequest {
		t.Fatalf("bad import: %d", s)
	}
	if n := len(g.audit(t, "event=contacts_imported")); n != 2 {
		t.Fatalf("%d contacts_imported events after a refused import, want 2", n)
	}

	if s, resp := g.adminDo(http.MethodDelete, "/portal/workspaces/acme/sessions?contact_id=c-2", "", nil); s != http.StatusOK {
		t.Fatalf("DELETE sessions: %d %s", s, resp)
	}
	if ev := g.audit(t, "event=sessions_revoked"); len(ev) != 1 || ev[0].ContactID != "c-2" || ev[0].Actor == "" {
		t.Fatalf("sessions_revoked: %+v", ev)
	}
	g.mintLink(t, `{"contact_id":"n-1"}`)
	if s, resp := g.adminDo(http.MethodDelete, "/portal/workspaces/acme/contacts/n-1", "", nil); s != http.StatusOK || !strings.Contains(resp, `"links_revoked":1`) {
		t.Fatalf("DELETE contacts/n-1: %d %s", s, resp)
	}
	if ev := g.audit(t, "event=contact_deleted"); len(ev) != 1 || ev[0].ContactID != "n-1" || ev[0].Reason != "0 sessions ended, 1 links revoked" || ev[0].Actor == "" {
		t.Fatalf("contact_deleted: %+v", ev)
	}

	// Unknown event names are refused with a suggestion, by the API and
	// by the CLI.
	if s, resp := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?event=sso_fail", "", nil); s != http.StatusBadRequest ||
		!strings.Contains(resp, "unknown event sso_fail, did you mean sso_failure?") {
		t.Fatalf("audit?event=sso_fail: %d %s", s, resp)
	}
	if out, err := g.cli(t, "audit", "--event", "link_creatd"); err == nil || !strings.Contains(out, "unknown event link_creatd, did you mean link_created?") {
		t.Fatalf("audit --event link_creatd: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "audit", "--event", "contact_changed"); err != nil || !strings.Contains(out, "status active -> disabled") {
		t.Fatalf("audit --event contact_changed: %v\n%s", err, out)
	}
}

func TestAuditExportAPIAndCLI(t *testing.T) {
	g := newGateway(t)
	g.start()
	for range 3 {
		g.mintLink(t, `{"contact_id":"c-1"}`)
	}
	all := g.auditEvents("limit=1000")

	s, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?format=ndjson", "", nil)
	lines := strings.Split(strings.TrimSpace(body), "\n")
	if s != http.StatusOK || len(lines) != len(all) {
		t.Fatalf("format=ndjson: %d, %d lines for %d events\n%s", s, len(lines), len(all), body)
	}
	for i, l := range lines {
		var e auditEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Event != all[i] {
			t.Fatalf("line %d: %q (%v), want event %s", i, l, err, all[i])
		}
	}
	s, body = g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?format=csv&event=link_created", "", nil)
	rows := strings.Split(strings.TrimSpace(body), "\n")
	if s != http.StatusOK || len(rows) != 4 || !strings.HasPrefix(rows[0], "id,time,workspace,event,actor,") || !strings.Contains(rows[1], ",link_created,127.0.0.1:") {
		t.Fatalf("format=csv: %d\n%s", s, body)
	}
	for _, q := range []string{"format=xml", "format=csv&limit=10", "format=csv&since=yesterday", "format=ndjson&event=sso_fail"} {
		if s, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?"+q, "", nil); s != http.StatusBadRequest || !strings.HasPrefix(body, "{") {
			t.Errorf("audit?%s: %d %s, want a JSON 400", q, s, body)
		}
	}

	out, err := g.cli(t, "audit", "export", "--format", "csv", "--since", "2000-01-01T00:00:00Z")
	if err != nil || !strings.HasPrefix(out, "id,time,workspace,event,actor,") || strings.Count(out, "\n") != len(all)+1 {
		t.Fatalf("audit export --format csv: %v\n%s", err, out)
	}
	out, err = g.cli(t, "audit", "export", "--event", "link_created")
	if err != nil || strings.Count(out, "\n") != 3 || !strings.HasPrefix(out, `{"id":`) {
		t.Fatalf("audit export (ndjson): %v\n%s", err, out)
	}
	if out, err := g.cli(t, "audit", "export", "--event", "sso_fail"); err == nil || !strings.Contains(out, "did you mean sso_failure?") {
		t.Fatalf("audit export --event sso_fail: %v\n%s", err, out)
	}
	if out, err := g.cli(t, "audit", "export", "--format", "xml"); err == nil || !strings.Contains(out, "ndjson or csv") {
		t.Fatalf("audit export --format xml: %v\n%s", err, out)
	}
}
