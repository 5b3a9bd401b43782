package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/kdesk/portalgate/storage"
)

// SSO provider kinds. google and microsoft are presets of oidc.
const (
	SSOGoogle    = "google"
	SSOMicrosoft = "microsoft"
	SSOOIDC      = "oidc"
)

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
	return &http.Client{Timeout: 10 * time.Second}
}

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
func (s *SSOProvider) Warm(logger *zap.Logger) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
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

// ssoState is what the start of an SSO sign-in keeps for its callback.
type ssoState struct {
	Workspace string `json:"ws"`
	Provider  string `json:"p"`
	Nonce     string `json:"n"`
	Verifier  string `json:"v"`
	FlowHash  string `json:"f"`
}

func (g *Gate) ssoProvider(name string) *SSOProvider {
	for _, p := range g.Workspace.SSO {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func (g *Gate) ssoRedirect(name string) string {
	u := *g.Workspace.URL
	u.Path = g.Workspace.authPathFor() + "/sso/" + name + "/callback"
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String()
}

// ssoFailed shows "Sign-in failed" with what to do next, and audits why.
func (g *Gate) ssoFailed(w http.ResponseWriter, r *http.Request, provider, contactID, email, reason, advice string) error {
	g.Portal.Audit(r.Context(), storage.AuditEvent{Workspace: g.Workspace.Name, Event: EventSSOFailure, ContactID: contactID,
		Email: email, Method: "sso:" + provider, ClientIP: clientIP(r), UserAgent: userAgent(r), Reason: reason})
	if advice == "" {
		advice = "Try again, or sign in with a code sent to your email."
	}
	return g.message(w, http.StatusUnauthorized, "Sign-in failed",
		"The single sign-on attempt could not be completed.", advice, g.AuthPath+"/signin", "Back to sign in")
}

// ssoStart begins the authorization-code flow with state, nonce and PKCE.
func (g *Gate) ssoStart(w http.ResponseWriter, r *http.Request, store storage.Store, p *SSOProvider) error {
	ctx := r.Context()
	f, _, err := g.flow(r, store)
	if err != nil {
		if f, err = g.startFlow(w, r, store, "/", false); err != nil {
			return g.storageFailed(w, r, "starting sign-in flow", err)
		}
	}
	ok, _, err := store.Hit(ctx, "sso/ip/"+clientIP(r), g.Portal.Limits.SendsPerIP*4, g.Portal.Limits.Window)
	if err != nil {
		return g.storageFailed(w, r, "counting sso starts", err)
	}
	if !ok {
		return g.ssoFailed(w, r, p.Name, "", "", "rate limited", "Too many sign-in attempts from your network. Try again later.")
	}
	d, err := p.discover(ctx)
	if err != nil {
		g.Portal.Logger.Warn("sso provider unreachable", zap.String("provider", p.Name), zap.Error(err))
		return g.ssoFailed(w, r, p.Name, "", "", "provider unreachable", "The "+p.Label+" sign-in service could not be reached. Try again in a minute, or sign in with a code sent to your email.")
	}
	state, nonce, verifier := newID(), newID(), oauth2.GenerateVerifier()
	st, _ := json.Marshal(ssoState{Workspace: g.Workspace.Name, Provider: p.Name, Nonce: nonce, Verifier: verifier, FlowHash: f.IDHash})
	if err := store.PutOnce(ctx, "sso/"+hashID(state), st, ssoStateTTL); err != nil {
		return g.storageFailed(w, r, "keeping sso state", err)
	}
	to := p.oauth(d, g.ssoRedirect(p.Name)).AuthCodeURL(state,
		oidc.Nonce(nonce),
		oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("response_mode", "query"))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// ssoClaims are the ID token claims portalgate reads.
type ssoClaims struct {
	Subject           string          `json:"sub"`
	Email             string          `json:"email"`
	EmailVerified     json.RawMessage `json:"email_verified"`
	PreferredUsername string          `json:"preferred_username"`
	TenantID          string          `json:"tid"`
	ObjectID          string          `json:"oid"`
	XMSEdov           json.RawMessage `json:"xms_edov"`
}

// claimBool reads a boolean claim that some providers send as a string;
// present reports whether it was there at all.
func claimBool(raw json.RawMessage) (value, present bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return false, false
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.EqualFold(s, "true"), true
	}
	return false, true
}

// ssoCallback finishes the flow: it checks state (single use, bound to this
// browser's flow), exchanges the code with the PKCE verifier, verifies the
// ID token and its nonce, and signs in the matching contact.
func (g *Gate) ssoCallback(w http.ResponseWriter, r *http.Request, store storage.Store, p *SSOProvider) error {
	ctx := r.Context()
	q := r.URL.Query()
	stateParam := q.Get("state")
	if stateParam == "" || len(stateParam) > 128 {
		return g.ssoFailed(w, r, p.Name, "", "", "missing state", "")
	}
	raw, err := store.TakeOnce(ctx, "sso/"+hashID(stateParam))
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return g.storageFailed(w, r, "reading sso state", err)
		}
		return g.ssoFailed(w, r, p.Name, "", "", "unknown, expired or replayed state", "The sign-in took too long or was already used. Start again.")
	}
	var st ssoState
	if err := json.Unmarshal(raw, &st); err != nil || st.Workspace != g.Workspace.Name || st.Provider != p.Name {
		return g.ssoFailed(w, r, p.Name, "", "", "state for another workspace or provider", "")
	}
	f, _, err := g.flow(r, store)
	if err != nil || f.IDHash != st.FlowHash {
		return g.ssoFailed(w, r, p.Name, "", "", "state not started in this browser", "Start the sign-in again from this browser.")
	}
	if e := q.Get("error"); e != "" {
		reason := "provider error: " + truncate(e, 64)
		advice := ""
		if e == "access_denied" {
			reason, advice = "consent denied", "You cancelled the "+p.Label+" sign-in. Try again, or sign in with a code sent to your email."
		}
		return g.ssoFailed(w, r, p.Name, "", "", reason, advice)
	}
	code := q.Get("code")
	if code == "" {
		return g.ssoFailed(w, r, p.Name, "", "", "no authorization code", "")
	}
	d, err := p.discover(ctx)
	if err != nil {
		return g.ssoFailed(w, r, p.Name, "", "", "provider unreachable", "")
	}
	xctx := oidc.ClientContext(ctx, p.client())
	tok, err := p.oauth(d, g.ssoRedirect(p.Name)).Exchange(xctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		g.Portal.Logger.Warn("sso code exchange failed", zap.String("provider", p.Name), zap.Error(err))
		return g.ssoFailed(w, r, p.Name, "", "", "code exchange failed", "")
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return g.ssoFailed(w, r, p.Name, "", "", "no id_token in the token response", "")
	}
	idt, err := d.verifier.Verify(xctx, rawID)
	if err != nil {
		g.Portal.Logger.Warn("sso id token rejected", zap.String("provider", p.Name), zap.Error(err))
		return g.ssoFailed(w, r, p.Name, "", "", "id token rejected: "+verifyReason(err), "")
	}
	if idt.Nonce != st.Nonce {
		return g.ssoFailed(w, r, p.Name, "", "", "nonce mismatch", "")
	}
	var c ssoClaims
	if err := idt.Claims(&c); err != nil {
		return g.ssoFailed(w, r, p.Name, "", "", "unreadable claims", "")
	}
	contact, reason, err := g.ssoContact(ctx, store, p, d, idt.Issuer, c)
	if err != nil {
		return g.storageFailed(w, r, "finding sso contact", err)
	}
	if reason != "" {
		advice := "Your account does not match an active contact of " + g.Workspace.Title + ". Sign in with a code sent to your primary email instead, or ask your service provider."
		if reason == "directory match required" {
			advice = "Single sign-on is only available for accounts synced from your organization's directory. Sign in with a code sent to your primary email instead."
		}
		return g.ssoFailed(w, r, p.Name, contact.ID, c.Email, reason, advice)
	}
	g.Portal.Audit(ctx, storage.AuditEvent{Workspace: g.Workspace.Name, Event: EventSSOSuccess, ContactID: contact.ID,
		Email: contact.Email, Method: "sso:" + p.Name, ClientIP: clientIP(r), UserAgent: userAgent(r)})
	return g.signIn(w, r, store, f, contact, "sso:"+p.Name)
}

