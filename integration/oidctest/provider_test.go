package oidctest_test

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/kdesk/portalgate/integration/oidctest"
)

const (
	clientID = "portal-client"
	// The secret needs form-urlencoding inside client_secret_basic
	// (RFC 6749 §2.3.1); golang.org/x/oauth2 does it, the provider undoes it.
	clientSecret = "s3cret/with+odd chars:%"
	// Never contacted: tests read the authorization response from the
	// Location header.
	redirectURI = "http://127.0.0.1:9/_portal/sso/test/callback"
)

var shapes = []string{oidctest.ShapeGoogle, oidctest.ShapeMicrosoft, oidctest.ShapeGeneric}

var (
	errNonce  = errors.New("id token nonce does not match the authorization request")
	errIssuer = errors.New("id token issuer does not match its tenant")
)

// authError is an error=… authorization response.
type authError struct{ code, description string }

func (e *authError) Error() string { return "authorization refused: " + e.code + ": " + e.description }

// rp is a relying party built the way portalgate's should be: go-oidc
// discovery and verification, oauth2 code exchange, state + nonce + PKCE S256.
type rp struct {
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
	// msIssuer is Microsoft's multi-tenant issuer template
	// "<URL>/{tenantid}/v2.0"; empty for single-issuer providers.
	msIssuer string
}

// newRP discovers p and builds a relying party for the test client.
//
// Microsoft multi-tenant (common / organizations): the discovery document at
// <URL>/common/v2.0 says issuer "<URL>/{tenantid}/v2.0", so a plain
// oidc.NewProvider(ctx, <URL>/common/v2.0) fails with *oidc.IssuerMismatchError.
// What works:
//
//  1. oidc.NewProvider(oidc.InsecureIssuerURLContext(ctx, "<URL>/{tenantid}/v2.0"), "<URL>/common/v2.0")
//     (or an oidc.ProviderConfig decoded from the same document) to get the
//     endpoints and the JWKS; then
//  2. Verifier(&oidc.Config{ClientID: id, SkipIssuerCheck: true}) — without
//     SkipIssuerCheck every token is refused, since no token's iss is the
//     literal template; and
//  3. by hand, after Verify: read "tid" from the claims and require
//     iss == "<URL>/" + tid + "/v2.0" (plus any tenant allow-list).
//
// Step 3 is not optional: with SkipIssuerCheck alone a token whose iss names
// another tenant than its tid is accepted (see TestMicrosoftIssuerCheck).
// A single-tenant configuration (<URL>/<tenant id>/v2.0) needs none of this:
// its discovery issuer is concrete and plain NewProvider + Verifier work.
func newRP(t *testing.T, p *oidctest.Provider, shape string, style oauth2.AuthStyle) *rp {
	t.Helper()
	ctx := context.Background()
	r := &rp{}
	var err error
	if shape == oidctest.ShapeMicrosoft {
		r.msIssuer = p.URL() + "/{tenantid}/v2.0"
		r.provider, err = oidc.NewProvider(oidc.InsecureIssuerURLContext(ctx, r.msIssuer), p.Issuer())
		if err != nil {
			t.Fatalf("discovery: %v", err)
		}
		r.verifier = r.provider.Verifier(&oidc.Config{ClientID: clientID, SkipIssuerCheck: true})
	} else {
		r.provider, err = oidc.NewProvider(ctx, p.Issuer())
		if err != nil {
			t.Fatalf("discovery: %v", err)
		}
		r.verifier = r.provider.Verifier(&oidc.Config{ClientID: clientID})
	}
	endpoint := r.provider.Endpoint()
	endpoint.AuthStyle = style
	r.conf = oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint:     endpoint,
		RedirectURL:  redirectURI,
		Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
	}
	return r
}

