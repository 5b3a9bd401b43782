package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/kdesk/portalgate/storage"
)

// Sign-in with single sign-on: the OpenID Connect authorization-code flow
// with state, nonce and PKCE, and the match of an identity to a contact.

// ssoState is what the start of an SSO sign-in keeps for its callback.
type ssoState struct {
	Workspace string `json:"ws"`
	Provider  string `json:"p"`
	Nonce     string `json:"n"`
	Verifier  string `json:"v"`
	FlowHash  string `json:"f"`
}

// ssoProvider is the provider the path names, or nil.
func (q *request) ssoProvider() *SSOProvider {
	return q.ws.ssoProvider(q.r.PathValue("name"))
}

// unknownSSO answers a path that names no provider of the workspace.
func (q *request) unknownSSO() error {
	return q.message(http.StatusNotFound, "signin_failed", "sso_unknown", "", q.ws.AuthPath+"/signin", "back_to_signin")
}

func (q *request) ssoRedirect(name string) string {
	return q.ws.authURL("/sso/" + name + "/callback")
}

// ssoFailed shows "Sign-in failed" with what to do next (advice, a
// catalog key; "" for sso_advice), and audits why.
func (q *request) ssoFailed(provider, contactID, email, reason, advice string) error {
	ev := q.event(EventSSOFailure)
	ev.ContactID, ev.Email, ev.Method, ev.Reason = contactID, email, "sso:"+provider, reason
	q.audit(ev)
	if advice == "" {
		advice = "sso_advice"
	}
	label := provider
	if p := q.ws.ssoProvider(provider); p != nil {
		label = p.Label
	}
	d := q.page(q.t("signin_failed"))
	d.Message = q.t("sso_failed")
	d.Next = q.t(advice, "Provider", label, "Workspace", q.ws.Title)
	d.ActionURL, d.ActionLabel = q.ws.AuthPath+"/signin", q.t("back_to_signin")
	return q.ws.pages(q.g.portal).render(q.w, http.StatusUnauthorized, pageMessage, d)
}

