package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// signedIn returns a browser with a session for jane on acme.
func (tp *testPortal) signedIn(t *testing.T) *browser {
	t.Helper()
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "sign-in", tp.signIn(b, "/"), "/")
	return b
}

func wantPortal(t *testing.T, what string, b *browser) {
	t.Helper()
	res := b.get("/tickets")
	wantStatus(t, what, res, http.StatusOK)
	if !res.passed {
		t.Fatalf("%s: request did not reach the portal", what)
	}
}

func wantSignIn(t *testing.T, what string, b *browser) {
	t.Helper()
	res := b.get("/tickets")
	wantRedirect(t, what, res, "/_portal/signin")
	if res.passed {
		t.Fatalf("%s: request reached the portal", what)
	}
}

// TestSessionIdleExpiry checks that a session ends session_idle after its
// last request, and that requests keep it alive.
func TestSessionIdleExpiry(t *testing.T) {
	const idle = 2 * time.Hour

	t.Run("untouched", func(t *testing.T) {
		tp := newTestPortal(t, nil)
		b := tp.signedIn(t)
		tp.clock.Advance(idle)
		wantSignIn(t, "request after idle", b)
	})

	t.Run("touched", func(t *testing.T) {
		tp := newTestPortal(t, nil)
		b := tp.signedIn(t)
		tp.clock.Advance(idle - time.Second)
		wantPortal(t, "request just before idle", b)
		tp.clock.Advance(idle - time.Second)
		wantPortal(t, "request just before idle again", b)
		tp.clock.Advance(idle)
		wantSignIn(t, "request after idle", b)
	})

	t.Run("a request that does not refresh", func(t *testing.T) {
		// Requests close together write nothing; the idle time still
		// counts from the last refresh, so the session may end slightly
		// earlier than idle after the very last request, never later.
		tp := newTestPortal(t, nil)
		b := tp.signedIn(t)
		tp.clock.Advance(time.Minute) // less than touchEvery(idle): no write
		wantPortal(t, "request a minute later", b)
		tp.clock.Advance(idle - time.Minute)
		wantSignIn(t, "request idle after sign-in", b)
	})
}

// TestSessionAbsoluteExpiry checks that a session kept busy still ends at
// session_ttl.
func TestSessionAbsoluteExpiry(t *testing.T) {
	const (
		ttl  = 12 * time.Hour
		idle = 2 * time.Hour
	)
	tp := newTestPortal(t, nil)
	b := tp.signedIn(t)
	for _, c := range b.setCookies {
		if c.Name == cookieSession && c.MaxAge != int(ttl/time.Second) {
			t.Errorf("session cookie Max-Age %d, want %d", c.MaxAge, int(ttl/time.Second))
		}
	}
	elapsed := time.Duration(0)
	for step := idle - time.Minute; elapsed+step < ttl; elapsed += step {
		tp.clock.Advance(step)
		wantPortal(t, "busy session at "+(elapsed+step).String(), b)
	}
	tp.clock.Advance(ttl - time.Second - elapsed)
	wantPortal(t, "busy session a second before session_ttl", b)
	tp.clock.Advance(time.Second)
	wantSignIn(t, "busy session at session_ttl", b)

	api := b.do(http.MethodGet, "/api/tickets", nil, http.Header{"Accept": {"application/json"}})
	wantStatus(t, "API call after session_ttl", api, http.StatusUnauthorized)
}

// TestNewSessionIDAtSignIn checks that signing in again while signed in
// gives a new session id and ends the old one.
func TestNewSessionIDAtSignIn(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.signedIn(t)
	old := b.cookie(cookieSession)

	tp.clock.Advance(31 * time.Second) // past the resend cooldown
	token := csrf(t, b.get("/_portal/signin"))
	wantRedirect(t, "POST email", b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {jane.Email}}), "/_portal/code")
	code := mailCode(t, tp.waitMail(t, 2))
	wantRedirect(t, "second sign-in", b.submitCode(token, code), "/")
	renewed := b.cookie(cookieSession)
	if renewed == "" || renewed == old {
		t.Fatalf("session cookie after signing in again: %q (was %q)", renewed, old)
	}
	wantPortal(t, "new session", b)

	stale := tp.browser(t, tp.acme)
	stale.jar[cookieSession] = old
	wantSignIn(t, "old session cookie", stale)

	sessions, err := tp.store.Sessions(context.Background(), "acme", jane.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 1 || sessions[0].IDHash != HashID(renewed) {
		t.Fatalf("%d live sessions for jane, want only the new one", len(sessions))
	}
	for _, s := range sessions {
		if s.IDHash == renewed || strings.Contains(s.IDHash, renewed) {
			t.Fatal("session id stored in clear")
		}
	}
}