// verify checks an ID token's signature, audience, expiry and issuer.
func (r *rp) verify(ctx context.Context, raw string) (*oidc.IDToken, error) {
	idt, err := r.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	if r.msIssuer != "" {
		var c struct {
			TID string `json:"tid"`
		}
		if err := idt.Claims(&c); err != nil {
			return nil, err
		}
		if c.TID == "" || strings.ContainsAny(c.TID, "/?#{}") ||
			idt.Issuer != strings.Replace(r.msIssuer, "{tenantid}", c.TID, 1) {
			return nil, fmt.Errorf("%w: iss %q, tid %q", errIssuer, idt.Issuer, c.TID)
		}
	}
	return idt, nil
}

// flow is one authorization request's secrets.
type flow struct{ state, nonce, verifier string }

func newFlow() flow {
	return flow{state: randomString(), nonce: randomString(), verifier: oauth2.GenerateVerifier()}
}

func randomString() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (f flow) authURL(r *rp) string {
	return r.conf.AuthCodeURL(f.state, oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier))
}

var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

// authorize requests authURL and returns the query of the redirect back to
// the client. It fails the test unless the answer is a 302 to redirectURI.
func authorize(t *testing.T, authURL string) url.Values {
	t.Helper()
	resp, err := noRedirects.Get(authURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d, want 302: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("authorize: bad Location: %v", err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI {
		t.Fatalf("authorize redirected to %q, want %q", got, redirectURI)
	}
	return loc.Query()
}

// signedIn is the outcome of a successful sign-in.
type signedIn struct {
	idToken *oidc.IDToken
	token   *oauth2.Token
	claims  map[string]any
}

// signIn runs the whole code flow as the RP's SSO start and callback would.
// The error says which step refused.
func (r *rp) signIn(t *testing.T) (*signedIn, error) {
	t.Helper()
	ctx := context.Background()
	f := newFlow()
	q := authorize(t, f.authURL(r))
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.state)) != 1 {
		t.Fatalf("state %q came back as %q", f.state, q.Get("state"))
	}
	if code := q.Get("error"); code != "" {
		return nil, &authError{code: code, description: q.Get("error_description")}
	}
	tok, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		return nil, errors.New("token response without id_token")
	}
	idt, err := r.verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	// Verify does not look at the nonce: the RP must.
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.nonce)) != 1 {
		return nil, errNonce
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		return nil, fmt.Errorf("at_hash: %w", err)
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, err
	}
	return &signedIn{idToken: idt, token: tok, claims: claims}, nil
}

func start(t *testing.T, shape string) *oidctest.Provider {
	t.Helper()
	p := oidctest.Start(t, oidctest.Options{Shape: shape})
	p.RegisterClient(clientID, clientSecret, redirectURI)
	return p
}

func retrieveError(t *testing.T, err error) *oauth2.RetrieveError {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a token endpoint error", err)
	}
	return re
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			p := start(t, shape)
			var prov *oidc.Provider
			var err error
			if shape == oidctest.ShapeMicrosoft {
				_, err = oidc.NewProvider(ctx, p.Issuer())
				var mismatch *oidc.IssuerMismatchError
				if !errors.As(err, &mismatch) || mismatch.Discovered != p.URL()+"/{tenantid}/v2.0" {
					t.Fatalf("plain discovery of %s: got %v, want an issuer mismatch naming the {tenantid} template", p.Issuer(), err)
				}
				prov, err = oidc.NewProvider(oidc.InsecureIssuerURLContext(ctx, p.URL()+"/{tenantid}/v2.0"), p.Issuer())
			} else {
				if p.Issuer() != p.URL() {
					t.Fatalf("Issuer() = %q, want %q", p.Issuer(), p.URL())
				}
				prov, err = oidc.NewProvider(ctx, p.Issuer())
			}
			if err != nil {
				t.Fatalf("discovery: %v", err)
			}
			var meta struct {
				Issuer         string   `json:"issuer"`
				ResponseTypes  []string `json:"response_types_supported"`
				Algs           []string `json:"id_token_signing_alg_values_supported"`
				PKCE           []string `json:"code_challenge_methods_supported"`
				JWKS           string   `json:"jwks_uri"`
				TokenAuthMeths []string `json:"token_endpoint_auth_methods_supported"`
			}
			if err := prov.Claims(&meta); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(meta.ResponseTypes, []string{"code"}) || !slices.Equal(meta.Algs, []string{"RS256"}) ||
				!slices.Equal(meta.PKCE, []string{"S256"}) ||
				!slices.Equal(meta.TokenAuthMeths, []string{"client_secret_basic", "client_secret_post"}) {
				t.Errorf("metadata = %+v", meta)
			}
			for _, u := range []string{prov.Endpoint().AuthURL, prov.Endpoint().TokenURL, meta.JWKS, prov.UserInfoEndpoint()} {
				if !strings.HasPrefix(u, p.URL()+"/") {
					t.Errorf("endpoint %q is not on the provider", u)
				}
			}
			resp, err := http.Get(meta.JWKS)
			if err != nil {
				t.Fatal(err)
			}
			var jwks struct {
				Keys []struct{ Kid, Kty, Alg, Use string } `json:"keys"`
			}
			err = json.NewDecoder(resp.Body).Decode(&jwks)
			_ = resp.Body.Close()
			if err != nil || len(jwks.Keys) != 1 || jwks.Keys[0].Kid == "" || jwks.Keys[0].Kty != "RSA" || jwks.Keys[0].Alg != "RS256" {
				t.Errorf("jwks = %+v, %v", jwks, err)
			}
		})
	}
}

