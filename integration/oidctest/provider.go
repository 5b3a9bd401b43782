// Package oidctest runs a real OpenID Connect provider inside a test process,
// so that portalgate's relying-party code is exercised against genuine
// discovery, authorization-code + PKCE, token and JWKS endpoints and RS256
// ID tokens, without reaching Google or Microsoft.
//
// Three shapes are offered:
//
//   - "google": the issuer is the server URL; ID tokens carry email,
//     email_verified, name and azp, like accounts.google.com.
//   - "microsoft": the Microsoft identity platform v2.0 multi-tenant layout.
//     Discovery is served at <URL>/common/v2.0, <URL>/organizations/v2.0,
//     <URL>/consumers/v2.0 and <URL>/<tenant>/v2.0; the first three
//     advertise the template issuer "<URL>/{tenantid}/v2.0", a tenant
//     advertises its own issuer. ID tokens carry iss "<URL>/<tid>/v2.0", tid,
//     oid, preferred_username, email (only when the user has one) and
//     xms_edov (only when set), never email_verified.
//   - "generic": a plain OpenID Connect provider whose issuer is the server
//     URL; ID tokens carry email, email_verified and name.
//
// The authorization endpoint never shows a login page: it answers at once with
// a 302 to the client's redirect_uri carrying a code for the current user (see
// [Provider.SetUser]), so a browser or an [net/http.Client] can follow it.
package oidctest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Shapes accepted in [Options.Shape].
const (
	ShapeGoogle    = "google"
	ShapeMicrosoft = "microsoft"
	ShapeGeneric   = "generic"
)

// DefaultTenantID is the Microsoft tenant ("tid") of a user whose TenantID is
// empty.
const DefaultTenantID = "5b6c1e3a-2f4d-4c8e-9a7b-0d1e2f3a4b5c"

// ConsumerTenantID is the tenant Microsoft uses for personal accounts; the
// "consumers" discovery document advertises it as its issuer.
const ConsumerTenantID = "9188040d-6c67-4c5b-b112-36a304b66dad"

// Options configure a [Provider].
type Options struct {
	// Shape selects the provider's layout and claims: "google", "microsoft"
	// or "generic". Empty means "generic".
	Shape string
}

// User is the identity the provider signs in. Empty fields get defaults,
// described on each field, when the authorization request is answered.
type User struct {
	// Subject is the "sub" claim. Default: derived from Email (or "user-1"
	// when Email is empty too), stable across requests.
	Subject string
	// Email is the "email" claim; no claim is sent when it is empty.
	Email string
	// EmailVerified is the "email_verified" claim (google and generic
	// shapes only); no claim is sent when it is nil.
	EmailVerified *bool
	// Name is the "name" claim; no claim is sent when it is empty.
	Name string
	// TenantID is the Microsoft "tid" claim and picks the token's issuer
	// "<URL>/<tid>/v2.0". Default: DefaultTenantID.
	TenantID string
	// ObjectID is the Microsoft "oid" claim. Default: derived from Subject.
	ObjectID string
	// XMSEdov is the Microsoft "xms_edov" claim (email domain owner
	// verified); no claim is sent when it is nil.
	XMSEdov *bool
}

// DefaultUser returns the user signed in until [Provider.SetUser] is called:
// jane@acme.example, verified, in tenant DefaultTenantID.
func DefaultUser() User {
	return User{
		Subject:       "108234567890123456789",
		Email:         "jane@acme.example",
		EmailVerified: new(true),
		Name:          "Jane Doe",
		TenantID:      DefaultTenantID,
		ObjectID:      "00000000-0000-0000-66f3-3332eca7ea81",
	}
}

// Fault is a misbehaviour injected with [Provider.InjectFault] for negative
// tests. It is used once, by the next request it applies to, then reset.
type Fault int

// Faults. Those that change the ID token apply to the next token issued by
// the token endpoint; FaultDenyConsent applies to the next authorization
// request; FaultTokenEndpointError to the next token request.
const (
	// FaultNone: behave.
	FaultNone Fault = iota
	// FaultWrongNonce: the ID token's nonce is not the one from the
	// authorization request.
	FaultWrongNonce
	// FaultExpired: the ID token's exp is an hour in the past.
	FaultExpired
	// FaultWrongAudience: the ID token's aud is another client.
	FaultWrongAudience
	// FaultUnknownKey: the ID token is signed by a key that the JWKS does not
	// publish (its kid is unknown too).
	FaultUnknownKey
	// FaultWrongIssuer: the ID token's iss is another provider (google,
	// generic) or another tenant than its tid (microsoft).
	FaultWrongIssuer
	// FaultDenyConsent: the authorization endpoint redirects back with
	// error=access_denied (and the state) instead of a code.
	FaultDenyConsent
	// FaultTokenEndpointError: the token endpoint answers 400 invalid_grant
	// and the code presented is burnt.
	FaultTokenEndpointError
)

