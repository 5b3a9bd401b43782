package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/integration/e2e"
)

// TestDemo runs the README's demo (integration/demo, as `./xcaddy.sh run`
// starts it, on free ports) and signs in through it with the code that
// `mail log` prints: the contact lands on the page asked for, the portal
// shows who is signed in, and its sign-out button signs out.
func TestDemo(t *testing.T) {
	bin := builtCaddy(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("demo")); err != nil {
		t.Fatal(err)
	}
	gate, portal, admin := freePort(t), freePort(t), freePort(t)
	cfg, err := os.ReadFile(filepath.Join(dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	c := strings.NewReplacer("localhost:2019", fmt.Sprintf("localhost:%d", admin),
		"localhost:8080", fmt.Sprintf("localhost:%d", gate), "8081", fmt.Sprint(portal)).Replace(string(cfg))
	if c == string(cfg) || !strings.Contains(c, fmt.Sprintf("http://:%d", portal)) {
		t.Fatal("the demo Caddyfile no longer has the ports this test moves")
	}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "caddy.log")
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	log := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	cmd := exec.Command(bin, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", gate))

	base := fmt.Sprintf("http://localhost:%d", gate)
	client := e2e.NewClient(base, e2e.Options{Timeout: 10 * time.Second})
	// open sends a request and follows its redirects, as a browser does; it
	// returns the page it lands on and that page's path.
	open := func(method, path string, form url.Values, hdr ...string) (response, string) {
		t.Helper()
		at, err := url.Parse(base + path)
		if err != nil {
			t.Fatal(err)
		}
		r, err := client.Do(method, path, form, hdr...)
		for hops := 0; err == nil && r.Status/100 == 3 && r.Location != "" && hops < 10; hops++ {
			if at, err = at.Parse(r.Location); err == nil {
				r, err = client.Get(at.RequestURI())
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return r, at.Path
	}
	get := func(path string) (response, string) {
		t.Helper()
		return open(http.MethodGet, path, nil)
	}
	post := func(path string, form url.Values, hdr ...string) (response, string) {
		t.Helper()
		return open(http.MethodPost, path, form, hdr...)
	}

	page, at := get("/tickets")
	if at != "/_portal/signin" {
		t.Fatalf("a visitor lands on %s, want the sign-in page\n%s\n%s", at, page.Body, log())
	}
	page, at = post("/_portal/signin", url.Values{"csrf": {csrfOf(t, page.Body)}, "email": {"jane@acme.example"}})
	if at != "/_portal/code" {
		t.Fatalf("after the email: %s\n%s", at, page.Body)
	}
	// the log mailer's own short line, which the README tells people to
	// look for
	codeLine := regexp.MustCompile(`"msg":"code for jane@acme\.example: (` + e2e.CodePattern.String() + `)"`)
	var code string
	eventually(t, 30*time.Second, "the code line in the demo's log", func() bool {
		if m := codeLine.FindStringSubmatch(log()); m != nil {
			code = m[1]
		}
		return code != ""
	})
	if !strings.Contains(log(), "mail log: sign-in codes are written to this log") {
		t.Error("the demo runs with mail log, but Caddy did not warn that codes go to the log")
	}
	page, at = post("/_portal/code", url.Values{"csrf": {csrfOf(t, page.Body)}, "code": {code}})
	if page.Status != http.StatusOK || at != "/tickets" || !strings.Contains(page.Body, "Jane Doe") {
		t.Fatalf("after the code: %d %s\n%s", page.Status, at, page.Body)
	}
	if !strings.Contains(page.Body, `action="/_portal/signout"`) {
		t.Fatal("the demo portal shows no sign-out button")
	}
	// The button, as a browser sends it from the portal's page.
	if _, at = post("/_portal/signout", url.Values{}, "Origin", base, "Sec-Fetch-Site", "same-origin"); at != "/_portal/signin" {
		t.Fatalf("after sign-out: %s", at)
	}
	if _, at = get("/tickets"); at != "/_portal/signin" {
		t.Fatalf("signed out, /tickets gives %s", at)
	}

	// The second workspace, by host name on the same port: its own brand,
	// and its languages (French for a French browser).
	globex := func(path string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", gate, path), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = fmt.Sprintf("globex.localhost:%d", gate)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Accept-Language", "fr-CA,fr;q=0.9")
		res, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	if r := globex("/tickets"); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/_portal/signin" {
		t.Fatalf("globex visitor: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	r := globex("/_portal/signin")
	var b strings.Builder
	_, _ = io.Copy(&b, r.Body)
	for _, want := range []string{`<html lang="fr" dir="ltr">`, "Globex Kundenservice", `src="data:image/svg`, "--accent:#0f7b6c", "Globex GmbH", "Connexion", `href="?lang=de"`} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("the globex sign-in page lacks %q:\n%s", want, b.String())
		}
	}
}