// ssoContact finds the active contact an identity belongs to. A non-empty
// reason says why there is none (err is for storage failures only).
func (g *Gate) ssoContact(ctx context.Context, store storage.Store, p *SSOProvider, d *discovered, iss string, c ssoClaims) (storage.Contact, string, error) {
	ws := g.Workspace.Name
	var contact storage.Contact
	var err error
	dirID := c.Subject
	switch p.Kind {
	case SSOMicrosoft:
		if d.issuerTemplate != "" {
			if c.TenantID == "" || iss != strings.ReplaceAll(d.issuerTemplate, "{tenantid}", c.TenantID) {
				return contact, "issuer does not match the token's tenant", nil
			}
		}
		if len(p.AllowedTenants) > 0 && !slices.Contains(p.AllowedTenants, c.TenantID) {
			return contact, "tenant not allowed", nil
		}
		if p.Tenant == "organizations" && c.TenantID == msConsumerTenant {
			return contact, "personal Microsoft accounts are not allowed", nil
		}
		dirID = c.ObjectID
		// A directory contact synced with this object id is the strongest
		// match; otherwise the email counts only when Microsoft vouches for
		// its domain (xms_edov) or marks it verified.
		if c.ObjectID != "" {
			contact, err = store.ContactByDirectoryID(ctx, ws, c.ObjectID)
			if err == nil {
				break
			}
			if !errors.Is(err, storage.ErrNotFound) {
				return contact, "", err
			}
		}
		edov, _ := claimBool(c.XMSEdov)
		verified, _ := claimBool(c.EmailVerified)
		if c.Email == "" || !(edov || verified) {
			return contact, "unverified email", nil
		}
		contact, err = store.ContactByEmail(ctx, ws, c.Email)
	case SSOGoogle:
		if v, _ := claimBool(c.EmailVerified); !v || c.Email == "" {
			return contact, "unverified email", nil
		}
		contact, err = store.ContactByEmail(ctx, ws, c.Email)
	default:
		if v, present := claimBool(c.EmailVerified); present && !v {
			return contact, "unverified email", nil
		}
		if c.Email == "" {
			return contact, "no email claim", nil
		}
		contact, err = store.ContactByEmail(ctx, ws, c.Email)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return contact, "no matching contact", nil
	}
	if err != nil {
		return contact, "", err
	}
	if !contact.Active() {
		return contact, "contact disabled", nil
	}
	if g.Workspace.SSODirectoryMatch {
		if contact.Source != storage.SourceDirectory || (contact.DirectoryID != "" && contact.DirectoryID != dirID) {
			return contact, "directory match required", nil
		}
	}
	return contact, "", nil
}

// verifyReason names why go-oidc refused a token, without echoing it.
func verifyReason(err error) string {
	var exp *oidc.TokenExpiredError
	switch s := err.Error(); {
	case errors.As(err, &exp):
		return "expired"
	case strings.Contains(s, "audience"):
		return "wrong audience"
	case strings.Contains(s, "signature"):
		return "bad signature"
	case strings.Contains(s, "issuer"):
		return "wrong issuer"
	default:
		return "invalid"
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
