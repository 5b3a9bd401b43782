package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/integration/e2e"
	"github.com/kdesk/portalgate/integration/oidctest"
)

// Forward-auth mode: portalgate answers the auth subrequests of a proxy in
// front of the portal. The tests put a real nginx (auth_request) and a
// second, separate Caddy (forward_auth) in front of the same portal, with
// the configurations the README gives.

func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"nginx", "/usr/sbin/nginx"} {
		if p, err := exec.LookPath(bin); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("nginx is not installed (.ci/run installs it)")
	}
	t.Skip("nginx is not installed")
	return ""
}

// nginxConf is the README's nginx configuration (with all four identity
// headers), on loopback ports, with every path under dir.
const nginxConf = `daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream portalgate { server 127.0.0.1:%[2]d; }
  upstream portal { server %[3]s; }
  server {
    listen 127.0.0.1:%[4]d;

    location = /_portal/auth {
      internal;
      proxy_pass http://portalgate;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    location /_portal/ {
      proxy_pass http://portalgate;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    location / {
      auth_request /_portal/auth;
      auth_request_set $portal_id $upstream_http_x_portal_contact_id;
      auth_request_set $portal_email $upstream_http_x_portal_contact_email;
      auth_request_set $portal_name $upstream_http_x_portal_contact_name;
      auth_request_set $portal_ws $upstream_http_x_portal_workspace;
      auth_request_set $portal_cookie $upstream_http_set_cookie;
      error_page 401 = @portal_signin;
      proxy_set_header X-Portal-Contact-Id $portal_id;
      proxy_set_header X-Portal-Contact-Email $portal_email;
      proxy_set_header X-Portal-Contact-Name $portal_name;
      proxy_set_header X-Portal-Workspace $portal_ws;
      proxy_pass http://portal;
    }
    location @portal_signin {
      add_header Set-Cookie $portal_cookie;
      return 303 /_portal/signin;
    }
  }
}
`

// caddyFrontConf is the README's Caddy forward_auth site, for a separate
// Caddy in front of the portal.
const caddyFrontConf = `{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]s/caddy
}

http://127.0.0.1:%[2]d {
	handle /_portal/* {
		reverse_proxy 127.0.0.1:%[3]d
	}
	handle {
		forward_auth 127.0.0.1:%[3]d {
			uri /_portal/auth
			copy_headers X-Portal-Contact-Id X-Portal-Contact-Email X-Portal-Contact-Name X-Portal-Workspace
		}
		reverse_proxy %[4]s
	}
}
`

// forwardSetup is portalgate in forward-auth mode behind one front proxy.
type forwardSetup struct {
	g     *gateway
	front string // the front proxy's base URL: what contacts use
	idp   *oidctest.Provider
}

