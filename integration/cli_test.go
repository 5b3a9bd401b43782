package integration

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	caddyBinOnce sync.Once
	caddyBinDir  string
	caddyBin     string
	caddyBinErr  error
)

// TestMain removes the Caddy binary builtCaddy wrote (about 100 MB) once
// every test has run.
func TestMain(m *testing.M) {
	code := m.Run()
	if caddyBinDir != "" {
		os.RemoveAll(caddyBinDir)
	}
	os.Exit(code)
}

// builtCaddy builds Caddy with the plugin (cmd/caddy) once per test run.
func builtCaddy(t *testing.T) string {
	t.Helper()
	caddyBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portalgate-caddy-")
		if err != nil {
			caddyBinErr = err
			return
		}
		caddyBinDir = dir
		caddyBin = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", caddyBin, "github.com/kdesk/portalgate/cmd/caddy").CombinedOutput()
		if err != nil {
			caddyBinErr = err
			caddyBin = string(out)
		}
	})
	if caddyBinErr != nil {
		t.Fatalf("building caddy: %v\n%s", caddyBinErr, caddyBin)
	}
	return caddyBin
}

// cli runs `caddy portal ...` against the gateway's admin endpoint.
func (g *gateway) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	args = append([]string{"portal"}, args...)
	args = append(args, "--address", strings.TrimPrefix(g.admin(), "http://"), "--workspace", "acme")
	out, err := exec.Command(builtCaddy(t), args...).CombinedOutput()
	return string(out), err
}

func TestCLI(t *testing.T) {
	g := newGateway(t)
	g.start()

	// link: the printed URL signs the contact in and lands on --to.
	out, err := g.cli(t, "link", "--contact", "c-2", "--to", "/tickets/9", "--ttl", "1h")
	if err != nil {
		t.Fatalf("portal link: %v\n%s", err, out)
	}
	link := strings.Fields(out)[0]
	b := g.browser()
	if r := b.get(g.pathOf(t, link)); r.Status != http.StatusSeeOther {
		t.Fatalf("opening the CLI's link: %d", r.Status)
	}
	m := g.mail.wait(t, 10*time.Second)
	if r := b.enterCode(csrfOf(t, b.get("/_portal/code").Body), m.Code()); r.Location != "/tickets/9" {
		t.Fatalf("landed on %q", r.Location)
	}
	if out, err := g.cli(t, "link", "--contact", "nobody"); err == nil || !strings.Contains(out, "no contact") {
		t.Fatalf("link for an unknown contact: %v\n%s", err, out)
	}

	// contacts import: a CSV with one bad row imports nothing and names it.
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("id,email,name\nn-1,new1@acme.example,New One\nn-2,not-an-email,New Two\n"), 0o600)
	if out, err := g.cli(t, "contacts", "import", bad); err == nil || !strings.Contains(out, "csv row 3") {
		t.Fatalf("bad CSV: %v\n%s", err, out)
	}
	out, _ = g.cli(t, "contacts", "list")
	if strings.Contains(out, "new1@acme.example") {
		t.Fatal("a rejected import wrote a contact")
	}
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(good, []byte("id,email,name,source,directory_id\nn-1,New1@acme.example,New One,directory,d-9\n"), 0o600)
	if out, err := g.cli(t, "contacts", "import", good); err != nil || !strings.Contains(out, "1 contacts imported") {
		t.Fatalf("good CSV: %v\n%s", err, out)
	}
	out, _ = g.cli(t, "contacts", "list")
	if !strings.Contains(out, "new1@acme.example") || !strings.Contains(out, "DIRECTORY ID") {
		t.Fatalf("contacts list:\n%s", out)
	}

	// sessions: list, then revoke signs the contact out at the next request.
	out, _ = g.cli(t, "sessions", "list", "--contact", "c-2")
	if !strings.Contains(out, "c-2") || !strings.Contains(out, "link") {
		t.Fatalf("sessions list:\n%s", out)
	}
	if out, err := g.cli(t, "sessions", "revoke", "--contact", "c-2"); err != nil || !strings.Contains(out, "1 sessions revoked") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if r := b.get("/tickets/9"); r.Status != http.StatusSeeOther {
		t.Fatalf("after revoke: %d", r.Status)
	}

	// audit: the table and the JSON both show what happened.
	out, _ = g.cli(t, "audit", "--contact", "c-2")
	for _, ev := range []string{"link_opened", "code_sent", "code_accepted", "sessions_revoked"} {
		if !strings.Contains(out, ev) {
			t.Errorf("audit lacks %s:\n%s", ev, out)
		}
	}
	out, _ = g.cli(t, "audit", "--event", "sessions_revoked", "--json")
	if !strings.HasPrefix(out, `{"events":[{`) || strings.Contains(out, "code_sent") {
		t.Fatalf("audit --json:\n%s", out)
	}
	if out, err := g.cli(t, "audit", "--since", "yesterday"); err == nil || !strings.Contains(out, "RFC 3339") {
		t.Fatalf("bad --since: %v\n%s", err, out)
	}
}
