package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/text/language"

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

// Gate guards one workspace's portal: it tells signed-in requests from the
// rest, and serves the sign-in pages under the workspace's auth path.
type Gate struct {
	portal   *Portal
	ws       *Workspace
	counters *gateCounters
	routes   *http.ServeMux
	// scim is the SCIM handler, when the workspace has one.
	scim scimEndpoints
	// httpsURL is ws.https(), kept for the hot path.
	httpsURL bool
	// matcher negotiates among ws.Languages.
	matcher language.Matcher
}

// NewGate returns the gate of one workspace of p.
func NewGate(p *Portal, ws *Workspace) *Gate {
	g := &Gate{portal: p, ws: ws, counters: p.Metrics.gateCounters(ws.Name), httpsURL: ws.https()}
	if len(ws.Languages) > 0 {
		g.matcher = language.NewMatcher(ws.Languages)
	}
	g.routes = g.routeTable()
	return g
}

// Workspace is the workspace the gate guards.
func (g *Gate) Workspace() *Workspace { return g.ws }

// Authenticate has the shape of Caddy's caddyauth.Authenticator: for a
// signed-in request it returns the contact (ok), and the caller passes the
// request on with SetIdentity; every other request (the auth pages, a
// challenge, a failure) it answers itself, and ok is false. Client copies
// of the identity headers are removed either way.
func (g *Gate) Authenticate(w http.ResponseWriter, r *http.Request) (contact storage.Contact, ok bool, err error) {
	// Incoming header names are canonical, and so are these constants.
	for _, h := range identityHeaders {
		delete(r.Header, h)
	}
	ws := g.ws
	if ws.Disabled {
		if ws.isAuthPath(r.URL.Path) {
			// A sign-in attempt at a disabled portal is worth a trace;
			// page views of the portal itself are not.
			// Once per client network and window.
			ip := g.portal.ClientIP(r)
			e := storage.AuditEvent{Workspace: ws.Name, Event: EventPortalUnavailable,
				ClientIP: ip, UserAgent: userAgent(r), Reason: "workspace disabled"}
			if rt := g.portal.state.Load(); rt != nil {
				g.portal.auditRefusal(r.Context(), rt, e, ws.Name+"/"+g.portal.Limits.clientNet(ip))
			} else {
				g.portal.Audit(r.Context(), e)
			}
		}
		return contact, false, g.unavailable(w, r)
	}
	rt := g.portal.runtimeWait(r.Context())
	if rt == nil {
		return contact, false, g.storageFailed(w, r, "opening storage", errUnavailable)
	}
	if ws.isAuthPath(r.URL.Path) {
		// Some auth pages (the sign-in form) need no storage; while storage
		// is known to be down they still say so at once, rather than take
		// an email that cannot be handled.
		if g.portal.outage.Load() {
			if _, err := rt.store.Flow(r.Context(), "probe"); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return contact, false, g.storageFailed(w, r, "probing storage", err)
			}
			g.portal.storageUp()
		}
		return contact, false, g.serveAuth(w, r, rt)
	}

	_, contact, err = g.signedIn(r, rt.store)
	switch {
	case err == nil:
		g.count(func(c *gateCounters) prometheus.Counter { return c.pass })
		g.portal.storageUp()
		return contact, true, nil
	case !errors.Is(err, errSignedOut):
		return contact, false, g.storageFailed(w, r, "reading session", err)
	}
	return contact, false, g.challenge(w, r, rt)
}

// SetIdentity readies a signed-in request for the portal: the contact's
// identity in the X-Portal-* headers, and none of the gate's cookies.
func SetIdentity(r *http.Request, c storage.Contact, workspace string) {
	// The portal never sees the gate's own cookies.
	stripCookies(r)
	// One backing array for the four header values: one allocation.
	v := []string{c.ID, c.Email, c.Name, workspace}
	r.Header[HeaderContactID] = v[0:1:1]
	r.Header[HeaderContactEmail] = v[1:2:2]
	r.Header[HeaderContactName] = v[2:3:3]
	r.Header[HeaderWorkspace] = v[3:4:4]
}

// errSignedOut is any reason a request has no valid session.
var errSignedOut = errors.New("not signed in")

