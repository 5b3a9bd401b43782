package oidctest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// otherTenantID is the tenant FaultWrongIssuer puts in a Microsoft issuer.
const otherTenantID = "0f0e0d0c-0b0a-4908-8706-050403020100"

// PKCE (RFC 7636 §4.1–4.2): a verifier is 43–128 unreserved characters; an
// S256 challenge is the 43-character base64url SHA-256 of it.
var (
	pkceVerifier  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
	pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// serveAuthorize answers an authorization request at once for the current
// user. Errors about the client or its redirect URI are shown as a 400 page
// (RFC 6749 §4.1.2.1 forbids redirecting to an unverified URI); all others go
// back to the redirect URI as error=…&state=….
func (p *Provider) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.authority(r); !ok {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		http.Error(w, "invalid_request: client_id or redirect_uri repeated", http.StatusBadRequest)
		return
	}
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	p.mu.Lock()
	c := p.clients[clientID]
	p.mu.Unlock()
	if c == nil {
		http.Error(w, "invalid_client: unknown client_id", http.StatusBadRequest)
		return
	}
	if !slices.Contains(c.redirectURIs, redirectURI) {
		http.Error(w, "invalid_request: redirect_uri is not registered for this client", http.StatusBadRequest)
		return
	}
	state := q.Get("state")
	reply := func(params url.Values) {
		u, err := url.Parse(redirectURI)
		if err != nil {
			http.Error(w, "invalid_request: bad redirect_uri", http.StatusBadRequest)
			return
		}
		rq := u.Query()
		for k, v := range params {
			rq[k] = v
		}
		if state != "" {
			rq.Set("state", state)
		}
		u.RawQuery = rq.Encode()
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) {
		reply(url.Values{"error": {code}, "error_description": {desc}})
	}

	for k, v := range q {
		if len(v) > 1 {
			fail("invalid_request", k+" is repeated")
			return
		}
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "response_type must be code")
	case q.Has("response_mode") && q.Get("response_mode") != "query":
		fail("invalid_request", "response_mode must be query")
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "scope must contain openid")
	case state == "":
		fail("invalid_request", "state is required")
	case q.Get("nonce") == "":
		fail("invalid_request", "nonce is required")
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE is required: code_challenge_method must be S256")
	case !pkceChallenge.MatchString(q.Get("code_challenge")):
		fail("invalid_request", "code_challenge must be a base64url SHA-256")
	default:
		p.mu.Lock()
		if p.takeFault(FaultDenyConsent) == FaultDenyConsent {
			p.mu.Unlock()
			fail("access_denied", "the user declined to consent")
			return
		}
		code := randomToken(32)
		p.codes[code] = &grant{
			clientID:    clientID,
			redirectURI: redirectURI,
			nonce:       q.Get("nonce"),
			challenge:   q.Get("code_challenge"),
			scope:       q.Get("scope"),
			user:        withDefaults(p.user),
			expires:     time.Now().Add(codeTTL),
		}
		p.mu.Unlock()
		reply(url.Values{"code": {code}})
	}
}

// tokenError writes an RFC 6749 §5.2 error.
func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// serveToken redeems an authorization code (RFC 6749 §4.1.3 with RFC 7636
// §4.5–4.6). A code is deleted as soon as it is presented by its client's
// authenticated request, whether or not the rest checks out, so neither a
// replay nor a second guess at the verifier gets anywhere.
func (p *Provider) serveToken(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.authority(r); !ok {
		http.NotFound(w, r)
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
		return
	}
	form := r.PostForm
	for k, v := range form {
		if len(v) > 1 {
			tokenError(w, http.StatusBadRequest, "invalid_request", k+" is repeated")
			return
		}
	}

	// Client authentication: client_secret_basic (id and secret are
	// form-urlencoded inside the header, RFC 6749 §2.3.1) or
	// client_secret_post, never both.
	clientID, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		clientID, err1 = url.QueryUnescape(clientID)
		secret, err2 = url.QueryUnescape(secret)
		switch {
		case err1 != nil || err2 != nil:
			p.invalidClient(w, basic, "malformed basic credentials")
			return
		case form.Has("client_secret"):
			tokenError(w, http.StatusBadRequest, "invalid_request", "more than one client authentication method")
			return
		case form.Has("client_id") && form.Get("client_id") != clientID:
			p.invalidClient(w, basic, "client_id differs from the authenticated client")
			return
		}
	} else {
		clientID, secret = form.Get("client_id"), form.Get("client_secret")
	}
	p.mu.Lock()
	c := p.clients[clientID]
	p.mu.Unlock()
	if c == nil || secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		p.invalidClient(w, basic, "unknown client or wrong secret")
		return
	}
	if form.Get("grant_type") != "authorization_code" {
		tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only authorization_code is supported")
		return
	}

	p.mu.Lock()
	code := form.Get("code")
	g := p.codes[code]
	if g != nil && g.clientID == clientID {
		delete(p.codes, code)
	}
	if p.takeFault(FaultTokenEndpointError) == FaultTokenEndpointError {
		p.mu.Unlock()
		tokenError(w, http.StatusBadRequest, "invalid_grant", "injected fault: the code was refused")
		return
	}
	var refusal string
	switch {
	case g == nil:
		refusal = "code is unknown or was already used"
	case time.Now().After(g.expires):
		refusal = "code has expired"
	case g.clientID != clientID:
		refusal = "code was issued to another client"
	case form.Get("redirect_uri") != g.redirectURI:
		refusal = "redirect_uri differs from the authorization request"
	case !pkceVerifier.MatchString(form.Get("code_verifier")):
		refusal = "code_verifier is missing or malformed"
	case !pkceMatches(form.Get("code_verifier"), g.challenge):
		refusal = "code_verifier does not match the code_challenge"
	}
	if refusal != "" {
		p.mu.Unlock()
		tokenError(w, http.StatusBadRequest, "invalid_grant", refusal)
		return
	}
	fault := p.takeFault(FaultWrongNonce, FaultExpired, FaultWrongAudience, FaultUnknownKey, FaultWrongIssuer)
	accessToken := randomToken(32)
	issued := *g
	issued.expires = time.Now().Add(tokenTTL)
	p.tokens[accessToken] = &issued
	p.mu.Unlock()

	idToken, err := p.idToken(g, accessToken, fault)
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": accessToken,
		"token_type":   "Bearer",
		"expires_in":   int(tokenTTL / time.Second),
		"scope":        g.scope,
		"id_token":     idToken,
	})
}