// TestMicrosoftDiscovery covers every authority Microsoft serves discovery
// for, and the oidc.ProviderConfig route.
func TestMicrosoftDiscovery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := start(t, oidctest.ShapeMicrosoft)
	template := p.URL() + "/{tenantid}/v2.0"
	for authority, issuer := range map[string]string{
		"common":                  template,
		"organizations":           template,
		"consumers":               p.URL() + "/" + oidctest.ConsumerTenantID + "/v2.0",
		oidctest.DefaultTenantID:  p.URL() + "/" + oidctest.DefaultTenantID + "/v2.0",
		"contoso.onmicrosoft.com": p.URL() + "/contoso.onmicrosoft.com/v2.0",
	} {
		base := p.URL() + "/" + authority + "/v2.0"
		resp, err := http.Get(base + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		var cfg oidc.ProviderConfig
		err = json.NewDecoder(resp.Body).Decode(&cfg)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d, %v", authority, resp.StatusCode, err)
		}
		if cfg.IssuerURL != issuer || cfg.AuthURL != p.URL()+"/"+authority+"/oauth2/v2.0/authorize" ||
			cfg.TokenURL != p.URL()+"/"+authority+"/oauth2/v2.0/token" {
			t.Errorf("%s: %+v", authority, cfg)
		}
		// ProviderConfig.NewProvider skips the issuer comparison; its
		// verifier then needs SkipIssuerCheck plus the tid check, exactly
		// like the InsecureIssuerURLContext route.
		if prov := cfg.NewProvider(ctx); prov.Endpoint().AuthURL != cfg.AuthURL {
			t.Errorf("%s: ProviderConfig provider endpoint %q", authority, prov.Endpoint().AuthURL)
		}
		// go-oidc's own discovery check passes only where the issuer is
		// the discovery base itself: a tenant id or domain.
		_, err = oidc.NewProvider(ctx, base)
		if (issuer == base) != (err == nil) {
			t.Errorf("%s: plain oidc.NewProvider error = %v", authority, err)
		}
	}
}