// signedIn finds the request's session and its still-active contact. This
// is the hot path: it reads through the store's cache and writes only when
// the session's last activity needs refreshing.
func (g *Gate) signedIn(r *http.Request, store storage.Store) (storage.Session, storage.Contact, error) {
	id := cookieValue(r, g.secure(r), cookieSession)
	if !validID(id) {
		return storage.Session{}, storage.Contact{}, errSignedOut
	}
	ctx := r.Context()
	hash := HashID(id)
	sess, err := store.Session(ctx, g.ws.Name, hash)
	if err != nil {
		return sess, storage.Contact{}, notFoundIsSignedOut(err)
	}
	if sess.Workspace != g.ws.Name {
		return sess, storage.Contact{}, errSignedOut
	}
	contact, err := store.Contact(ctx, sess.Workspace, sess.ContactID)
	if err != nil {
		return sess, contact, notFoundIsSignedOut(err)
	}
	if !contact.Active() {
		return sess, contact, errSignedOut
	}
	now := g.portal.Now()
	if now.Sub(sess.LastSeen) > touchEvery(sess.Idle) {
		// A failed refresh (storage full or down) does not stop a signed-in
		// contact; an outage is logged where requests fail, not here.
		if err := store.TouchSession(context.WithoutCancel(ctx), g.ws.Name, hash, now); err != nil &&
			!errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrUnavailable) {
			g.portal.Logger.Warn("refreshing session activity", zap.Error(err))
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

func notFoundIsSignedOut(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return errSignedOut
	}
	return err
}

// challenge answers a request that is not signed in: API calls get 401
// JSON, page loads are sent to the sign-in page with the wanted path kept
// server-side in the sign-in flow.
func (g *Gate) challenge(w http.ResponseWriter, r *http.Request, rt *runtime) error {
	signin := g.ws.AuthPath + "/signin"
	if isAPI(r) {
		g.count(func(c *gateCounters) prometheus.Counter { return c.api })
		w.Header().Set("WWW-Authenticate", `Portal realm="`+g.ws.Name+`"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error":      "sign_in_required",
			"message":    g.langFor(nil, r, g.secure(r)).T("sign_in_required_api", "Workspace", g.ws.Title),
			"signin_url": signin,
		})
		return nil
	}
	q := g.newRequest(w, r, rt)
	if err := q.keepFlow(g.wantedPath(r)); err != nil {
		return q.failed("starting sign-in flow", err)
	}
	g.count(func(c *gateCounters) prometheus.Counter { return c.redirect })
	http.Redirect(w, r, signin, http.StatusSeeOther)
	return nil
}

// wantedPath is the local path a page load wants, to return to after
// sign-in: "/" for anything but a GET or HEAD, a path SafeReturnPath
// refuses, or a page of the sign-in service itself.
func (g *Gate) wantedPath(r *http.Request) string {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return "/"
	}
	if p, ok := SafeReturnPath(r.URL.RequestURI()); ok && !g.ws.isAuthPath(p) {
		return p
	}
	return "/"
}

// count increments a gate decision counter when metrics are on.
func (g *Gate) count(which func(*gateCounters) prometheus.Counter) {
	if g.counters != nil {
		inc(which(g.counters))
	}
}

// secure reports whether the contact is on HTTPS: direct TLS, an https
// workspace url (a TLS-terminating proxy in front), or a trusted proxy's
// X-Forwarded-Proto.
func (g *Gate) secure(r *http.Request) bool {
	return r.TLS != nil || g.httpsURL || (g.portal.ForwardedHTTPS != nil && g.portal.ForwardedHTTPS(r))
}

// cookieValue finds one cookie without parsing the others (r.Cookie
// allocates for every cookie in the header); "" if absent.
func cookieValue(r *http.Request, secure bool, base string) string {
	name := cookieName(secure, base)
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
		if !strings.Contains(line, cookieSession) && !strings.Contains(line, cookieFlow) && !strings.Contains(line, cookieNotice) {
			kept = append(kept, line)
			continue
		}
		var b strings.Builder
		for part := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch name {
			case cookieSession, cookieFlow, cookieNotice, hostPrefixed[cookieSession], hostPrefixed[cookieFlow], hostPrefixed[cookieNotice]:
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
func cookieName(secure bool, base string) string {
	if secure {
		return hostPrefixed[base]
	}
	return base
}

// hostPrefixed avoids building the __Host- names on every request.
var hostPrefixed = map[string]string{cookieSession: "__Host-" + cookieSession, cookieFlow: "__Host-" + cookieFlow, cookieLang: "__Host-" + cookieLang, cookieNotice: "__Host-" + cookieNotice}

func setCookie(w http.ResponseWriter, secure bool, base, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     cookieName(secure, base),
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
		MaxAge:   int(maxAge / time.Second),
	}
	if maxAge < 0 {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}
