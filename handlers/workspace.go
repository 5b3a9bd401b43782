package handlers

import (
	"net/url"
	"strings"
	"time"

	"golang.org/x/text/language"
)

// Workspace is one portal's resolved configuration: every field is filled
// in (module/ applies the defaults).
type Workspace struct {
	Name  string
	Title string
	// URL is the public base used in emailed links.
	URL *url.URL
	// AuthPath is the reserved prefix of the sign-in pages, like "/_portal".
	AuthPath string
	// CodeTTL is how long an emailed code works.
	CodeTTL time.Duration
	// ResendCooldown is the wait between two code emails to one address.
	ResendCooldown time.Duration
	// SessionTTL is the absolute lifetime of a session.
	SessionTTL time.Duration
	// SessionIdle ends a session after this long without a request.
	SessionIdle time.Duration
	// LinkTTL and LinkMaxTTL are the default and longest lifetimes of a
	// personalized link.
	LinkTTL, LinkMaxTTL time.Duration
	// Disabled shows "Portal unavailable" to everyone.
	Disabled bool
	// SSODirectoryMatch limits SSO to contacts synced from a directory.
	SSODirectoryMatch bool
	// SSO are the single sign-on providers, in the order of their buttons.
	SSO []*SSOProvider
	// ForwardAuth serves {AuthPath}/auth for a proxy in front of the
	// portal (nginx auth_request, Traefik forwardAuth, Caddy forward_auth).
	ForwardAuth bool
	// Webhooks receive the workspace's events.
	Webhooks []*Webhook
	// Languages are the languages of the pages and emails, among the
	// shipped catalogs (Languages); the first is the default. Empty means
	// English only.
	Languages []language.Tag
	// Brand is the workspace's look; nil: the plain default.
	Brand *Brand
	// Pages, when set, replace the portal's templates for this workspace.
	Pages *Pages
	// MailFrom is the sender of the workspace's email; "" for the mail
	// sender's own.
	MailFrom string
	// SCIM, when set, serves {AuthPath}/scim/v2/ for the customer's
	// directory (scim.go); nil: those paths do not exist.
	SCIM *SCIM
}

// Brand is a workspace's look, every field optional.
type Brand struct {
	// LogoURL is the logo: a data: URL (a file read at provision) or an
	// http(s) URL.
	LogoURL string
	// Accent is the buttons' and links' CSS hex color.
	Accent string
	// SupportURL and SupportEmail are where "ask your service provider"
	// links to (the URL first).
	SupportURL, SupportEmail string
	// Footer is a line at the foot of every page and email.
	Footer string
}

// SupportLink is where "your service provider" links to: the support URL,
// or a mailto: link to the support email; "" for none.
func (b *Brand) SupportLink() string {
	switch {
	case b == nil:
		return ""
	case b.SupportURL != "":
		return b.SupportURL
	case b.SupportEmail != "":
		return "mailto:" + b.SupportEmail
	}
	return ""
}

// pages are the workspace's templates: its own, or the portal's.
func (ws *Workspace) pages(p *Portal) *Pages {
	if ws.Pages != nil {
		return ws.Pages
	}
	return p.Pages
}

// https reports whether the workspace's public URL is HTTPS: then its
// contacts are on HTTPS even where a proxy in front terminates TLS.
func (ws *Workspace) https() bool { return ws.URL != nil && ws.URL.Scheme == "https" }

// isAuthPath reports whether p is under the reserved auth prefix.
func (ws *Workspace) isAuthPath(p string) bool {
	return p == ws.AuthPath || strings.HasPrefix(p, ws.AuthPath+"/") || strings.HasPrefix(p, ws.AuthPath+"?")
}

// authURL is the workspace's public URL for a page under the auth path,
// like https://support.acme.example/_portal/link/…: the public URL's base
// path joined with the auth prefix and sub.
func (ws *Workspace) authURL(sub string) string {
	u := *ws.URL
	u.Path = strings.TrimRight(ws.URL.Path, "/") + ws.AuthPath + sub
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String()
}

// defaultLanguage is the workspace's first language.
func (ws *Workspace) defaultLanguage() language.Tag {
	if len(ws.Languages) == 0 {
		return DefaultLanguage
	}
	return ws.Languages[0]
}

// ssoProvider is the provider with that name, or nil.
func (ws *Workspace) ssoProvider(name string) *SSOProvider {
	for _, p := range ws.SSO {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// ssoButtons are the sign-in page's provider buttons.
func (ws *Workspace) ssoButtons() []ssoButton {
	out := make([]ssoButton, len(ws.SSO))
	for i, p := range ws.SSO {
		out[i] = ssoButton{Name: p.Name, Label: p.Label}
	}
	return out
}
