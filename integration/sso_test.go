package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/integration/oidctest"
)

// ssoGateway starts a gateway whose workspace offers an SSO provider of the
// given shape, pointed at a real OpenID Connect provider started here.
func ssoGateway(t *testing.T, shape, name, extra string) (*gateway, *oidctest.Provider) {
	t.Helper()
	idp := oidctest.Start(t, oidctest.Options{Shape: shape})
	g := newGateway(t)
	idp.RegisterClient("portal-client", "portal-secret", fmt.Sprintf("%s/_portal/sso/%s/callback", g.base(), name))
	g.extraWorkspace = fmt.Sprintf(`sso %s {
				provider %s
				issuer %s
				client_id portal-client
				client_secret portal-secret
				%s
			}`, name, map[string]string{"google": "google", "microsoft": "microsoft", "generic": "oidc"}[shape], idp.Issuer(), extra)
	return g, idp
}

// ssoSignIn clicks the provider button and follows the provider's redirect
// back to the gateway's callback; it returns the callback's answer.
func (b *browser) ssoSignIn(name string) response {
	b.t.Helper()
	r := b.get("/_portal/sso/" + name)
	if r.Status != http.StatusSeeOther {
		return r
	}
	authz, err := url.Parse(r.Location)
	if err != nil {
		b.t.Fatal(err)
	}
	q := authz.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
		q.Get("state") == "" || q.Get("response_mode") != "query" {
		b.t.Fatalf("authorization request lacks PKCE, nonce, state or response_mode: %s", r.Location)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
	resp, err := noFollow.Get(r.Location)
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	cb, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || cb.Host != strings.TrimPrefix(b.g.base(), "http://") {
		b.t.Fatalf("provider answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return b.get(cb.RequestURI())
}

// failed checks a "Sign-in failed" page (never a redirect loop) and the
// audited reason.
func (g *gateway) failed(t *testing.T, r response, reason string) {
	t.Helper()
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Body, "Sign-in failed") || !strings.Contains(r.Body, "/_portal/signin") {
		t.Fatalf("want the Sign-in failed page, got %d %q\n%s", r.Status, r.Location, r.Body)
	}
	status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?event=sso_failure&limit=1", "", nil)
	if status != http.StatusOK || !strings.Contains(body, reason) {
		t.Fatalf("audit does not record %q: %s", reason, body)
	}
}

func TestSSOGoogle(t *testing.T) {
	g, idp := ssoGateway(t, "google", "google", "")
	g.start()

	b := g.browser()
	b.get("/tickets/77")
	page := b.get("/_portal/signin")
	if !strings.Contains(page.Body, `href="/_portal/sso/google"`) || !strings.Contains(page.Body, "Continue with Google") {
		t.Fatalf("no Google button:\n%s", page.Body)
	}
	r := b.ssoSignIn("google")
	if r.Status != http.StatusSeeOther || r.Location != "/tickets/77" {
		t.Fatalf("sso success: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	_, h := seen(t, b.get("/tickets/77"))
	if h.Get("X-Portal-Contact-Id") != "c-1" {
		t.Fatalf("signed in as %q", h.Get("X-Portal-Contact-Id"))
	}
	if ev := g.auditEvents("event=sso_success"); len(ev) != 1 {
		t.Fatalf("sso_success events: %v", ev)
	}

	no := false
	for _, tc := range []struct {
		name   string
		user   *oidctest.User
		fault  oidctest.Fault
		reason string
	}{
		{"unverified email", &oidctest.User{Email: "jane@acme.example", EmailVerified: &no}, 0, "unverified email"},
		{"no verified claim", &oidctest.User{Email: "jane@acme.example"}, 0, "unverified email"},
		{"unknown identity", &oidctest.User{Email: "stranger@else.example", EmailVerified: new(true)}, 0, "no matching contact"},
		{"disabled contact", &oidctest.User{Email: "former@acme.example", EmailVerified: new(true)}, 0, "contact disabled"},
		{"consent denied", nil, oidctest.FaultDenyConsent, "consent denied"},
		{"wrong nonce", nil, oidctest.FaultWrongNonce, "nonce mismatch"},
		{"expired id token", nil, oidctest.FaultExpired, "expired"},
		{"wrong audience", nil, oidctest.FaultWrongAudience, "wrong audience"},
		{"unknown signing key", nil, oidctest.FaultUnknownKey, "id token rejected"},
		{"wrong issuer", nil, oidctest.FaultWrongIssuer, "wrong issuer"},
		{"token endpoint error", nil, oidctest.FaultTokenEndpointError, "code exchange failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := oidctest.DefaultUser()
			if tc.user != nil {
				u = *tc.user
			}
			idp.SetUser(u)
			idp.InjectFault(tc.fault)
			b := g.browser()
			g.failed(t, b.ssoSignIn("google"), tc.reason)
			if r := b.get("/"); r.Status != http.StatusSeeOther {
				t.Fatalf("signed in after a failure: %d", r.Status)
			}
		})
	}
	idp.SetUser(oidctest.DefaultUser())

	t.Run("replayed state", func(t *testing.T) {
		b := g.browser()
		r := b.get("/_portal/sso/google")
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(r.Location)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cb, _ := url.Parse(resp.Header.Get("Location"))
		if r := b.get(cb.RequestURI()); r.Status != http.StatusSeeOther {
			t.Fatalf("first callback: %d", r.Status)
		}
		g.failed(t, b.get(cb.RequestURI()), "replayed state")
	})
	t.Run("state from another browser", func(t *testing.T) {
		victim, attacker := g.browser(), g.browser()
		r := attacker.get("/_portal/sso/google")
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(r.Location)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cb, _ := url.Parse(resp.Header.Get("Location"))
		victim.get("/_portal/signin")
		g.failed(t, victim.get(cb.RequestURI()), "not started in this browser")
	})
	t.Run("forged state", func(t *testing.T) {
		b := g.browser()
		b.get("/_portal/signin")
		g.failed(t, b.get("/_portal/sso/google/callback?code=x&state=forged"), "replayed state")
	})
	t.Run("unknown provider", func(t *testing.T) {
		if r := g.browser().get("/_portal/sso/facebook"); r.Status != http.StatusNotFound {
			t.Fatalf("unknown provider: %d", r.Status)
		}
	})
}

func TestSSOMicrosoftMultiTenant(t *testing.T) {
	g, idp := ssoGateway(t, "microsoft", "microsoft", "")
	g.start()

	// Jane is a directory contact synced with object id d-1: she signs in
	// even without an email claim.
	idp.SetUser(oidctest.User{Subject: "ms-jane", ObjectID: "d-1", Name: "Jane"})
	b := g.browser()
	b.get("/dashboard")
	if r := b.ssoSignIn("microsoft"); r.Status != http.StatusSeeOther || r.Location != "/dashboard" {
		t.Fatalf("directory match by oid: %d %q\n%s", r.Status, r.Location, r.Body)
	}

	// Sam is a manual contact: his email counts only when Microsoft vouches
	// for the domain.
	idp.SetUser(oidctest.User{Subject: "ms-sam", Email: "sam@acme.example"})
	g.failed(t, g.browser().ssoSignIn("microsoft"), "unverified email")
	idp.SetUser(oidctest.User{Subject: "ms-sam", Email: "sam@acme.example", XMSEdov: new(true)})
	if r := g.browser().ssoSignIn("microsoft"); r.Status != http.StatusSeeOther {
		t.Fatalf("verified domain: %d\n%s", r.Status, r.Body)
	}

	// A token whose iss names another tenant than its tid.
	idp.SetUser(oidctest.User{Subject: "ms-jane", ObjectID: "d-1"})
	idp.InjectFault(oidctest.FaultWrongIssuer)
	g.failed(t, g.browser().ssoSignIn("microsoft"), "issuer does not match the token's tenant")
}

func TestSSOMicrosoftAllowedTenants(t *testing.T) {
	g, idp := ssoGateway(t, "microsoft", "microsoft", "allowed_tenants 11111111-2222-3333-4444-555555555555")
	g.start()
	idp.SetUser(oidctest.User{Subject: "ms-jane", ObjectID: "d-1"})
	g.failed(t, g.browser().ssoSignIn("microsoft"), "tenant not allowed")
}

func TestSSODirectoryMatch(t *testing.T) {
	g, idp := ssoGateway(t, "generic", "corp", "")
	g.extraWorkspace += "\n\t\t\tsso_directory_match"
	g.start()
	page := g.browser().get("/_portal/signin")
	if !strings.Contains(page.Body, "only available if your account matches a record synced from your organization's directory") {
		t.Fatalf("the sign-in page does not explain the directory rule:\n%s", page.Body)
	}
	// Sam is a manual contact: refused, with the rule explained.
	idp.SetUser(oidctest.User{Subject: "sam", Email: "sam@acme.example", EmailVerified: new(true)})
	r := g.browser().ssoSignIn("corp")
	g.failed(t, r, "directory match required")
	if !strings.Contains(r.Body, "synced from your organization") {
		t.Fatalf("the failure does not explain the rule:\n%s", r.Body)
	}
	// Jane is a directory contact, but her directory id must match too.
	idp.SetUser(oidctest.User{Subject: "someone-else", Email: "jane@acme.example", EmailVerified: new(true)})
	g.failed(t, g.browser().ssoSignIn("corp"), "directory match required")
	idp.SetUser(oidctest.User{Subject: "d-1", Email: "jane@acme.example", EmailVerified: new(true)})
	if r := g.browser().ssoSignIn("corp"); r.Status != http.StatusSeeOther {
		t.Fatalf("directory contact: %d\n%s", r.Status, r.Body)
	}
	// Code sign-in still works for everyone.
	g.browser().signIn("sam@acme.example", "/tickets")
}

// An unreachable provider does not stop Caddy; sign-in says so and works
// again once the provider is back.
func TestSSOProviderDownAtStart(t *testing.T) {
	g, idp := ssoGateway(t, "google", "google", "")
	idp.SetDown(true)
	g.start()
	b := g.browser()
	r := b.get("/_portal/sso/google")
	g.failed(t, r, "provider unreachable")
	if !strings.Contains(r.Body, "could not be reached") {
		t.Fatalf("no explanation:\n%s", r.Body)
	}
	idp.SetDown(false)
	eventually(t, 10*time.Second, "the provider to be discovered", func() bool {
		return b.ssoSignIn("google").Status == http.StatusSeeOther
	})
}

// A generic OpenID Connect provider's email counts only when the token
// says email_verified: true, unless the operator trusts that provider's
// addresses with trust_unverified_email.
func TestSSOGenericNeedsVerifiedEmail(t *testing.T) {
	for _, trust := range []bool{false, true} {
		t.Run(fmt.Sprintf("trust_unverified_email=%v", trust), func(t *testing.T) {
			extra := ""
			if trust {
				extra = "trust_unverified_email"
			}
			g, idp := ssoGateway(t, "generic", "corp", extra)
			g.start()
			no := false
			idp.SetUser(oidctest.User{Subject: "x-1", Email: "sam@acme.example", EmailVerified: &no})
			g.failed(t, g.browser().ssoSignIn("corp"), "unverified email")
			idp.SetUser(oidctest.User{Subject: "x-1", Email: "sam@acme.example"})
			r := g.browser().ssoSignIn("corp")
			if trust {
				if r.Status != http.StatusSeeOther {
					t.Fatalf("no email_verified claim, trusted provider: %d\n%s", r.Status, r.Body)
				}
			} else {
				g.failed(t, r, "unverified email")
			}
			idp.SetUser(oidctest.User{Subject: "x-1", Email: "sam@acme.example", EmailVerified: new(true)})
			if r := g.browser().ssoSignIn("corp"); r.Status != http.StatusSeeOther {
				t.Fatalf("verified email: %d\n%s", r.Status, r.Body)
			}
		})
	}
}