// TestSessionEndsWhenContactDisabled checks that a disabled contact's
// session no longer passes.
func TestSessionEndsWhenContactDisabled(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.signedIn(t)
	wantPortal(t, "before disabling", b)
	c := jane
	c.Status = storage.StatusDisabled
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := tp.store.PutContacts(context.Background(), "acme", []storage.Contact{c}); err != nil {
		t.Fatal(err)
	}
	wantSignIn(t, "after disabling", b)
}

// TestSessionOtherWorkspace checks that an acme session does not open the
// other workspace's portal.
func TestSessionOtherWorkspace(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.signedIn(t)
	elsewhere := tp.browser(t, tp.other)
	elsewhere.jar = b.jar
	wantSignIn(t, "acme session on other", elsewhere)
}

// TestSignOut checks what a sign-out POST must show to end the session: the
// confirmation page's token, or a browser's word that the button was on a
// page of this site. Anything from another site is refused.
func TestSignOut(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.signedIn(t)
	old := b.cookie(cookieSession)
	host := "http://" + tp.acme.ws.URL.Host
	post := func(form url.Values, h http.Header) *response {
		return b.do(http.MethodPost, "/_portal/signout", form, h)
	}

	for _, c := range []struct {
		what string
		form url.Values
		h    http.Header
	}{
		{"a wrong token", url.Values{"csrf": {"forged"}}, nil},
		{"a cross-site post", url.Values{}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"a same-site post from a sibling host", url.Values{}, http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"a foreign Origin", url.Values{}, http.Header{"Origin": {"https://evil.example"}}},
		{"a null Origin", url.Values{}, http.Header{"Origin": {"null"}}},
		{"a wrong token from this site", url.Values{"csrf": {"forged"}}, http.Header{"Sec-Fetch-Site": {"same-origin"}}},
	} {
		wantStatus(t, "sign-out with "+c.what, post(c.form, c.h), http.StatusForbidden)
		wantPortal(t, "after sign-out with "+c.what, b)
	}

	// No token and no word from the browser: the confirmation page, whose
	// form carries the token.
	confirm := post(url.Values{}, nil)
	wantStatus(t, "sign-out with no browser headers", confirm, http.StatusOK)
	wantPortal(t, "after the confirmation page", b)
	if !strings.Contains(confirm.body, "Sign out") {
		t.Fatalf("no confirmation page:\n%s", confirm.body)
	}
	wantRedirect(t, "confirmed sign-out", post(url.Values{"csrf": {csrf(t, confirm)}}, nil), "/_portal/signin?signed_out=1")
	if b.cookie(cookieSession) != "" {
		t.Error("session cookie kept after sign-out")
	}
	stale := tp.browser(t, tp.acme)
	stale.jar[cookieSession] = old
	wantSignIn(t, "session cookie after sign-out", stale)

	// A plain button in the portal: the browser's Sec-Fetch-Site or Origin
	// vouches for it.
	for _, h := range []http.Header{{"Sec-Fetch-Site": {"same-origin"}}, {"Origin": {host}}} {
		tp.clock.Advance(time.Minute) // past the resend cooldown
		b := tp.signedIn(t)
		wantRedirect(t, fmt.Sprintf("sign-out button with %v", h), b.do(http.MethodPost, "/_portal/signout", url.Values{}, h), "/_portal/signin?signed_out=1")
		wantSignIn(t, "after the sign-out button", b)
	}
}

