package handlers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/kdesk/portalgate/storage"
)

// Identity headers set on requests passed to the portal. Copies sent by the
// client are always removed first.
const (
	HeaderContactID    = "X-Portal-Contact-Id"
	HeaderContactEmail = "X-Portal-Contact-Email"
	HeaderContactName  = "X-Portal-Contact-Name"
	HeaderWorkspace    = "X-Portal-Workspace"
)

var identityHeaders = []string{HeaderContactID, HeaderContactEmail, HeaderContactName, HeaderWorkspace}

// Cookie names; on HTTPS the __Host- prefix pins them to this host.
const (
	cookieSession = "portal_session"
	cookieFlow    = "portal_flow"
)

// Gate guards one workspace's portal.
type Gate struct {
	Portal    *Portal
	Workspace *Workspace
	// AuthPath is the reserved prefix of the sign-in pages, like "/_portal".
	AuthPath string

	counters *gateCounters
}

// NewGate returns the gate of one workspace.
func NewGate(p *Portal, ws *Workspace) *Gate {
	return &Gate{Portal: p, Workspace: ws, AuthPath: ws.AuthPath, counters: p.Metrics.gateCounters(ws.Name)}
}

// ServeHTTP passes signed-in requests to next with the contact's identity,
// serves the sign-in pages under AuthPath, and sends everyone else to sign
// in.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// Incoming header names are canonical, and so are these constants.
	for _, h := range identityHeaders {
		delete(r.Header, h)
	}
	ws := g.Workspace
	store := g.Portal.Store()
	if store == nil && !ws.Disabled {
		store = g.Portal.storeWait(r.Context())
	}
	if ws.Disabled {
		if g.isAuthPath(r.URL.Path) {
			// A sign-in attempt at a disabled portal is worth a trace;
			// page views of the portal itself are not.
			g.Portal.Audit(r.Context(), storage.AuditEvent{Workspace: ws.Name, Event: EventPortalUnavailable,
				ClientIP: clientIP(r), UserAgent: userAgent(r), Reason: "workspace disabled"})
		}
		return g.unavailable(w, r)
	}
	if store == nil {
		return g.storageFailed(w, r, "opening storage", errUnavailable)
	}
	if p := r.URL.Path; p == g.AuthPath || strings.HasPrefix(p, g.AuthPath+"/") {
		return g.serveAuth(w, r, store, strings.TrimPrefix(p, g.AuthPath))
	}

	_, contact, err := g.signedIn(r, store)
	switch {
	case err == nil:
		// The portal never sees the gate's own cookies.
		stripCookies(r)
		// One backing array for the four header values: one allocation.
		v := []string{contact.ID, contact.Email, contact.Name, ws.Name}
		r.Header[HeaderContactID] = v[0:1:1]
		r.Header[HeaderContactEmail] = v[1:2:2]
		r.Header[HeaderContactName] = v[2:3:3]
		r.Header[HeaderWorkspace] = v[3:4:4]
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			repl.Set("http.auth.user.id", contact.ID)
			repl.Set("http.auth.user.email", contact.Email)
		}
		g.count(func(c *gateCounters) prometheus.Counter { return c.pass })
		g.Portal.storageUp()
		return next.ServeHTTP(w, r)
	case !errors.Is(err, errSignedOut):
		return g.storageFailed(w, r, "reading session", err)
	}
	return g.challenge(w, r, store)
}

// errSignedOut is any reason a request has no valid session.
var errSignedOut = errors.New("not signed in")

// signedIn finds the request's session and its still-active contact. This
// is the hot path: it reads through the store's cache and writes only when
// the session's last activity needs refreshing.
func (g *Gate) signedIn(r *http.Request, store storage.Store) (storage.Session, storage.Contact, error) {
	id := cookieValue(r, cookieSession)
	if !validID(id) {
		return storage.Session{}, storage.Contact{}, errSignedOut
	}
	ctx := r.Context()
	hash := hashID(id)
	sess, err := store.Session(ctx, hash)
	if err != nil {
		return sess, storage.Contact{}, g.storeErr(err)
	}
	if sess.Workspace != g.Workspace.Name {
		return sess, storage.Contact{}, errSignedOut
	}
	contact, err := store.Contact(ctx, sess.Workspace, sess.ContactID)
	if err != nil {
		return sess, contact, g.storeErr(err)
	}
	if !contact.Active() {
		return sess, contact, errSignedOut
	}
	now := g.Portal.Now()
	if now.Sub(sess.LastSeen) > touchEvery(sess.Idle) {
		if err := store.TouchSession(context.WithoutCancel(ctx), hash, now); err != nil && !errors.Is(err, storage.ErrNotFound) {
			g.Portal.Logger.Warn("refreshing session activity", zap.Error(err))
		}
	}
	return sess, contact, nil
}

// touchEvery is how stale a session's last activity may get before a
// request records it: a small part of the idle timeout, so most requests
// write nothing.
func touchEvery(idle time.Duration) time.Duration {
	if idle <= 0 {
		return time.Hour
	}
	return min(idle/20, 5*time.Minute)
}