func TestCodeFlow(t *testing.T) {
	t.Parallel()
	styles := map[string]oauth2.AuthStyle{
		"autodetect":          oauth2.AuthStyleAutoDetect,
		"client_secret_basic": oauth2.AuthStyleInHeader,
		"client_secret_post":  oauth2.AuthStyleInParams,
	}
	for _, shape := range shapes {
		for styleName, style := range styles {
			t.Run(shape+"/"+styleName, func(t *testing.T) {
				t.Parallel()
				p := start(t, shape)
				r := newRP(t, p, shape, style)
				got, err := r.signIn(t)
				if err != nil {
					t.Fatalf("sign-in: %v", err)
				}
				u := oidctest.DefaultUser()
				c := got.claims
				if got.idToken.Subject != u.Subject || c["email"] != u.Email || c["name"] != u.Name ||
					!slices.Equal(got.idToken.Audience, []string{clientID}) {
					t.Errorf("claims = %v", c)
				}
				if got.token.TokenType != "Bearer" || got.token.AccessToken == "" || got.token.Expiry.IsZero() {
					t.Errorf("token = %+v", got.token)
				}
				switch shape {
				case oidctest.ShapeMicrosoft:
					if got.idToken.Issuer != p.URL()+"/"+u.TenantID+"/v2.0" || c["tid"] != u.TenantID ||
						c["oid"] != u.ObjectID || c["preferred_username"] != u.Email {
						t.Errorf("microsoft claims = %v", c)
					}
					if _, ok := c["email_verified"]; ok {
						t.Errorf("microsoft sent email_verified: %v", c)
					}
				case oidctest.ShapeGoogle:
					if got.idToken.Issuer != p.URL() || c["email_verified"] != true || c["azp"] != clientID {
						t.Errorf("google claims = %v", c)
					}
				default:
					if got.idToken.Issuer != p.URL() || c["email_verified"] != true {
						t.Errorf("generic claims = %v", c)
					}
				}
				info, err := r.provider.UserInfo(context.Background(), oauth2.StaticTokenSource(got.token))
				if err != nil {
					t.Fatalf("userinfo: %v", err)
				}
				if info.Subject != u.Subject || info.Email != u.Email {
					t.Errorf("userinfo = %+v", info)
				}
			})
		}
	}
}

// TestFollowRedirects signs in through an RP callback server with an
// http.Client that follows the provider's redirect, as a browser does.
func TestFollowRedirects(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t, oidctest.Options{Shape: oidctest.ShapeMicrosoft})
	var r *rp
	var f flow
	signedIn := make(chan string, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		if q.Get("state") != f.state || q.Get("error") != "" {
			http.Error(w, "bad state or error", http.StatusBadRequest)
			return
		}
		tok, err := r.conf.Exchange(req.Context(), q.Get("code"), oauth2.VerifierOption(f.verifier))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := r.verify(req.Context(), raw)
		if err != nil || idt.Nonce != f.nonce {
			http.Error(w, fmt.Sprint("verify: ", err), http.StatusUnauthorized)
			return
		}
		signedIn <- idt.Subject
		_, _ = io.WriteString(w, "welcome")
	}))
	t.Cleanup(cb.Close)
	p.RegisterClient(clientID, clientSecret, cb.URL+"/callback")
	r = newRP(t, p, oidctest.ShapeMicrosoft, oauth2.AuthStyleAutoDetect)
	r.conf.RedirectURL = cb.URL + "/callback"
	p.SetUser(oidctest.User{Subject: "ms-sub", Email: "max@fabrikam.example", TenantID: "11111111-2222-4333-8444-555555555555"})

	f = newFlow()
	jar, _ := cookiejar.New(nil)
	resp, err := (&http.Client{Jar: jar}).Get(f.authURL(r))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "welcome" {
		t.Fatalf("callback answered %d: %s", resp.StatusCode, body)
	}
	if sub := <-signedIn; sub != "ms-sub" {
		t.Errorf("signed in %q", sub)
	}
}