// TestCookieAttributes checks every cookie the flows set: on HTTPS the
// __Host- prefix and Secure, over plain HTTP neither; always HttpOnly,
// SameSite=Lax and Path=/.
func TestCookieAttributes(t *testing.T) {
	for _, secure := range []bool{false, true} {
		name := "http"
		if secure {
			name = "https"
		}
		t.Run(name, func(t *testing.T) {
			// An https workspace url makes every cookie Secure even over
			// plain HTTP (a TLS proxy in front): here the url is http.
			tp := newTestPortal(t, func(p *Portal) { p.Workspaces["acme"].URL.Scheme = "http" })
			b := tp.browser(t, tp.acme)
			b.tls = secure
			wantRedirect(t, "sign-in", tp.signIn(b, "/tickets/3"), "/tickets/3")
			wantPortal(t, "signed in", b)
			wantRedirect(t, "sign-out", b.do(http.MethodPost, "/_portal/signout", url.Values{}, http.Header{"Sec-Fetch-Site": {"same-origin"}}), "/_portal/signin?signed_out=1")

			seen := map[string]bool{}
			for _, c := range b.setCookies {
				base := c.Name
				if secure {
					if !strings.HasPrefix(c.Name, "__Host-") {
						t.Errorf("cookie %s on HTTPS lacks the __Host- prefix", c.Name)
					}
					base = strings.TrimPrefix(c.Name, "__Host-")
				} else if strings.HasPrefix(c.Name, "__") {
					t.Errorf("cookie %s over HTTP has a prefix", c.Name)
				}
				if base != cookieSession && base != cookieFlow {
					t.Errorf("unexpected cookie %s", c.Name)
				}
				seen[base] = true
				if c.Secure != secure {
					t.Errorf("cookie %s: Secure = %v, want %v", c.Name, c.Secure, secure)
				}
				if !c.HttpOnly {
					t.Errorf("cookie %s is not HttpOnly", c.Name)
				}
				if c.SameSite != http.SameSiteLaxMode {
					t.Errorf("cookie %s: SameSite = %v, want Lax", c.Name, c.SameSite)
				}
				if c.Path != "/" || c.Domain != "" {
					t.Errorf("cookie %s: Path %q, Domain %q; want /, none", c.Name, c.Path, c.Domain)
				}
			}
			if !seen[cookieSession] || !seen[cookieFlow] {
				t.Fatalf("cookies seen: %v; want both session and flow", seen)
			}
		})
	}
}

// TestWorkspaceDisabled checks the "Portal unavailable" answer.
func TestWorkspaceDisabled(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) { p.Workspaces["other"].Disabled = true })
	b := tp.browser(t, tp.other)
	for _, path := range []string{"/", "/_portal/signin"} {
		res := b.get(path)
		wantStatus(t, "GET "+path, res, http.StatusServiceUnavailable)
		wantBody(t, "GET "+path, res, "Portal unavailable")
	}
	// acme is not affected.
	wantRedirect(t, "acme", tp.browser(t, tp.acme).get("/"), "/_portal/signin")
}

// TestSignOutEverywhere: "Sign out on all devices" ends every session of
// the contact, and the sign-in page says how many ended; a plain sign-out
// says the contact signed out and leaves the other sessions alone.
func TestSignOutEverywhere(t *testing.T) {
	tp := newTestPortal(t, nil)
	var browsers []*browser
	for i := range 3 {
		tp.clock.Advance(31 * time.Second) // past the resend cooldown
		b := tp.browser(t, tp.acme)
		b.ip = fmt.Sprintf("198.51.100.%d", i+1)
		wantRedirect(t, "sign-in", tp.signIn(b, "/"), "/")
		browsers = append(browsers, b)
	}
	page := browsers[0].get("/_portal/signout")
	wantBody(t, "sign-out page", page, "Sign out on all devices")
	res := browsers[0].post("/_portal/signout", url.Values{"csrf": {csrf(t, page)}, "all": {"1"}})
	wantRedirect(t, "sign out on all devices", res, "/_portal/signin?signed_out=3")
	wantBody(t, "notice", browsers[0].get(res.location()), "You have signed out on all devices: 3 sessions ended.")
	for i, b := range browsers {
		wantSignIn(t, fmt.Sprintf("browser %d after signing out everywhere", i), b)
	}

	// A plain sign-out ends only its own session.
	tp.clock.Advance(31 * time.Second)
	one, two := tp.browser(t, tp.acme), tp.browser(t, tp.acme)
	wantRedirect(t, "sign-in", tp.signIn(one, "/"), "/")
	tp.clock.Advance(31 * time.Second)
	wantRedirect(t, "sign-in", tp.signIn(two, "/"), "/")
	res = one.do(http.MethodPost, "/_portal/signout", url.Values{}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	wantRedirect(t, "sign-out", res, "/_portal/signin?signed_out=1")
	wantBody(t, "notice", one.get(res.location()), "You have signed out.")
	wantPortal(t, "the other session", two)

	// Everywhere from another site changes nothing.
	cross := two.do(http.MethodPost, "/_portal/signout", url.Values{"all": {"1"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	wantStatus(t, "cross-site sign out everywhere", cross, http.StatusForbidden)
	wantPortal(t, "after the cross-site post", two)
}
