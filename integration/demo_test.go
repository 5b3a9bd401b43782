package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Accept", "text/html")
		return do(t, client, req)
	}
	post := func(path string, form url.Values, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		return do(t, client, req)
	}

	resp, page := get("/tickets")
	if resp.Request.URL.Path != "/_portal/signin" {
		t.Fatalf("a visitor lands on %s, want the sign-in page\n%s\n%s", resp.Request.URL, page, log())
	}
	resp, page = post("/_portal/signin", url.Values{"csrf": {csrfOf(t, page)}, "email": {"jane@acme.example"}})
	if resp.Request.URL.Path != "/_portal/code" {
		t.Fatalf("after the email: %s\n%s", resp.Request.URL, page)
	}
	var code string
	eventually(t, 10*time.Second, "the code in the demo's log", func() bool {
		code = codePattern.FindString(log())
		return code != ""
	})
	resp, page = post("/_portal/code", url.Values{"csrf": {csrfOf(t, page)}, "code": {code}})
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/tickets" || !strings.Contains(page, "Jane Doe") {
		t.Fatalf("after the code: %d %s\n%s", resp.StatusCode, resp.Request.URL, page)
	}
	if !strings.Contains(page, `action="/_portal/signout"`) {
		t.Fatal("the demo portal shows no sign-out button")
	}
	// The button, as a browser sends it from the portal's page.
	resp, _ = post("/_portal/signout", url.Values{}, "Origin", base, "Sec-Fetch-Site", "same-origin")
	if resp.Request.URL.Path != "/_portal/signin" {
		t.Fatalf("after sign-out: %s", resp.Request.URL)
	}
	if resp, _ = get("/tickets"); resp.Request.URL.Path != "/_portal/signin" {
		t.Fatalf("signed out, /tickets gives %s", resp.Request.URL)
	}
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}
