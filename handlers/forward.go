package handlers

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"
)

// Forward auth: a proxy in front of the portal (nginx auth_request,
// Traefik forwardAuth, Caddy forward_auth) asks {auth_path}/auth about
// each request before it passes it on. The answer is the gate's own
// decision: 200 with the identity headers for a valid session, and
// otherwise the challenge — 401 for nginx (its error_page turns it into
// the redirect to the sign-in page), a 303 to the sign-in page for
// Traefik and Caddy — with the flow cookie that keeps the wanted path.
// The sign-in pages themselves are served under the auth path of the
// portal's own host, which the proxy routes here, so cookies stay
// host-only.

// Headers the proxies describe the original request with.
const (
	headerOriginalURI     = "X-Original-Uri" // nginx
	headerOriginalMethod  = "X-Original-Method"
	headerForwardedURI    = "X-Forwarded-Uri" // Traefik, Caddy
	headerForwardedMethod = "X-Forwarded-Method"
)

// forwardAuth answers an auth subrequest. Only a proxy the server trusts
// may describe the original request; anyone else is refused, whatever
// headers they send.
func (q *request) forwardAuth() error {
	p := q.g.portal
	if p.TrustedProxy == nil || !p.TrustedProxy(q.r) {
		q.w.Header().Set("Cache-Control", "no-store")
		http.Error(q.w, "forward auth answers trusted proxies only", http.StatusForbidden)
		return nil
	}
	h := q.r.Header
	nginx := h.Get(headerOriginalURI) != ""
	uri, method := h.Get(headerOriginalURI), h.Get(headerOriginalMethod)
	if !nginx {
		uri, method = h.Get(headerForwardedURI), h.Get(headerForwardedMethod)
	}
	q.w.Header().Set("Cache-Control", "no-store")
	if _, c, err := q.g.signedIn(q.r, q.store); err == nil {
		// Whatever the original path says: a valid session is the only way
		// to a 200, so no trick in the URI can open the portal.
		q.g.count(func(c *gateCounters) prometheus.Counter { return c.pass })
		hdr := q.w.Header()
		hdr.Set(HeaderContactID, c.ID)
		hdr.Set(HeaderContactEmail, c.Email)
		hdr.Set(HeaderContactName, c.Name)
		hdr.Set(HeaderWorkspace, q.ws.Name)
		q.w.WriteHeader(http.StatusOK)
		return nil
	} else if !errors.Is(err, errSignedOut) {
		return q.failed("reading session", err)
	}

	// The original request, as the gate would see it directly.
	orig := &http.Request{Method: method, Header: h, URL: &url.URL{Path: "/"}}
	if orig.Method == "" {
		orig.Method = http.MethodGet
	}
	if u, err := url.ParseRequestURI(uri); err == nil {
		orig.URL = u
	}
	if isAPI(q.r) {
		q.g.count(func(c *gateCounters) prometheus.Counter { return c.api })
		q.w.Header().Set("WWW-Authenticate", `Portal realm="`+q.ws.Name+`"`)
		writeJSON(q.w, http.StatusUnauthorized, map[string]string{
			"error":      "sign_in_required",
			"message":    q.t("sign_in_required_api", "Workspace", q.ws.Title),
			"signin_url": q.ws.AuthPath + "/signin",
		})
		return nil
	}
	if err := q.keepFlow(q.g.wantedPath(orig)); err != nil {
		return q.failed("starting sign-in flow", err)
	}
	q.g.count(func(c *gateCounters) prometheus.Counter { return c.redirect })
	if nginx {
		q.w.WriteHeader(http.StatusUnauthorized)
		return nil
	}
	return q.redirect("/signin")
}