// ssoStart begins the authorization-code flow with state, nonce and PKCE.
func (q *request) ssoStart() error {
	p := q.ssoProvider()
	if p == nil {
		return q.unknownSSO()
	}
	ctx := q.r.Context()
	f, ok, err := q.storeFlow()
	if !ok {
		return err
	}
	lim := q.g.portal.Limits
	ok, _, err = q.store.Hit(ctx, "sso/ip/"+q.net, 2*lim.RequestsPerIP, lim.Window)
	if err != nil {
		return q.failed("counting sso starts", err)
	}
	if !ok {
		return q.ssoFailed(p.Name, "", "", "rate limited", "sso_rate_limited")
	}
	d, err := p.discover(ctx)
	if err != nil {
		q.g.portal.Logger.Warn("sso provider unreachable", zap.String("provider", p.Name), zap.Error(err))
		return q.ssoFailed(p.Name, "", "", "provider unreachable", "sso_unreachable")
	}
	state, nonce, verifier := NewID(), NewID(), oauth2.GenerateVerifier()
	st, _ := json.Marshal(ssoState{Workspace: q.ws.Name, Provider: p.Name, Nonce: nonce, Verifier: verifier, FlowHash: f.IDHash})
	if err := q.store.PutOnce(ctx, "sso/"+HashID(state), st, ssoStateTTL); err != nil {
		return q.failed("keeping sso state", err)
	}
	to := p.oauth(d, q.ssoRedirect(p.Name)).AuthCodeURL(state,
		oidc.Nonce(nonce),
		oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("response_mode", "query"))
	q.w.Header().Set("Cache-Control", "no-store")
	http.Redirect(q.w, q.r, to, http.StatusSeeOther)
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
func (q *request) ssoCallback() error {
	p := q.ssoProvider()
	if p == nil {
		return q.unknownSSO()
	}
	ctx := q.r.Context()
	params := q.r.URL.Query()
	stateParam := params.Get("state")
	if stateParam == "" || len(stateParam) > 128 {
		return q.ssoFailed(p.Name, "", "", "missing state", "")
	}
	raw, err := q.store.TakeOnce(ctx, "sso/"+HashID(stateParam))
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return q.failed("reading sso state", err)
		}
		return q.ssoFailed(p.Name, "", "", "unknown, expired or replayed state", "sso_expired")
	}
	var st ssoState
	if err := json.Unmarshal(raw, &st); err != nil || st.Workspace != q.ws.Name || st.Provider != p.Name {
		return q.ssoFailed(p.Name, "", "", "state for another workspace or provider", "")
	}
	f, _, err := q.flow()
	if err != nil || f.IDHash != st.FlowHash {
		return q.ssoFailed(p.Name, "", "", "state not started in this browser", "sso_other_browser")
	}
	if e := params.Get("error"); e != "" {
		reason := "provider error: " + truncate(e, 64)
		advice := ""
		if e == "access_denied" {
			reason, advice = "consent denied", "sso_cancelled"
		}
		return q.ssoFailed(p.Name, "", "", reason, advice)
	}
	code := params.Get("code")
	if code == "" {
		return q.ssoFailed(p.Name, "", "", "no authorization code", "")
	}
	d, err := p.discover(ctx)
	if err != nil {
		return q.ssoFailed(p.Name, "", "", "provider unreachable", "")
	}
	xctx := oidc.ClientContext(ctx, p.client())
	tok, err := p.oauth(d, q.ssoRedirect(p.Name)).Exchange(xctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		q.g.portal.Logger.Warn("sso code exchange failed", zap.String("provider", p.Name), zap.Error(err))
		return q.ssoFailed(p.Name, "", "", "code exchange failed", "")
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return q.ssoFailed(p.Name, "", "", "no id_token in the token response", "")
	}
	idt, err := d.verifier.Verify(xctx, rawID)
	if err != nil {
		q.g.portal.Logger.Warn("sso id token rejected", zap.String("provider", p.Name), zap.Error(err))
		return q.ssoFailed(p.Name, "", "", "id token rejected: "+verifyReason(err), "")
	}
	if idt.Nonce != st.Nonce {
		return q.ssoFailed(p.Name, "", "", "nonce mismatch", "")
	}
	var c ssoClaims
	if err := idt.Claims(&c); err != nil {
		return q.ssoFailed(p.Name, "", "", "unreadable claims", "")
	}
	contact, reason, err := q.ssoContact(p, d, idt.Issuer, c)
	if err != nil {
		return q.failed("finding sso contact", err)
	}
	if reason != "" {
		advice := "sso_no_contact"
		if reason == "directory match required" {
			advice = "sso_directory_only"
		}
		return q.ssoFailed(p.Name, contact.ID, c.Email, reason, advice)
	}
	ev := q.event(EventSSOSuccess)
	ev.ContactID, ev.Email, ev.Method = contact.ID, contact.Email, "sso:"+p.Name
	return q.signIn(f, contact, "sso:"+p.Name, ev)
}

// ssoContact finds the active contact an identity belongs to. A non-empty
// reason says why there is none (err is for storage failures only).
func (q *request) ssoContact(p *SSOProvider, d *discovered, iss string, c ssoClaims) (storage.Contact, string, error) {
	ctx, store, ws := q.r.Context(), q.store, q.ws.Name
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
		contact, err = contactByClaimedEmail(ctx, store, ws, c.Email)
	case SSOGoogle:
		if v, _ := claimBool(c.EmailVerified); !v || c.Email == "" {
			return contact, "unverified email", nil
		}
		contact, err = contactByClaimedEmail(ctx, store, ws, c.Email)
	default:
		// A generic provider's email counts only when it says it checked
		// it; a provider the operator trusts may also leave the claim out,
		// but never say false.
		if v, present := claimBool(c.EmailVerified); !v && (present || !p.TrustUnverifiedEmail) {
			return contact, "unverified email", nil
		}
		if c.Email == "" {
			return contact, "no email claim", nil
		}
		contact, err = contactByClaimedEmail(ctx, store, ws, c.Email)
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
	if q.ws.SSODirectoryMatch {
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

// contactByClaimedEmail finds the contact of an email claim, comparing only
// normalized forms (storage.NormalizeEmail), as the sign-in form does: a
// claim that is no valid address, or one that only case folding would
// turn into a contact's address, matches nobody.
func contactByClaimedEmail(ctx context.Context, store storage.Contacts, ws, email string) (storage.Contact, error) {
	e, err := storage.NormalizeEmail(email)
	if err != nil {
		return storage.Contact{}, storage.ErrNotFound
	}
	return store.ContactByEmail(ctx, ws, e)
}