// String names the fault, for test names.
func (f Fault) String() string {
	names := [...]string{"FaultNone", "FaultWrongNonce", "FaultExpired", "FaultWrongAudience",
		"FaultUnknownKey", "FaultWrongIssuer", "FaultDenyConsent", "FaultTokenEndpointError"}
	if f >= 0 && int(f) < len(names) {
		return names[f]
	}
	return "Fault(?)"
}

// Lifetimes of what the provider hands out.
const (
	codeTTL  = 10 * time.Minute
	tokenTTL = time.Hour
)

// Provider is a running OpenID Connect provider. Its methods are safe for
// concurrent use.
type Provider struct {
	srv   *httptest.Server
	shape string

	signKey    signingKey // published in the JWKS
	unknownKey signingKey // never published: FaultUnknownKey
	jwks       []byte

	mu       sync.Mutex
	clients  map[string]*client
	user     User
	fault    Fault
	down     bool
	requests []string
	codes    map[string]*grant
	tokens   map[string]*grant // access token → what it was issued for
}

type client struct {
	secret       string
	redirectURIs []string
}

// grant is what an authorization code (and then an access token) stands for.
type grant struct {
	clientID    string
	redirectURI string
	nonce       string
	challenge   string
	scope       string
	user        User
	expires     time.Time
}

type signingKey struct {
	priv *rsa.PrivateKey
	kid  string
}

// Start runs a provider on 127.0.0.1 until the test ends.
func Start(t testing.TB, o Options) *Provider {
	t.Helper()
	shape := o.Shape
	if shape == "" {
		shape = ShapeGeneric
	}
	if shape != ShapeGoogle && shape != ShapeMicrosoft && shape != ShapeGeneric {
		t.Fatalf("oidctest: unknown shape %q (want google, microsoft or generic)", o.Shape)
	}
	p := &Provider{
		shape:   shape,
		clients: make(map[string]*client),
		user:    DefaultUser(),
		codes:   make(map[string]*grant),
		tokens:  make(map[string]*grant),
	}
	var err error
	if p.signKey, err = newSigningKey(); err != nil {
		t.Fatalf("oidctest: generating signing key: %v", err)
	}
	if p.unknownKey, err = newSigningKey(); err != nil {
		t.Fatalf("oidctest: generating signing key: %v", err)
	}
	p.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       p.signKey.priv.Public(),
		KeyID:     p.signKey.kid,
		Algorithm: string(jose.RS256),
		Use:       "sig",
	}}})
	if err != nil {
		t.Fatalf("oidctest: encoding JWKS: %v", err)
	}
	p.srv = httptest.NewServer(p.routes())
	t.Cleanup(p.srv.Close)
	return p
}

func newSigningKey() (signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return signingKey{}, err
	}
	thumb, err := (&jose.JSONWebKey{Key: priv.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return signingKey{}, err
	}
	return signingKey{priv: priv, kid: base64.RawURLEncoding.EncodeToString(thumb[:12])}, nil
}

// URL is the server's base URL, http://127.0.0.1:<port>.
func (p *Provider) URL() string { return p.srv.URL }

// Issuer is what a relying party configures as its issuer: the server URL
// for google and generic, <URL>/common/v2.0 for microsoft (whose discovery
// document then advertises the template issuer <URL>/{tenantid}/v2.0).
func (p *Provider) Issuer() string {
	if p.shape == ShapeMicrosoft {
		return p.srv.URL + "/common/v2.0"
	}
	return p.srv.URL
}

// RegisterClient registers a confidential client with its secret and the
// exact redirect URIs it may use. Registering an id again replaces it.
func (p *Provider) RegisterClient(id, secret string, redirectURIs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients[id] = &client{secret: secret, redirectURIs: slices.Clone(redirectURIs)}
}

// SetUser sets who is signed in by the following authorization requests,
// until it is called again.
func (p *Provider) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user = u
}