func (g *Gate) storeErr(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return errSignedOut
	}
	return err
}

// storageFailed fails closed when storage cannot answer: the page (or a
// JSON 503 for API calls) says to try again shortly, and the outage is
// logged once, not once per request.
func (g *Gate) storageFailed(w http.ResponseWriter, r *http.Request, what string, err error) error {
	g.Portal.storageDown(what, err)
	return g.serviceUnavailable(w, r, "30", "temporarily_unavailable", "Sign-in is temporarily unavailable. Try again shortly.",
		"The "+g.Workspace.Title+" portal is temporarily unavailable.", "Nothing you entered was lost. Please try again in a minute.")
}

// serviceUnavailable answers 503: "Portal unavailable" for pages, JSON for
// API calls.
func (g *Gate) serviceUnavailable(w http.ResponseWriter, r *http.Request, retryAfter, apiCode, apiMsg, msg, next string) error {
	g.count(func(c *gateCounters) prometheus.Counter { return c.unavailable })
	w.Header().Set("Retry-After", retryAfter)
	if isAPI(r) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": apiCode, "message": apiMsg})
		return nil
	}
	return g.Portal.Pages.render(w, http.StatusServiceUnavailable, pageMessage, pageData{
		WorkspaceTitle: g.Workspace.Title,
		AuthPath:       g.AuthPath,
		Heading:        "Portal unavailable",
		Message:        msg,
		Next:           next,
	})
}

// challenge answers a request that is not signed in: API calls get 401
// JSON, page loads are sent to the sign-in page with the wanted path kept
// server-side in the sign-in flow.
func (g *Gate) challenge(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	signin := g.AuthPath + "/signin"
	if isAPI(r) {
		g.count(func(c *gateCounters) prometheus.Counter { return c.api })
		w.Header().Set("WWW-Authenticate", `Portal realm="`+g.Workspace.Name+`"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error":      "sign_in_required",
			"message":    "Sign in to " + g.Workspace.Title + " first.",
			"signin_url": signin,
		})
		return nil
	}
	returnTo := "/"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if p, ok := SafeReturnPath(r.URL.RequestURI()); ok && !g.isAuthPath(p) {
			returnTo = p
		}
	}
	if _, err := g.startFlow(w, r, store, returnTo, true); err != nil {
		return g.storageFailed(w, r, "starting sign-in flow", err)
	}
	g.count(func(c *gateCounters) prometheus.Counter { return c.redirect })
	http.Redirect(w, r, signin, http.StatusSeeOther)
	return nil
}

// count increments a gate decision counter when metrics are on.
func (g *Gate) count(which func(*gateCounters) prometheus.Counter) {
	if g.counters != nil {
		inc(which(g.counters))
	}
}

func (g *Gate) isAuthPath(p string) bool {
	return p == g.AuthPath || strings.HasPrefix(p, g.AuthPath+"/") || strings.HasPrefix(p, g.AuthPath+"?")
}

// isAPI tells API calls from page loads: an XHR marker, or no HTML in
// Accept.
func isAPI(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return true
	}
	return !strings.Contains(r.Header.Get("Accept"), "text/html")
}

// unavailable answers with "Portal unavailable" (503): the workspace is
// disabled.
func (g *Gate) unavailable(w http.ResponseWriter, r *http.Request) error {
	return g.serviceUnavailable(w, r, "60", "portal_unavailable", "The portal is not currently available.",
		"The "+g.Workspace.Title+" portal is not currently available.", "Please try again later, or contact your service provider.")
}

// cookieValue finds one cookie without parsing the others (r.Cookie
// allocates for every cookie in the header); "" if absent.
func cookieValue(r *http.Request, base string) string {
	name := cookieName(r, base)
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				return strings.Trim(part[len(name)+1:], `"`)
			}
		}
	}
	return ""
}

// stripCookies removes portalgate's cookies from the request, so the
// session id never reaches the portal (or its logs).
func stripCookies(r *http.Request) {
	lines := r.Header["Cookie"]
	kept := lines[:0]
	for _, line := range lines {
		if !strings.Contains(line, cookieSession) && !strings.Contains(line, cookieFlow) {
			kept = append(kept, line)
			continue
		}
		var b strings.Builder
		for part := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch name {
			case cookieSession, cookieFlow, hostPrefixed[cookieSession], hostPrefixed[cookieFlow]:
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(strings.TrimSpace(part))
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if len(kept) == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = kept
}

// cookieName adds the __Host- prefix on HTTPS.
func cookieName(r *http.Request, base string) string {
	if r.TLS != nil {
		return hostPrefixed[base]
	}
	return base
}

// hostPrefixed avoids building the __Host- names on every request.
var hostPrefixed = map[string]string{cookieSession: "__Host-" + cookieSession, cookieFlow: "__Host-" + cookieFlow}

func setCookie(w http.ResponseWriter, r *http.Request, base, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     cookieName(r, base),
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   int(maxAge / time.Second),
	}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// clientIP is the client address as Caddy resolved it (trusted proxies
// honoured), or the connection's peer.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) > 256 {
		ua = ua[:256]
	}
	return ua
}