// startForward starts portalgate (in this process) in forward-auth mode,
// trusting only 127.0.0.1, with the front proxy on frontPort; sso adds an
// OpenID Connect provider.
func startForward(t *testing.T, frontPort int) *forwardSetup {
	t.Helper()
	g := newGateway(t)
	front := fmt.Sprintf("http://127.0.0.1:%d", frontPort)
	idp := oidctest.Start(t, oidctest.Options{Shape: "generic"})
	idp.RegisterClient("portal-client", "portal-secret", front+"/_portal/sso/corp/callback")
	idp.SetUser(oidctest.User{Subject: "d-2", Email: "sam@acme.example", EmailVerified: new(true)})
	host, port, _ := net.SplitHostPort(g.mail.Addr)
	contacts := filepath.Join(g.dir, "contacts.json")
	if err := os.WriteFile(contacts, []byte(g.contacts), 0o600); err != nil {
		t.Fatal(err)
	}
	g.load(fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	persist_config off
	auto_https off
	storage file_system %[2]s/caddy
	servers {
		trusted_proxies static 127.0.0.1/32
	}
	log {
		output file %[2]s/caddy.log
		level DEBUG
	}
	portal {
		storage_dir %[2]s/portal
		mail smtp {
			host %[3]s
			port %[4]s
			from "Acme Support <support@acme.example>"
			tls none
		}
		workspace acme {
			title "Acme Support"
			url %[5]s
			contacts_file %[6]s
			forward_auth
			sso corp {
				provider oidc
				issuer %[7]s
				client_id portal-client
				client_secret portal-secret
			}
		}
	}
}

:%[8]d {
	portal_auth acme
}
`, g.adminPort, g.dir, host, port, front, contacts, idp.Issuer(), g.httpPort))
	return &forwardSetup{g: g, front: front, idp: idp}
}

// browser is a contact's browser at the front proxy.
func (s *forwardSetup) browser() *browser {
	return &browser{t: s.g.t, g: s.g, c: e2e.NewClient(s.front, e2e.Options{FreshConns: true})}
}

func startNginx(t *testing.T, s *forwardSetup, port int) {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, s.g.httpPort, strings.TrimPrefix(s.g.up.URL, "http://"), port)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error log:\n%s", b)
		}
	})
	if err := e2e.WaitListening(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func startCaddyFront(t *testing.T, s *forwardSetup, port int) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(caddyFrontConf, dir, port, s.g.httpPort, strings.TrimPrefix(s.g.up.URL, "http://"))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(builtCaddy(t), "run", "--config", file, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	out, err := os.Create(filepath.Join(dir, "out.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "out.log"))
			t.Logf("front caddy output:\n%s", b)
		}
	})
	if err := e2e.WaitListening(fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestForwardAuthBehindNginx(t *testing.T) {
	port := freePort(t)
	s := startForward(t, port)
	startNginx(t, s, port)
	testForwardAuth(t, s)
}

func TestForwardAuthBehindCaddy(t *testing.T) {
	port := freePort(t)
	s := startForward(t, port)
	startCaddyFront(t, s, port)
	testForwardAuth(t, s)
}

// testForwardAuth runs the contact's journeys through the front proxy.
func testForwardAuth(t *testing.T, s *forwardSetup) {
	forged := []string{"X-Portal-Contact-Id", "c-999", "X-Portal-Contact-Email", "evil@x.example",
		"X-Portal-Contact-Name", "Evil", "X-Portal-Workspace", "other"}
	wantPortal := func(b *browser, path, id string) {
		t.Helper()
		r := b.get(path, forged...)
		got, h := seen(t, r)
		if r.Status != http.StatusOK || got != path {
			t.Fatalf("GET %s: %d %q", path, r.Status, got)
		}
		for k, want := range map[string]string{"X-Portal-Contact-Id": id, "X-Portal-Workspace": "acme"} {
			if v := h.Values(k); len(v) != 1 || v[0] != want {
				t.Fatalf("%s at the portal = %q, want only %q", k, v, want)
			}
		}
		if strings.Contains(strings.Join(h.Values("X-Portal-Contact-Name"), ""), "Evil") {
			t.Fatal("a forged name reached the portal")
		}
	}

	// By code: the deep link comes back after sign-in.
	before := s.g.up.requests()
	jane := s.browser()
	// nginx's "return 303 /_portal/signin" names the front host in full.
	local := func(loc string) string { return strings.TrimPrefix(loc, s.front) }
	r := jane.get("/tickets/42?tab=history", forged...)
	if r.Status != http.StatusSeeOther || local(r.Location) != "/_portal/signin" {
		t.Fatalf("signed out: %d %q", r.Status, r.Location)
	}
	if s.g.up.requests() != before {
		t.Fatal("a signed-out request reached the portal")
	}
	csrf := jane.submitEmail("jane@acme.example")
	r = jane.enterCode(csrf, s.g.mail.wait(t, 10*time.Second).Code())
	if r.Status != http.StatusSeeOther || r.Location != "/tickets/42?tab=history" {
		t.Fatalf("code: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	wantPortal(jane, "/tickets/42?tab=history", "c-1")

	// By personalized link.
	status, body := s.g.adminDo(http.MethodPost, "/portal/workspaces/acme/links", "application/json",
		[]byte(`{"contact_id":"c-2","return_to":"/requests/new"}`))
	if status != http.StatusCreated || !strings.Contains(body, s.front+"/_portal/link/") {
		t.Fatalf("minting a link: %d %s", status, body)
	}
	link := body[strings.Index(body, s.front)+len(s.front):]
	link = link[:strings.IndexByte(link, '"')]
	sam := s.browser()
	if r := sam.get(link); r.Status != http.StatusSeeOther || r.Location != "/_portal/code" {
		t.Fatalf("opening the link: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	code := s.g.mail.wait(t, 10*time.Second).Code()
	r = sam.enterCode(csrfOf(t, sam.get("/_portal/code").Body), code)
	if r.Status != http.StatusSeeOther || r.Location != "/requests/new" {
		t.Fatalf("link code: %d %q", r.Status, r.Location)
	}
	wantPortal(sam, "/requests/new", "c-2")

	// By SSO, from a deep link.
	lee := s.browser()
	if r := lee.get("/tickets?status=open"); r.Status != http.StatusSeeOther {
		t.Fatalf("signed out: %d", r.Status)
	}
	r = lee.get("/_portal/sso/corp")
	if r.Status != http.StatusSeeOther {
		t.Fatalf("sso start: %d\n%s", r.Status, r.Body)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
	resp, err := noFollow.Get(r.Location)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cb := resp.Header.Get("Location")
	if !strings.HasPrefix(cb, s.front+"/_portal/sso/corp/callback") {
		t.Fatalf("provider sent the browser to %q", cb)
	}
	r = lee.get(strings.TrimPrefix(cb, s.front))
	if r.Status != http.StatusSeeOther || r.Location != "/tickets?status=open" {
		t.Fatalf("sso callback: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	wantPortal(lee, "/tickets?status=open", "c-2")

	// A spoofed X-Forwarded-Uri or X-Original-URI from a client that is no
	// trusted proxy changes nothing: refused, no identity, no cookie.
	for _, h := range [][]string{{"X-Original-Uri", "/tickets/1"}, {"X-Forwarded-Uri", "/tickets/1", "X-Forwarded-Method", "GET"}} {
		r := untrustedGet(t, s.g.base()+"/_portal/auth", h...)
		if r.StatusCode != http.StatusForbidden || r.Header.Get("X-Portal-Contact-Id") != "" || len(r.Cookies()) != 0 {
			t.Fatalf("untrusted subrequest %v: %d %v", h, r.StatusCode, r.Header)
		}
	}

	// Revocation takes effect at the next request through the proxy.
	if s, body := s.g.adminDo(http.MethodDelete, "/portal/workspaces/acme/sessions?contact_id=c-1", "", nil); s != http.StatusOK {
		t.Fatalf("revoke: %d %s", s, body)
	}
	if r := jane.get("/tickets/42"); r.Status != http.StatusSeeOther || local(r.Location) != "/_portal/signin" {
		t.Fatalf("after revocation: %d %q", r.Status, r.Location)
	}
}

// untrustedGet sends a request from 127.0.0.2, an address portalgate does
// not trust as a proxy.
func untrustedGet(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}
