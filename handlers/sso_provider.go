package handlers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// SSO provider kinds. google and microsoft are presets of oidc.
const (
	SSOGoogle    = "google"
	SSOMicrosoft = "microsoft"
	SSOOIDC      = "oidc"
)

// Single sign-on providers and their discovery.

// msConsumerTenant is the tenant of personal Microsoft accounts, refused
// when the tenant setting is "organizations".
const msConsumerTenant = "9188040d-6c67-4c5b-b112-36a304b66dad"

// ssoStateTTL is how long a started SSO sign-in may take.
const ssoStateTTL = 10 * time.Minute

// SSOProvider is one OpenID Connect provider a workspace offers.
type SSOProvider struct {
	// Name is the path segment: /_portal/sso/{Name}.
	Name string
	// Kind is google, microsoft or oidc.
	Kind string
	// Label is the button text after "Continue with".
	Label string
	// Issuer is the OpenID Connect issuer URL; for Microsoft with tenant
	// common or organizations the discovery document names the
	// "{tenantid}" template issuer, and each token's iss is checked
	// against its tid.
	Issuer       string
	ClientID     string
	ClientSecret string
	// Tenant is the Microsoft tenant setting: common, organizations or an id.
	Tenant string
	// AllowedTenants limits Microsoft sign-ins to these tenant ids.
	AllowedTenants []string
	Scopes         []string
	// TrustUnverifiedEmail (oidc only) lets an email claim count without
	// email_verified: true.
	TrustUnverifiedEmail bool
	// HTTPClient talks to the provider; default has a 10 s timeout.
	HTTPClient *http.Client

	mu        sync.Mutex
	disc      *discovered
	lastTry   time.Time
	lastError error
}

type discovered struct {
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	// issuerTemplate is set for multi-tenant Microsoft issuers.
	issuerTemplate string
}

func (s *SSOProvider) client() *http.Client {
	if s.HTTPClient != nil {
		return s.HTTPClient
	}
	return ssoHTTP
}

// ssoHTTP talks to the providers: discovery, keys, the code exchange.
var ssoHTTP = &http.Client{Timeout: 10 * time.Second, Transport: keepAliveTransport()}

// discover fetches the provider's discovery document once it can; a failure
// is remembered for a few seconds so an unreachable provider is not hit on
// every click, and retried after that.
func (s *SSOProvider) discover(ctx context.Context) (*discovered, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.disc != nil {
		return s.disc, nil
	}
	if s.lastError != nil && time.Since(s.lastTry) < 2*time.Second {
		return nil, s.lastError
	}
	s.lastTry = time.Now()
	d, err := s.fetchDiscovery(ctx)
	if err != nil {
		s.lastError = err
		return nil, err
	}
	s.disc, s.lastError = d, nil
	return d, nil
}

// Warm tries discovery in the background so the first click is fast; a
// failure here is only logged and retried on use.
func (s *SSOProvider) Warm(ctx context.Context, logger *zap.Logger) {
	go func() {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if _, err := s.discover(ctx); err != nil {
			logger.Warn("sso provider discovery failed; will retry on use", zap.String("provider", s.Name), zap.Error(err))
		}
	}()
}

func (s *SSOProvider) fetchDiscovery(ctx context.Context) (*discovered, error) {
	wellKnown := strings.TrimSuffix(s.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("discovery: %s answered %s", wellKnown, resp.Status)
	}
	var doc struct {
		Issuer      string   `json:"issuer"`
		AuthURL     string   `json:"authorization_endpoint"`
		TokenURL    string   `json:"token_endpoint"`
		JWKSURL     string   `json:"jwks_uri"`
		UserInfoURL string   `json:"userinfo_endpoint"`
		Algs        []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("discovery: decoding %s: %w", wellKnown, err)
	}
	if doc.AuthURL == "" || doc.TokenURL == "" || doc.JWKSURL == "" {
		return nil, fmt.Errorf("discovery: %s lacks endpoints", wellKnown)
	}
	d := &discovered{}
	switch {
	case s.Kind == SSOMicrosoft && strings.Contains(doc.Issuer, "{tenantid}"):
		d.issuerTemplate = doc.Issuer
	case strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(s.Issuer, "/"):
		return nil, fmt.Errorf("discovery: issuer %q does not match the configured %q", doc.Issuer, s.Issuer)
	}
	pc := oidc.ProviderConfig{
		IssuerURL:   doc.Issuer,
		AuthURL:     doc.AuthURL,
		TokenURL:    doc.TokenURL,
		JWKSURL:     doc.JWKSURL,
		UserInfoURL: doc.UserInfoURL,
		Algorithms:  doc.Algs,
	}
	// The key set lives as long as the provider; it fetches keys with our
	// client.
	keyCtx := oidc.ClientContext(context.Background(), s.client())
	d.provider = pc.NewProvider(keyCtx)
	d.verifier = d.provider.VerifierContext(keyCtx, &oidc.Config{
		ClientID:        s.ClientID,
		SkipIssuerCheck: d.issuerTemplate != "",
	})
	return d, nil
}

func (s *SSOProvider) oauth(d *discovered, redirect string) *oauth2.Config {
	scopes := s.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "email", "profile"}
	}
	return &oauth2.Config{
		ClientID:     s.ClientID,
		ClientSecret: s.ClientSecret,
		Endpoint:     d.provider.Endpoint(),
		RedirectURL:  redirect,
		Scopes:       scopes,
	}
}
