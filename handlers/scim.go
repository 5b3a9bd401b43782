package handlers

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kdesk/portalgate/scim"
	"github.com/kdesk/portalgate/storage"
)

// SCIM is a workspace's directory sync: a SCIM 2.0 service provider at
// {AuthPath}/scim/v2/ (package scim), for bearer tokens only.
type SCIM struct {
	// Tokens are the accepted bearer tokens (several while one is
	// rotated), each at least 32 bytes; never logged.
	Tokens [][]byte
	// Groups, when set, are the display names of the directory groups
	// whose members alone are active contacts.
	Groups []string
	// RequestsPerMinute caps the requests of one token per minute.
	RequestsPerMinute int
}

// EventSCIMUnauthorized is a SCIM request without a valid bearer token.
const EventSCIMUnauthorized = "scim_unauthorized"

// scimEndpoints is the workspace's SCIM handler, made once per store.
type scimEndpoints struct {
	mu    sync.Mutex
	store storage.Store
	h     *scim.Handler
}

// scimHandler is the SCIM handler of the gate's workspace over store.
func (g *Gate) scimHandler(store storage.Store) *scim.Handler {
	g.scim.mu.Lock()
	defer g.scim.mu.Unlock()
	if g.scim.h == nil || g.scim.store != store {
		base := ""
		if g.ws.URL != nil {
			base = g.ws.authURL("/scim/v2")
		}
		g.scim.store = store
		g.scim.h = &scim.Handler{
			Store:     store,
			Workspace: g.ws.Name,
			Prefix:    g.ws.AuthPath + "/scim/v2",
			BaseURL:   base,
			Groups:    g.ws.SCIM.Groups,
			Now:       g.portal.Now,
			Audit: func(r *http.Request, e storage.AuditEvent) {
				e.ClientIP, e.UserAgent = g.portal.ClientIP(r), userAgent(r)
				g.portal.Audit(r.Context(), e)
			},
		}
	}
	return g.scim.h
}

// scim answers a request under {AuthPath}/scim/v2/: the bearer token
// first, then the token's rate limit, then the scim package. The contact
// pages' CSRF and Origin rules do not apply: there is no cookie here, only
// the token.
func (q *request) scim() error {
	sc := q.ws.SCIM
	tok := bearerToken(q.r)
	if !tokenMatches(sc.Tokens, tok) {
		ev := q.event(EventSCIMUnauthorized)
		ev.Reason = "missing or invalid bearer token"
		q.auditRefusal(ev, q.ws.Name+"/"+q.net)
		q.w.Header().Set("WWW-Authenticate", `Bearer realm="scim"`)
		scim.WriteError(q.w, http.StatusUnauthorized, "", "authentication required")
		return nil
	}
	sum := sha256.Sum256(tok)
	key := "scim/token/" + q.ws.Name + "/" + hex.EncodeToString(sum[:8])
	ok, wait, err := q.store.Hit(q.r.Context(), key, sc.RequestsPerMinute, time.Minute)
	if err != nil {
		q.g.portal.storageDown("counting scim requests", err)
		q.w.Header().Set("Retry-After", "30")
		scim.WriteError(q.w, http.StatusServiceUnavailable, "", "storage is temporarily unavailable")
		return nil
	}
	if !ok {
		ev := q.event(EventRateLimited)
		ev.Reason = "scim: token"
		q.auditRefusal(ev, key)
		q.w.Header().Set("Retry-After", strconv.Itoa(waitSeconds(wait)))
		scim.WriteError(q.w, http.StatusTooManyRequests, "", "too many requests")
		return nil
	}
	q.g.scimHandler(q.store).ServeHTTP(q.w, q.r)
	return nil
}

// bearerToken is the request's bearer token, nil when there is none.
func bearerToken(r *http.Request) []byte {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	return []byte(strings.TrimSpace(tok))
}

// tokenMatches compares tok with every accepted token in constant time.
func tokenMatches(tokens [][]byte, tok []byte) bool {
	found := 0
	for _, t := range tokens {
		found |= subtle.ConstantTimeCompare(t, tok)
	}
	return found == 1 && len(tok) > 0
}
