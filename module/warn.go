package module

import (
	"net"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The warnings at start: configurations that load and work, but not the
// way the operator most likely meant. They are logged by the app's Start,
// after every app of the config is provisioned, so that they see the
// whole config whether it came from a Caddyfile or JSON: each portal_auth
// handler tells the app which workspace it serves (useWorkspace, from its
// Provision), and the http app's routes tell which hosts are served.

// useWorkspace records that a portal_auth handler of this config serves
// the workspace.
func (a *App) useWorkspace(name string) {
	a.usedMu.Lock()
	defer a.usedMu.Unlock()
	if a.used == nil {
		a.used = map[string]bool{}
	}
	a.used[name] = true
}

// warnAtStart logs what this config accepts but probably should not.
func (a *App) warnAtStart() {
	if a.Mail != nil && a.Mail.Mailer == "log" {
		a.logger.Warn("mail log: sign-in codes are written to this log and emailed to no one; use mail smtp for anything but a local run")
	}
	names := make([]string, 0, len(a.Workspaces))
	for name := range a.Workspaces {
		names = append(names, name)
	}
	sort.Strings(names)
	a.usedMu.Lock()
	used := a.used
	a.usedMu.Unlock()
	hosts, anyHost := a.servedHosts()
	for _, name := range names {
		if !used[name] {
			a.logger.Warn("workspace is not used by any portal_auth of this config: its sign-in pages are served nowhere",
				zap.String("workspace", name))
		}
		ws := a.portal.Workspaces[name]
		if ws == nil || ws.URL == nil || anyHost {
			continue
		}
		if host := ws.URL.Hostname(); !hostServed(host, hosts) {
			a.logger.Warn("workspace url names a host that no site of this config serves: emailed links and SSO callbacks would go elsewhere",
				zap.String("workspace", name), zap.String("url", ws.URL.String()), zap.String("host", host))
		}
	}
}

// servedHosts lists the hosts of the http app's host matchers; anyHost
// is true when some route matches any host (a site like :8080), or when
// the http app cannot be read.
func (a *App) servedHosts() (hosts []string, anyHost bool) {
	app, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return nil, false
	}
	h, ok := app.(*caddyhttp.App)
	if !ok {
		return nil, true
	}
	for _, srv := range h.Servers {
		for _, r := range srv.Routes {
			if len(r.MatcherSets) == 0 {
				return nil, true
			}
			for _, set := range r.MatcherSets {
				var found bool
				for _, m := range set {
					switch hm := m.(type) {
					case caddyhttp.MatchHost:
						hosts, found = append(hosts, hm...), true
					case *caddyhttp.MatchHost:
						hosts, found = append(hosts, *hm...), true
					}
				}
				if !found {
					return nil, true
				}
			}
		}
	}
	return hosts, false
}

// hostServed reports whether a host matcher value covers host: equal
// ignoring case, a *. wildcard for one label, or a placeholder (which
// only the request can tell).
func hostServed(host string, hosts []string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, h := range hosts {
		h = strings.ToLower(h)
		if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil && ip.Equal(net.ParseIP(host)) {
			return true
		}
		switch {
		case h == host, strings.Contains(h, "{"):
			return true
		case strings.HasPrefix(h, "*."):
			if i := strings.IndexByte(host, '.'); i > 0 && host[i:] == h[1:] {
				return true
			}
		}
	}
	return false
}
