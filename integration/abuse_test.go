package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// abuseGateway is the harness's gateway behind a TLS-terminating proxy on
// 127.0.0.1 that Caddy trusts: clients' addresses come in X-Forwarded-For.
func abuseGateway(t *testing.T, limits string) *gateway {
	g := newGateway(t)
	g.extraGlobal = limits
	g.load(strings.Replace(g.caddyfile(), "\tauto_https off\n", "\tauto_https off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n", 1))
	return g
}

// from is a browser whose requests the trusted proxy forwards for ip.
func (g *gateway) from(ip string) *browser {
	b := g.browser()
	b.c.Header.Set("X-Forwarded-For", ip)
	return b
}

// Through a real Caddy: requests for strangers from many addresses spend
// none of the workspace's send budget, one IPv6 /64 gets at most
// sends_per_ip codes, and cookies are Secure and __Host- when the trusted
// proxy says the client is on HTTPS.
func TestAbuseBehindATrustedProxy(t *testing.T) {
	g := abuseGateway(t, `limits {
			sends_per_workspace 5
			sends_per_ip 3
		}`)

	for i := range 60 {
		b := g.from(fmt.Sprintf("203.0.113.%d", i+1))
		b.get("/tickets")
		b.submitEmail(fmt.Sprintf("stranger%d@elsewhere.example", i))
	}
	g.mail.none(t, time.Second)
	g.from("198.51.100.1").signIn("jane@acme.example", "/tickets")

	// sam and 4 addresses that are no contact, from 5 addresses of one /64;
	// then sam again after the cooldown from another address of it: sam's
	// codes count against the /64, the strangers' do not.
	net64 := "2001:db8:5:6::"
	sent := 0
	for i, email := range []string{"sam@acme.example", "x1@acme.example", "x2@acme.example", "x3@acme.example", "x4@acme.example"} {
		b := g.from(fmt.Sprintf("%s%x", net64, i+1))
		b.get("/tickets")
		b.submitEmail(email)
	}
	for {
		if _, err := g.mail.Wait(1500 * time.Millisecond); err != nil {
			break
		}
		sent++
	}
	if sent != 1 {
		t.Fatalf("%d codes mailed for one contact and four strangers, want 1", sent)
	}

	// Cookies behind the TLS proxy.
	for _, proto := range []string{"https", "http"} {
		b := g.browser()
		b.c.Header.Set("X-Forwarded-Proto", proto)
		r := b.get("/tickets")
		set := strings.Join(r.Header.Values("Set-Cookie"), "; ")
		secure := strings.Contains(set, "__Host-portal_flow=") && strings.Contains(set, "Secure")
		if secure != (proto == "https") {
			t.Fatalf("X-Forwarded-Proto %s from the trusted proxy: Set-Cookie %q", proto, set)
		}
		if proto == "https" {
			page := b.get("/_portal/signin")
			if page.Header.Get("Strict-Transport-Security") == "" {
				t.Fatal("no HSTS on the sign-in page behind a TLS proxy")
			}
		}
	}
	// A state-changing post from another site is refused before anything
	// changes.
	b := g.browser()
	b.get("/tickets")
	page := b.get("/_portal/signin")
	r := b.post("/_portal/signin", map[string][]string{"csrf": {csrfOf(t, page.Body)}, "email": {"jane@acme.example"}},
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if r.Status != http.StatusForbidden {
		t.Fatalf("cross-site email post: %d", r.Status)
	}
	g.mail.none(t, 500*time.Millisecond)
}
