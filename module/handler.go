package module

import (
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/kdesk/portalgate/handlers"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the http.handlers.portal_auth module: it guards one
// workspace's portal. Signed-in requests go to the next handler with the
// contact's identity in X-Portal-* headers; everyone else is sent to sign
// in.
type Handler struct {
	// Workspace names the workspace (configured in the portal app) this
	// handler guards. Required.
	Workspace string `json:"workspace"`

	gate *handlers.Gate
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.portal_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision finds the workspace in the portal app.
func (h *Handler) Provision(ctx caddy.Context) error {
	if h.Workspace == "" {
		return fmt.Errorf("portal_auth: workspace is required")
	}
	appIface, err := ctx.App("portal")
	if err != nil {
		return fmt.Errorf("portal_auth: loading portal app: %w", err)
	}
	app := appIface.(*App)
	ws, ok := app.portal.Workspaces[h.Workspace]
	if !ok {
		return fmt.Errorf("portal_auth: unknown workspace %q (configure it in the portal global option)", h.Workspace)
	}
	app.useWorkspace(h.Workspace)
	h.gate = handlers.NewGate(app.portal, ws)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler: the gate answers the
// sign-in pages and everyone not signed in; a signed-in request goes on to
// next with the contact's identity in the X-Portal-* headers and the
// {http.auth.user.*} placeholders.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	contact, ok, err := h.gate.Authenticate(w, r)
	if !ok {
		return err
	}
	handlers.SetIdentity(r, contact, h.Workspace)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", contact.ID)
		repl.Set("http.auth.user.email", contact.Email)
	}
	return next.ServeHTTP(w, r)
}

// trustedProxy reports whether the request came from one of Caddy's
// trusted_proxies.
func trustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}

// forwardedHTTPS reports whether a proxy Caddy trusts (trusted_proxies)
// says the client is on HTTPS.
func forwardedHTTPS(r *http.Request) bool {
	return trustedProxy(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