func TestUserClaims(t *testing.T) {
	t.Parallel()
	t.Run("google email_verified", func(t *testing.T) {
		t.Parallel()
		p := start(t, oidctest.ShapeGoogle)
		r := newRP(t, p, oidctest.ShapeGoogle, oauth2.AuthStyleAutoDetect)
		p.SetUser(oidctest.User{Subject: "g-1", Email: "bob@acme.example", EmailVerified: new(false)})
		got, err := r.signIn(t)
		if err != nil {
			t.Fatal(err)
		}
		if got.claims["email_verified"] != false || got.claims["email"] != "bob@acme.example" {
			t.Errorf("claims = %v", got.claims)
		}
		p.SetUser(oidctest.User{Email: "carol@acme.example"})
		got, err = r.signIn(t)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.claims["email_verified"]; ok || got.idToken.Subject == "" {
			t.Errorf("nil EmailVerified should send no claim, and a subject must be derived: %v", got.claims)
		}
	})
	t.Run("microsoft user without email", func(t *testing.T) {
		t.Parallel()
		p := start(t, oidctest.ShapeMicrosoft)
		r := newRP(t, p, oidctest.ShapeMicrosoft, oauth2.AuthStyleAutoDetect)
		const tid = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
		p.SetUser(oidctest.User{Subject: "pairwise-sub", Name: "No Mail", TenantID: tid, ObjectID: "o-1", XMSEdov: new(true)})
		got, err := r.signIn(t)
		if err != nil {
			t.Fatal(err)
		}
		c := got.claims
		if _, ok := c["email"]; ok {
			t.Errorf("email sent for a user without one: %v", c)
		}
		if c["tid"] != tid || c["oid"] != "o-1" || c["xms_edov"] != true || c["preferred_username"] == "" ||
			got.idToken.Issuer != p.URL()+"/"+tid+"/v2.0" {
			t.Errorf("claims = %v", c)
		}
		p.SetUser(oidctest.User{Subject: "s", Email: "x@y.example"})
		got, err = r.signIn(t)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.claims["xms_edov"]; ok || got.claims["tid"] != oidctest.DefaultTenantID || got.claims["oid"] == "" {
			t.Errorf("defaults: %v", got.claims)
		}
	})
}

