package handlers

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// proxyIP is the address of the trusted proxy in the forward-auth tests.
const proxyIP = "192.0.2.200"

// forwardPortal is a test portal whose acme workspace is in forward-auth
// mode, trusting requests from proxyIP.
func forwardPortal(t *testing.T) *testPortal {
	return newTestPortal(t, func(p *Portal) {
		p.Workspaces["acme"].ForwardAuth = true
		p.TrustedProxy = func(r *http.Request) bool {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			return host == proxyIP
		}
	})
}

// subrequest asks /_portal/auth as a proxy would, with the browser's
// cookies and the original request in hdr.
func (b *browser) subrequest(hdr ...string) *response {
	b.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Set(hdr[i], hdr[i+1])
	}
	return b.do(http.MethodGet, "/_portal/auth", nil, h)
}

func TestForwardAuth(t *testing.T) {
	tp := forwardPortal(t)
	b := tp.browser(t, tp.acme)
	b.ip = proxyIP

	// nginx: 401 with the flow cookie, which keeps the wanted path.
	res := b.subrequest("X-Original-Uri", "/tickets/42?tab=history", "X-Original-Method", "GET")
	wantStatus(t, "nginx, signed out", res, http.StatusUnauthorized)
	if len(res.cookies) != 1 || !strings.HasSuffix(res.cookies[0].Name, cookieFlow) {
		t.Fatalf("nginx 401 cookies %v, want the flow cookie", res.cookies)
	}
	if res.passed {
		t.Fatal("the subrequest reached the next handler")
	}
	// The browser, sent to sign in by the proxy, lands on the wanted page.
	wantRedirect(t, "signed in", tp.signInHere(b), "/tickets/42?tab=history")

	res = b.subrequest("X-Original-Uri", "/tickets/42", "X-Original-Method", "GET")
	wantStatus(t, "nginx, signed in", res, http.StatusOK)
	for h, want := range map[string]string{HeaderContactID: jane.ID, HeaderContactEmail: jane.Email, HeaderContactName: jane.Name, HeaderWorkspace: "acme"} {
		if got := res.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}

	// Traefik / Caddy forward_auth: a 303 to the sign-in page.
	anon := tp.browser(t, tp.acme)
	anon.ip = proxyIP
	res = anon.subrequest("X-Forwarded-Uri", "/requests/new", "X-Forwarded-Method", "GET", "X-Forwarded-Host", "support.acme.example")
	wantRedirect(t, "traefik, signed out", res, "/_portal/signin")
	tp.clock.Advance(31 * time.Second) // past jane's resend cooldown
	wantRedirect(t, "signed in", tp.signInHere(anon), "/requests/new")

	// An API call gets 401 JSON either way.
	api := tp.browser(t, tp.acme)
	api.ip = proxyIP
	res = api.do(http.MethodGet, "/_portal/auth", nil, http.Header{"X-Forwarded-Uri": {"/api/x"}, "Accept": {"application/json"}})
	wantStatus(t, "api", res, http.StatusUnauthorized)
	wantBody(t, "api", res, "sign_in_required")
}

// signInHere signs jane in from the sign-in page, with the flow the
// browser already has.
func (tp *testPortal) signInHere(b *browser) *response {
	b.t.Helper()
	n := tp.mail.count()
	page := b.get("/_portal/signin")
	wantStatus(b.t, "sign-in page", page, http.StatusOK)
	token := csrf(b.t, page)
	wantRedirect(b.t, "POST email", b.post("/_portal/signin", map[string][]string{"csrf": {token}, "email": {jane.Email}}), "/_portal/code")
	code := mailCode(b.t, tp.waitMail(b.t, n+1))
	return b.submitCode(csrf(b.t, b.get("/_portal/code")), code)
}

// TestForwardAuthOnlyForTrustedProxies: anyone else is refused whatever
// headers they send, signed in or not.
func TestForwardAuthOnlyForTrustedProxies(t *testing.T) {
	tp := forwardPortal(t)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "signed in", tp.signIn(b, "/"), "/")
	for _, hdr := range [][]string{
		{"X-Original-Uri", "/tickets/1"},
		{"X-Forwarded-Uri", "/tickets/1", "X-Forwarded-Host", "support.acme.example"},
		{},
	} {
		res := b.subrequest(hdr...)
		wantStatus(t, "untrusted subrequest", res, http.StatusForbidden)
		if res.header.Get(HeaderContactID) != "" || len(res.cookies) != 0 {
			t.Fatalf("untrusted subrequest got identity or cookies: %v %v", res.header, res.cookies)
		}
	}
}

// TestForwardAuthURITricks: no original URI opens the portal without a
// session — encoded slashes, dot segments, ';', '#', case games, the auth
// path itself — and none of them becomes a foreign or sign-in return path.
func TestForwardAuthURITricks(t *testing.T) {
	tp := forwardPortal(t)
	for _, uri := range []string{
		"/_portal/signin", "/_portal/../tickets/1", "/_portal%2F..%2Ftickets", "/_PORTAL/signin",
		"/_portal/signin;/../admin", "/_portal/signin#/admin", "/%2e%2e/admin", "//evil.example/x",
		"/_portal/auth", "https://evil.example/", "/tickets/1\\@evil.example", "",
	} {
		for _, kind := range []string{"X-Original-Uri", "X-Forwarded-Uri"} {
			b := tp.browser(t, tp.acme)
			b.ip = proxyIP
			res := b.subrequest(kind, uri)
			if res.status == http.StatusOK || res.header.Get(HeaderContactID) != "" {
				t.Fatalf("%s %q without a session: %d", kind, uri, res.status)
			}
			if res.status != http.StatusUnauthorized && res.status != http.StatusSeeOther {
				t.Fatalf("%s %q: status %d", kind, uri, res.status)
			}
			q := &request{g: tp.acme, ws: tp.acme.ws, keys: tp.portal.state.Load().keys["acme"]}
			pend, ok := q.openPending(b.cookie(cookieFlow))
			if p := pend.returnTo; !ok || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/_portal/") {
				t.Fatalf("%s %q kept return path %q (%v)", kind, uri, p, ok)
			}
		}
	}
}
