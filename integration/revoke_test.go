package integration

import (
	"net/http"
	"strings"
	"testing"
)

// After rotating a leaked secret, an operator signs everyone out at once.
func TestRevokeEverySessionOfTheWorkspace(t *testing.T) {
	g := newGateway(t)
	g.start()
	jane, sam := g.browser(), g.browser()
	jane.signIn("jane@acme.example", "/tickets")
	sam.signIn("sam@acme.example", "/tickets")
	if s, body := g.adminDo(http.MethodDelete, "/portal/workspaces/acme/sessions", "", nil); s != http.StatusBadRequest || !strings.Contains(body, "all=1") {
		t.Fatalf("revoke without saying whose: %d %s", s, body)
	}
	if r := jane.get("/tickets"); r.Status != http.StatusOK {
		t.Fatalf("a refused revoke changed something: %d", r.Status)
	}
	s, body := g.adminDo(http.MethodDelete, "/portal/workspaces/acme/sessions?all=1", "", nil)
	if s != http.StatusOK || !strings.Contains(body, `"revoked":2`) {
		t.Fatalf("revoke all: %d %s", s, body)
	}
	for name, b := range map[string]*browser{"jane": jane, "sam": sam} {
		if r := b.get("/tickets"); r.Status != http.StatusSeeOther {
			t.Fatalf("%s after revoke all: %d", name, r.Status)
		}
	}
	out, err := g.cli(t, "sessions", "revoke", "--all")
	if err != nil || !strings.Contains(out, "0 sessions revoked") {
		t.Fatalf("cli revoke --all: %v\n%s", err, out)
	}
}