// TestMicrosoftIssuerCheck shows why the RP's tid check is needed and what a
// single-tenant RP does instead.
func TestMicrosoftIssuerCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := start(t, oidctest.ShapeMicrosoft)
	r := newRP(t, p, oidctest.ShapeMicrosoft, oauth2.AuthStyleAutoDetect)

	rawToken := func(t *testing.T) string {
		t.Helper()
		f := newFlow()
		q := authorize(t, f.authURL(r))
		tok, err := r.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
		if err != nil {
			t.Fatal(err)
		}
		return tok.Extra("id_token").(string)
	}

	// The template issuer alone refuses every real token.
	strict := r.provider.Verifier(&oidc.Config{ClientID: clientID})
	if _, err := strict.Verify(ctx, rawToken(t)); err == nil || !strings.Contains(err.Error(), "issued by a different provider") {
		t.Errorf("verifier with the template issuer: %v, want an issuer error", err)
	}

	// SkipIssuerCheck alone accepts a token whose iss names another tenant
	// than its tid; the tid check refuses it.
	p.InjectFault(oidctest.FaultWrongIssuer)
	raw := rawToken(t)
	if _, err := r.verifier.Verify(ctx, raw); err != nil {
		t.Fatalf("SkipIssuerCheck verifier: %v", err)
	}
	if _, err := r.verify(ctx, raw); !errors.Is(err, errIssuer) {
		t.Errorf("tid check: %v, want errIssuer", err)
	}

	// Single tenant: plain discovery and verification.
	single, err := oidc.NewProvider(ctx, p.URL()+"/"+oidctest.DefaultTenantID+"/v2.0")
	if err != nil {
		t.Fatal(err)
	}
	v := single.Verifier(&oidc.Config{ClientID: clientID})
	if _, err := v.Verify(ctx, rawToken(t)); err != nil {
		t.Errorf("single-tenant verify of own tenant's user: %v", err)
	}
	p.SetUser(oidctest.User{Subject: "guest", Email: "g@other.example", TenantID: "99999999-0000-4000-8000-000000000000"})
	if _, err := v.Verify(ctx, rawToken(t)); err == nil {
		t.Error("single-tenant verifier accepted another tenant's user")
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	type check func(t *testing.T, shape string, err error)
	contains := func(sub string) check {
		return func(t *testing.T, _ string, err error) {
			if err == nil || !strings.Contains(err.Error(), sub) {
				t.Errorf("error %v, want one containing %q", err, sub)
			}
		}
	}
	cases := []struct {
		fault oidctest.Fault
		check check
	}{
		{oidctest.FaultWrongNonce, func(t *testing.T, _ string, err error) {
			if !errors.Is(err, errNonce) {
				t.Errorf("error %v, want a nonce mismatch", err)
			}
		}},
		{oidctest.FaultExpired, func(t *testing.T, _ string, err error) {
			var expired *oidc.TokenExpiredError
			if !errors.As(err, &expired) {
				t.Errorf("error %v, want *oidc.TokenExpiredError", err)
			}
		}},
		{oidctest.FaultWrongAudience, contains("expected audience")},
		{oidctest.FaultUnknownKey, contains("failed to verify signature")},
		{oidctest.FaultWrongIssuer, func(t *testing.T, shape string, err error) {
			if shape == oidctest.ShapeMicrosoft {
				if !errors.Is(err, errIssuer) {
					t.Errorf("error %v, want errIssuer", err)
				}
				return
			}
			contains("issued by a different provider")(t, shape, err)
		}},
		{oidctest.FaultDenyConsent, func(t *testing.T, _ string, err error) {
			var ae *authError
			if !errors.As(err, &ae) || ae.code != "access_denied" {
				t.Errorf("error %v, want error=access_denied in the redirect", err)
			}
		}},
		{oidctest.FaultTokenEndpointError, func(t *testing.T, _ string, err error) {
			if re := retrieveError(t, err); re.ErrorCode != "invalid_grant" || re.Response.StatusCode != http.StatusBadRequest {
				t.Errorf("token error %q status %d, want invalid_grant 400", re.ErrorCode, re.Response.StatusCode)
			}
		}},
	}
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			p := start(t, shape)
			// Auto-detected client auth retries a failed token request with
			// the other method: FaultTokenEndpointError must survive that.
			r := newRP(t, p, shape, oauth2.AuthStyleAutoDetect)
			for _, c := range cases {
				t.Run(c.fault.String(), func(t *testing.T) {
					p.InjectFault(c.fault)
					_, err := r.signIn(t)
					c.check(t, shape, err)
					if _, err := r.signIn(t); err != nil {
						t.Errorf("fault did not reset: next sign-in failed: %v", err)
					}
				})
			}
		})
	}
}

func TestCodeReplayRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := start(t, oidctest.ShapeGoogle)
	r := newRP(t, p, oidctest.ShapeGoogle, oauth2.AuthStyleInHeader)
	f := newFlow()
	code := authorize(t, f.authURL(r)).Get("code")
	if _, err := r.conf.Exchange(ctx, code, oauth2.VerifierOption(f.verifier)); err != nil {
		t.Fatalf("first exchange: %v", err)
	}
	_, err := r.conf.Exchange(ctx, code, oauth2.VerifierOption(f.verifier))
	if re := retrieveError(t, err); re.ErrorCode != "invalid_grant" {
		t.Errorf("replay: %q, want invalid_grant", re.ErrorCode)
	}
}

func TestWrongVerifierRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := start(t, oidctest.ShapeMicrosoft)
	r := newRP(t, p, oidctest.ShapeMicrosoft, oauth2.AuthStyleInParams)
	f := newFlow()
	code := authorize(t, f.authURL(r)).Get("code")
	for _, opts := range [][]oauth2.AuthCodeOption{
		{oauth2.VerifierOption(oauth2.GenerateVerifier())},
		{oauth2.VerifierOption(f.verifier)}, // the code died with the wrong guess
	} {
		_, err := r.conf.Exchange(ctx, code, opts...)
		if re := retrieveError(t, err); re.ErrorCode != "invalid_grant" {
			t.Errorf("got %q, want invalid_grant", re.ErrorCode)
		}
	}
	f = newFlow()
	code = authorize(t, f.authURL(r)).Get("code")
	_, err := r.conf.Exchange(ctx, code) // no code_verifier at all
	if re := retrieveError(t, err); re.ErrorCode != "invalid_grant" {
		t.Errorf("missing verifier: %q, want invalid_grant", re.ErrorCode)
	}
}

