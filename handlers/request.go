package handlers

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdesk/portalgate/storage"
)

// request is one auth-page request: everything a route needs, loaded once.
// Its methods write the shared answers (failure pages, cookies, audit).
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	g    *Gate
	ws   *Workspace
	rt   *runtime
	keys *workspaceKeys
	// store is rt.store.
	store storage.Store
	ip    string
	// net is the client network the per-client limits count by.
	net string
	ua  string
	// secure is set when the contact is on HTTPS.
	secure bool
	// tr speaks the request's language (langFor).
	tr *tr
	// err is what the route returned, for ServeHTTP to pass on.
	err error
}

func (g *Gate) newRequest(w http.ResponseWriter, r *http.Request, rt *runtime) *request {
	ip := g.portal.ClientIP(r)
	secure := g.secure(r)
	return &request{w: w, r: r, g: g, ws: g.ws, rt: rt, keys: rt.keys[g.ws.Name], store: rt.store,
		ip: ip, net: g.portal.Limits.clientNet(ip), ua: userAgent(r), secure: secure, tr: g.langFor(w, r, secure)}
}

// t is a message of the request's language (tr.T).
func (q *request) t(id string, pairs ...any) string { return q.tr.T(id, pairs...) }

// page is the data every page starts from.
func (q *request) page(heading string) pageData {
	return pageData{tr: q.tr, Brand: q.ws.Brand, WorkspaceTitle: q.ws.Title, AuthPath: q.ws.AuthPath, Heading: heading}
}

func (q *request) now() time.Time { return q.g.portal.Now() }

// event is an audit event of this request's workspace and client.
func (q *request) event(name string) storage.AuditEvent {
	return storage.AuditEvent{Workspace: q.ws.Name, Event: name, ClientIP: q.ip, UserAgent: q.ua}
}

// audit records e.
func (q *request) audit(e storage.AuditEvent) {
	q.g.portal.audit(q.r.Context(), q.rt, e)
}

// message renders the message page: heading, msg, next and actionLabel
// are catalog keys (next and actionLabel may be ""), msg with
// "Workspace" set to the workspace's title.
func (q *request) message(status int, heading, msg, next, actionURL, actionLabel string) error {
	d := q.page(q.t(heading))
	d.Message = q.t(msg, "Workspace", q.ws.Title)
	if next != "" {
		d.Next = q.t(next)
	}
	d.ActionURL = actionURL
	if actionLabel != "" {
		d.ActionLabel = q.t(actionLabel)
	}
	return q.ws.pages(q.g.portal).render(q.w, status, pageMessage, d)
}

// redirect answers 303 to a page under the auth path.
func (q *request) redirect(sub string) error {
	http.Redirect(q.w, q.r, q.ws.AuthPath+sub, http.StatusSeeOther)
	return nil
}

// failed fails closed when storage cannot answer.
func (q *request) failed(what string, err error) error {
	return q.g.storageFailed(q.w, q.r, what, err)
}

// setCookie sets one of the gate's cookies.
func (q *request) setCookie(base, value string, maxAge time.Duration) {
	setCookie(q.w, q.secure, base, value, maxAge)
}

// cookie is the value of one of the gate's cookies, "" if absent.
func (q *request) cookie(base string) string {
	return cookieValue(q.r, q.secure, base)
}

// storageFailed fails closed when storage cannot answer: the page (or a
// JSON 503 for API calls) says to try again shortly, and the outage is
// logged once, not once per request.
func (g *Gate) storageFailed(w http.ResponseWriter, r *http.Request, what string, err error) error {
	g.portal.storageDown(what, err)
	return g.serviceUnavailable(w, r, "30", "temporarily_unavailable", "unavailable_temporarily")
}

// unavailable answers with "Portal unavailable" (503): the workspace is
// disabled.
func (g *Gate) unavailable(w http.ResponseWriter, r *http.Request) error {
	return g.serviceUnavailable(w, r, "60", "portal_unavailable", "unavailable_disabled")
}

// serviceUnavailable answers 503: "Portal unavailable" for pages, JSON for
// API calls. msg is the catalog key of the page's message; msg+"_next" and
// msg+"_api" are what to do next and the API answer's message.
func (g *Gate) serviceUnavailable(w http.ResponseWriter, r *http.Request, retryAfter, apiCode, msg string) error {
	g.count(func(c *gateCounters) prometheus.Counter { return c.unavailable })
	w.Header().Set("Retry-After", retryAfter)
	t := g.langFor(nil, r, g.secure(r))
	if isAPI(r) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": apiCode, "message": t.T(msg + "_api")})
		return nil
	}
	return g.ws.pages(g.portal).render(w, http.StatusServiceUnavailable, pageMessage, pageData{
		tr:             t,
		Brand:          g.ws.Brand,
		WorkspaceTitle: g.ws.Title,
		AuthPath:       g.ws.AuthPath,
		Heading:        t.T("unavailable_heading"),
		Message:        t.T(msg, "Workspace", g.ws.Title),
		Next:           t.T(msg + "_next"),
	})
}

// isAPI tells API calls from page loads: an XHR marker, or no HTML in
// Accept.
func isAPI(r *http.Request) bool {
	if r.Header.Get("X-Requested-With") != "" {
		return true
	}
	return !strings.Contains(r.Header.Get("Accept"), "text/html")
}

// writeJSON answers an API call.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// maxUserAgent bounds the user agent kept with sessions and audit events.
const maxUserAgent = 128

// userAgent is the request's user agent, cut to maxUserAgent bytes on a
// character boundary.
func userAgent(r *http.Request) string {
	ua := r.UserAgent()
	if len(ua) <= maxUserAgent {
		return ua
	}
	cut := maxUserAgent
	for cut > 0 && !utf8.RuneStart(ua[cut]) {
		cut--
	}
	return ua[:cut]
}

// browserName is "Browser/OS" for a user agent, like "Firefox/Windows",
// for the code email to say where the code was asked for; "" when it
// cannot tell. The names are products', not sentences.
func browserName(ua string) string {
	var b, os string
	switch {
	case strings.Contains(ua, "Edg/"):
		b = "Edge"
	case strings.Contains(ua, "OPR/"):
		b = "Opera"
	case strings.Contains(ua, "Firefox/"):
		b = "Firefox"
	case strings.Contains(ua, "Chrome/") || strings.Contains(ua, "Chromium/") || strings.Contains(ua, "CriOS/"):
		b = "Chrome"
	case strings.Contains(ua, "Safari/"):
		b = "Safari"
	default:
		return ""
	}
	switch {
	case strings.Contains(ua, "Android"):
		os = "Android"
	case strings.Contains(ua, "iPhone") || strings.Contains(ua, "iPad"):
		os = "iOS"
	case strings.Contains(ua, "Windows"):
		os = "Windows"
	case strings.Contains(ua, "Mac OS X") || strings.Contains(ua, "Macintosh"):
		os = "macOS"
	case strings.Contains(ua, "CrOS"):
		os = "ChromeOS"
	case strings.Contains(ua, "Linux"):
		os = "Linux"
	default:
		return ""
	}
	return b + "/" + os
}
