package handlers

import (
	"context"
	"net/http"
	"path"
	"strings"
)

// routeTable is every page under the workspace's auth path, in one table.
// A path's method-less entry answers the methods it does not take with the
// HTML 405 page; anything else under the auth path gets the HTML 404 page.
func (g *Gate) routeTable() *http.ServeMux {
	ap := g.ws.AuthPath
	mux := http.NewServeMux()
	handle := func(pattern string, fn func(*request) error) {
		mux.HandleFunc(pattern, func(_ http.ResponseWriter, r *http.Request) {
			q := r.Context().Value(requestKey{}).(*request)
			q.r = r
			q.err = fn(q)
		})
	}
	for _, p := range []string{ap, ap + "/{$}", ap + "/signin"} {
		handle("GET "+p, (*request).signInPage)
		handle("POST "+p, (*request).submitEmail)
		handle(p, (*request).methodNotAllowed)
	}
	handle("GET "+ap+"/code", (*request).codePage)
	handle("POST "+ap+"/code", (*request).submitCode)
	handle(ap+"/code", (*request).methodNotAllowed)
	handle("POST "+ap+"/resend", (*request).resend)
	handle(ap+"/resend", (*request).methodNotAllowed)
	handle("GET "+ap+"/notice", (*request).noticePage)
	handle(ap+"/notice", (*request).methodNotAllowed)
	handle("GET "+ap+"/signout", (*request).signOutPage)
	handle("POST "+ap+"/signout", (*request).signOut)
	handle(ap+"/signout", (*request).methodNotAllowed)
	handle("GET "+ap+"/sso/{name}", (*request).ssoStart)
	handle("GET "+ap+"/sso/{name}/callback", (*request).ssoCallback)
	handle(ap+"/sso/{name}", (*request).ssoMethodNotAllowed)
	handle(ap+"/sso/{name}/callback", (*request).ssoMethodNotAllowed)
	handle(ap+"/sso/", (*request).unknownSSO)
	handle("GET "+ap+"/link/{token...}", (*request).openLink)
	handle(ap+"/link/{token...}", (*request).methodNotAllowed)
	if g.ws.ForwardAuth {
		handle(ap+"/auth", (*request).forwardAuth)
	}
	if g.ws.SCIM != nil {
		handle(ap+"/scim/v2/", (*request).scim)
	}
	handle(ap+"/", (*request).notFound)
	return mux
}

// requestKey carries the *request through the ServeMux.
type requestKey struct{}

// serveAuth answers a request under the auth path.
func (g *Gate) serveAuth(w http.ResponseWriter, r *http.Request, rt *runtime) error {
	q := g.newRequest(w, r, rt)
	if q.secure {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
	}
	if p := r.URL.Path; !isClean(p) {
		// ServeMux would redirect to the cleaned path; no page of ours has
		// dot segments or empty ones, and a link token never does.
		if rest, ok := strings.CutPrefix(p, g.ws.AuthPath+"/link/"); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			r.SetPathValue("token", rest)
			return q.openLink()
		}
		return q.notFound()
	}
	g.routes.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestKey{}, q)))
	return q.err
}

// isClean reports whether ServeMux would take p as it is: no dot segments
// and no empty ones (a trailing slash is fine).
func isClean(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

func (q *request) notFound() error {
	return q.message(http.StatusNotFound, "not_found_heading", "not_found", "", q.ws.AuthPath+"/signin", "go_to_signin")
}

func (q *request) methodNotAllowed() error {
	q.w.Header().Set("Allow", "GET, HEAD, POST")
	return q.message(http.StatusMethodNotAllowed, "method_heading", "method", "", q.ws.AuthPath+"/signin", "go_to_signin")
}

// ssoMethodNotAllowed keeps the answer for an unknown provider the same
// whatever the method.
func (q *request) ssoMethodNotAllowed() error {
	if q.ssoProvider() == nil {
		return q.unknownSSO()
	}
	return q.methodNotAllowed()
}