func TestAuthorizeRejects(t *testing.T) {
	t.Parallel()
	p := start(t, oidctest.ShapeGeneric)
	r := newRP(t, p, oidctest.ShapeGeneric, oauth2.AuthStyleAutoDetect)
	const state = "the-state"
	// Each edit is applied to a valid authorization request.
	redirected := []struct {
		name string
		edit func(url.Values)
		want string // error code; "" means a code
	}{
		{"valid", func(url.Values) {}, ""},
		{"response_mode query", func(q url.Values) { q.Set("response_mode", "query") }, ""},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, "invalid_request"},
		{"challenge without method", func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		{"malformed challenge", func(q url.Values) { q.Set("code_challenge", "short") }, "invalid_request"},
		{"no nonce", func(q url.Values) { q.Del("nonce") }, "invalid_request"},
		{"no state", func(q url.Values) { q.Del("state") }, "invalid_request"},
		{"no openid scope", func(q url.Values) { q.Set("scope", "email profile") }, "invalid_scope"},
		{"implicit", func(q url.Values) { q.Set("response_type", "id_token") }, "unsupported_response_type"},
		{"form_post", func(q url.Values) { q.Set("response_mode", "form_post") }, "invalid_request"},
		{"repeated nonce", func(q url.Values) { q.Add("nonce", "second") }, "invalid_request"},
	}
	for _, c := range redirected {
		t.Run(c.name, func(t *testing.T) {
			u, _ := url.Parse(r.conf.AuthCodeURL(state, oidc.Nonce("n"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			q := u.Query()
			c.edit(q)
			u.RawQuery = q.Encode()
			got := authorize(t, u.String())
			if got.Get("error") != c.want || (c.want == "") == (got.Get("code") == "") {
				t.Errorf("redirect query %v, want error %q", got, c.want)
			}
			if q.Has("state") && got.Get("state") != state {
				t.Errorf("state not returned: %v", got)
			}
		})
	}
	// The client and its redirect URI are checked before anything is sent
	// to that URI.
	shown := []struct {
		name string
		edit func(url.Values)
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "intruder") }},
		{"unregistered redirect_uri", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }},
		{"redirect_uri prefix only", func(q url.Values) { q.Set("redirect_uri", redirectURI+"/more") }},
		{"no redirect_uri", func(q url.Values) { q.Del("redirect_uri") }},
	}
	for _, c := range shown {
		t.Run(c.name, func(t *testing.T) {
			u, _ := url.Parse(r.conf.AuthCodeURL(state, oidc.Nonce("n"), oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			q := u.Query()
			c.edit(q)
			u.RawQuery = q.Encode()
			resp, err := noRedirects.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
				t.Errorf("status %d Location %q, want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

func TestTokenRejects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := start(t, oidctest.ShapeGoogle)
	const otherRedirect = "http://127.0.0.1:9/other/callback"
	p.RegisterClient(clientID, clientSecret, redirectURI, otherRedirect)
	p.RegisterClient("second-client", "second-secret", redirectURI)
	r := newRP(t, p, oidctest.ShapeGoogle, oauth2.AuthStyleAutoDetect)

	t.Run("wrong secret", func(t *testing.T) {
		f := newFlow()
		code := authorize(t, f.authURL(r)).Get("code")
		bad := r.conf
		bad.ClientSecret = "guess"
		_, err := bad.Exchange(ctx, code, oauth2.VerifierOption(f.verifier))
		if re := retrieveError(t, err); re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
			t.Errorf("got %q %d, want invalid_client 401", re.ErrorCode, re.Response.StatusCode)
		}
		// An unauthenticated attempt does not burn the code.
		if _, err := r.conf.Exchange(ctx, code, oauth2.VerifierOption(f.verifier)); err != nil {
			t.Errorf("legitimate exchange after a failed client auth: %v", err)
		}
	})
	t.Run("code bound to client", func(t *testing.T) {
		f := newFlow()
		code := authorize(t, f.authURL(r)).Get("code")
		other := r.conf
		other.ClientID, other.ClientSecret = "second-client", "second-secret"
		_, err := other.Exchange(ctx, code, oauth2.VerifierOption(f.verifier))
		if re := retrieveError(t, err); re.ErrorCode != "invalid_grant" {
			t.Errorf("got %q, want invalid_grant", re.ErrorCode)
		}
		if _, err := r.conf.Exchange(ctx, code, oauth2.VerifierOption(f.verifier)); err != nil {
			t.Errorf("owner's exchange after another client's attempt: %v", err)
		}
	})
	t.Run("code bound to redirect_uri", func(t *testing.T) {
		f := newFlow()
		code := authorize(t, f.authURL(r)).Get("code")
		moved := r.conf
		moved.RedirectURL = otherRedirect
		_, err := moved.Exchange(ctx, code, oauth2.VerifierOption(f.verifier))
		if re := retrieveError(t, err); re.ErrorCode != "invalid_grant" {
			t.Errorf("got %q, want invalid_grant", re.ErrorCode)
		}
	})
	t.Run("two client auth methods", func(t *testing.T) {
		f := newFlow()
		code := authorize(t, f.authURL(r)).Get("code")
		form := url.Values{
			"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI},
			"code_verifier": {f.verifier}, "client_id": {clientID}, "client_secret": {clientSecret},
		}
		req, _ := http.NewRequest(http.MethodPost, r.conf.Endpoint.TokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body.Error != "invalid_request" {
			t.Errorf("status %d error %q, want 400 invalid_request", resp.StatusCode, body.Error)
		}
	})
}

func TestSetDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, shape := range shapes {
		t.Run(shape, func(t *testing.T) {
			t.Parallel()
			p := start(t, shape)
			discover := func() error {
				c := ctx
				if shape == oidctest.ShapeMicrosoft {
					c = oidc.InsecureIssuerURLContext(ctx, p.URL()+"/{tenantid}/v2.0")
				}
				_, err := oidc.NewProvider(c, p.Issuer())
				return err
			}
			p.SetDown(true)
			if err := discover(); err == nil || !strings.Contains(err.Error(), "503") {
				t.Errorf("discovery while down: %v, want a 503 error", err)
			}
			p.SetDown(false)
			if err := discover(); err != nil {
				t.Errorf("discovery after recovery: %v", err)
			}
			wellKnown := strings.TrimPrefix(p.Issuer(), p.URL()) + "/.well-known/openid-configuration"
			if got := p.Requests(); !slices.Equal(got, []string{wellKnown, wellKnown}) {
				t.Errorf("Requests() = %q", got)
			}
		})
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	p := start(t, oidctest.ShapeMicrosoft)
	r := newRP(t, p, oidctest.ShapeMicrosoft, oauth2.AuthStyleInHeader)
	if _, err := r.signIn(t); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/common/v2.0/.well-known/openid-configuration",
		"/common/oauth2/v2.0/authorize",
		"/common/oauth2/v2.0/token",
		"/common/discovery/v2.0/keys",
	}
	if got := p.Requests(); !slices.Equal(got, want) {
		t.Errorf("Requests() = %q, want %q", got, want)
	}
}

func TestStartRejectsUnknownShape(t *testing.T) {
	t.Parallel()
	ft := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		oidctest.Start(ft, oidctest.Options{Shape: "okta"})
	}()
	if !ft.failed {
		t.Error("Start accepted an unknown shape")
	}
}

// fatalRecorder records Fatalf instead of ending the test.
type fatalRecorder struct {
	testing.TB
	failed bool
}

func (f *fatalRecorder) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}

func (f *fatalRecorder) Helper() {}