// InjectFault arms f for the next request it applies to (see [Fault]);
// FaultNone disarms.
func (p *Provider) InjectFault(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

// SetDown makes every endpoint answer 503 while down is true.
func (p *Provider) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// Requests lists the paths requested so far, in order, including those
// answered 503 while down.
func (p *Provider) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.requests)
}

// takeFault returns the armed fault and disarms it when it is one of want.
// The caller holds p.mu.
func (p *Provider) takeFault(want ...Fault) Fault {
	if slices.Contains(want, p.fault) {
		f := p.fault
		p.fault = FaultNone
		return f
	}
	return FaultNone
}

// tenantSegment matches what Microsoft accepts as a tenant in a path: a
// tenant id, a verified domain, or common / organizations / consumers.
var tenantSegment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]*$`)

func (p *Provider) routes() http.Handler {
	mux := http.NewServeMux()
	if p.shape == ShapeMicrosoft {
		mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", p.serveDiscovery)
		mux.HandleFunc("GET /{tenant}/oauth2/v2.0/authorize", p.serveAuthorize)
		mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", p.serveToken)
		mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", p.serveJWKS)
		mux.HandleFunc("/oidc/userinfo", p.serveUserInfo)
	} else {
		mux.HandleFunc("GET /.well-known/openid-configuration", p.serveDiscovery)
		mux.HandleFunc("GET /authorize", p.serveAuthorize)
		mux.HandleFunc("POST /token", p.serveToken)
		mux.HandleFunc("GET /jwks", p.serveJWKS)
		mux.HandleFunc("/userinfo", p.serveUserInfo)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests = append(p.requests, r.URL.Path)
		down := p.down
		p.mu.Unlock()
		if down {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "oidctest: provider is down", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// authority is the tenant path segment of a Microsoft request ("" for the
// other shapes); ok is false when it is not a plausible tenant.
func (p *Provider) authority(r *http.Request) (string, bool) {
	if p.shape != ShapeMicrosoft {
		return "", true
	}
	t := r.PathValue("tenant")
	return t, tenantSegment.MatchString(t)
}

func (p *Provider) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	tenant, ok := p.authority(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	doc := map[string]any{
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
		"scopes_supported":                      []string{"openid", "email", "profile"},
	}
	base := p.srv.URL
	if p.shape == ShapeMicrosoft {
		issuer := base + "/" + tenant + "/v2.0"
		switch strings.ToLower(tenant) {
		case "common", "organizations":
			issuer = base + "/{tenantid}/v2.0"
		case "consumers":
			issuer = base + "/" + ConsumerTenantID + "/v2.0"
		}
		doc["issuer"] = issuer
		doc["authorization_endpoint"] = base + "/" + tenant + "/oauth2/v2.0/authorize"
		doc["token_endpoint"] = base + "/" + tenant + "/oauth2/v2.0/token"
		doc["jwks_uri"] = base + "/" + tenant + "/discovery/v2.0/keys"
		doc["userinfo_endpoint"] = base + "/oidc/userinfo"
		doc["subject_types_supported"] = []string{"pairwise"}
		doc["claims_supported"] = []string{"sub", "iss", "aud", "exp", "iat", "nonce", "tid", "oid",
			"preferred_username", "name", "email", "xms_edov"}
		doc["tenant_region_scope"] = nil
		doc["scopes_supported"] = []string{"openid", "profile", "email", "offline_access"}
	} else {
		doc["issuer"] = base
		doc["authorization_endpoint"] = base + "/authorize"
		doc["token_endpoint"] = base + "/token"
		doc["jwks_uri"] = base + "/jwks"
		doc["userinfo_endpoint"] = base + "/userinfo"
		doc["subject_types_supported"] = []string{"public"}
		doc["claims_supported"] = []string{"sub", "iss", "aud", "exp", "iat", "nonce", "email",
			"email_verified", "name"}
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *Provider) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.authority(r); !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(p.jwks)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// randomToken returns n random bytes, base64url-encoded.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// withDefaults fills a user's empty fields as documented on [User].
func withDefaults(u User) User {
	if u.Subject == "" {
		if u.Email == "" {
			u.Subject = "user-1"
		} else {
			sum := sha256.Sum256([]byte(strings.ToLower(u.Email)))
			u.Subject = hex.EncodeToString(sum[:10])
		}
	}
	if u.TenantID == "" {
		u.TenantID = DefaultTenantID
	}
	if u.ObjectID == "" {
		h := hex.EncodeToString(func() []byte { s := sha256.Sum256([]byte(u.Subject)); return s[:16] }())
		u.ObjectID = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	return u
}