func (p *Provider) invalidClient(w http.ResponseWriter, basic bool, desc string) {
	if basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
	}
	tokenError(w, http.StatusUnauthorized, "invalid_client", desc)
}

func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// tokenIssuer is the iss of a token for u.
func (p *Provider) tokenIssuer(u User) string {
	if p.shape == ShapeMicrosoft {
		return p.srv.URL + "/" + u.TenantID + "/v2.0"
	}
	return p.srv.URL
}

// idToken signs the ID token for g, bent by fault.
func (p *Provider) idToken(g *grant, accessToken string, fault Fault) (string, error) {
	u := g.user
	now := time.Now()
	atSum := sha256.Sum256([]byte(accessToken))
	claims := map[string]any{
		"iss":     p.tokenIssuer(u),
		"sub":     u.Subject,
		"aud":     g.clientID,
		"iat":     now.Unix(),
		"exp":     now.Add(tokenTTL).Unix(),
		"nonce":   g.nonce,
		"at_hash": base64.RawURLEncoding.EncodeToString(atSum[:len(atSum)/2]),
	}
	if u.Name != "" {
		claims["name"] = u.Name
	}
	switch p.shape {
	case ShapeMicrosoft:
		claims["ver"] = "2.0"
		claims["tid"] = u.TenantID
		claims["oid"] = u.ObjectID
		claims["preferred_username"] = u.Email
		if u.Email == "" {
			// A user without a mailbox still has a UPN that looks like an
			// address; relying parties must not take it for an email.
			claims["preferred_username"] = strings.ToLower(u.Subject) + "@" + u.TenantID + ".onmicrosoft.com"
		} else {
			claims["email"] = u.Email
		}
		if u.XMSEdov != nil {
			claims["xms_edov"] = *u.XMSEdov
		}
	default:
		if p.shape == ShapeGoogle {
			claims["azp"] = g.clientID
		}
		if u.Email != "" {
			claims["email"] = u.Email
		}
		if u.EmailVerified != nil {
			claims["email_verified"] = *u.EmailVerified
		}
	}

	key := p.signKey
	switch fault {
	case FaultWrongNonce:
		claims["nonce"] = randomToken(16)
	case FaultExpired:
		claims["iat"] = now.Add(-2 * time.Hour).Unix()
		claims["exp"] = now.Add(-time.Hour).Unix()
	case FaultWrongAudience:
		claims["aud"] = "another-client"
	case FaultUnknownKey:
		key = p.unknownKey
	case FaultWrongIssuer:
		if p.shape == ShapeMicrosoft {
			other := otherTenantID
			if u.TenantID == other {
				other = DefaultTenantID
			}
			claims["iss"] = p.srv.URL + "/" + other + "/v2.0"
		} else {
			claims["iss"] = p.srv.URL + "/other-issuer"
		}
	}
	return sign(key, claims)
}

func sign(key signingKey, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key.priv, KeyID: key.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("creating signer: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing id token: %w", err)
	}
	return jws.CompactSerialize()
}

// serveUserInfo answers the UserInfo endpoint for a Bearer access token.
func (p *Provider) serveUserInfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	g := p.tokens[token]
	p.mu.Unlock()
	if !ok || g == nil || time.Now().After(g.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid_token", http.StatusUnauthorized)
		return
	}
	u := g.user
	info := map[string]any{"sub": u.Subject}
	if u.Name != "" {
		info["name"] = u.Name
	}
	if u.Email != "" {
		info["email"] = u.Email
	}
	if u.EmailVerified != nil && p.shape != ShapeMicrosoft {
		info["email_verified"] = *u.EmailVerified
	}
	writeJSON(w, http.StatusOK, info)
}
