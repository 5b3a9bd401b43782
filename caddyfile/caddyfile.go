// Package caddyfile parses portalgate's Caddyfile syntax: the `portal`
// global option and the `portal_auth` directive, into the modules' JSON.
package caddyfile

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/kdesk/portalgate/module"
	"github.com/kdesk/portalgate/storage"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("portal", parsePortal)
	httpcaddyfile.RegisterHandlerDirective("portal_auth", parsePortalAuth)
	httpcaddyfile.RegisterDirectiveOrder("portal_auth", httpcaddyfile.After, "basic_auth")
}

// parsePortal sets up the portal app from the global option. Syntax:
//
//	portal {
//		storage_dir <dir>
//		storage <backend> {
//			...
//		}
//		secret <secret>
//		mail smtp {
//			host <host>
//			port <port>
//			username <user>
//			password <password>
//			from <address>
//			tls starttls|tls|none
//		}
//		mail log
//		templates_dir <dir>
//		outbox_workers <n>
//		limits {
//			sends_per_email <n>
//			sends_per_ip <n>
//			sends_per_workspace <n>
//			tries_per_ip <n>
//			tries_per_workspace <n>
//			window <duration>
//		}
//		workspace <name> {
//			title <title>
//			url <public base url>
//			contacts_file <file>
//			auth_path <path>
//			code_ttl <duration>
//			resend_cooldown <duration>
//			session_ttl <duration>
//			session_idle <duration>
//			link_ttl <duration>
//			link_max_ttl <duration>
//			sso <name> {
//				provider google|microsoft|oidc
//				issuer <url>
//				client_id <id>
//				client_secret <secret>
//				tenant common|organizations|<tenant id>
//				allowed_tenants <tenant id>...
//				scopes <scope>...
//				label <button label>
//			}
//			sso_directory_match
//			disabled
//		}
//	}
//
// The storage block belongs to the backend module (portal.storage.badger,
// portal.storage.redis), whose UnmarshalCaddyfile documents its syntax;
// storage_dir <dir> is short for storage badger { dir <dir> }.
func parsePortal(d *caddyfile.Dispenser, existing any) (any, error) {
	d.Next() // "portal"
	if existing != nil {
		return nil, d.Err("the portal global option may appear only once")
	}
	app := new(module.App)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	once := func(name string) error {
		if seen[name] {
			return d.Errf("%s is set twice", name)
		}
		seen[name] = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "storage_dir":
			if err := once("storage"); err != nil {
				return nil, err
			}
			var dir string
			if !d.AllArgs(&dir) {
				return nil, d.ArgErr()
			}
			// the same JSON as storage badger { dir <dir> }, without
			// importing the backend
			app.StorageRaw = caddyconfig.JSON(map[string]string{"backend": "badger", "dir": dir}, nil)
		case "storage":
			if err := once("storage"); err != nil {
				return nil, err
			}
			raw, err := parseStorage(d)
			if err != nil {
				return nil, err
			}
			app.StorageRaw = raw
		case "secret":
			if err := once(opt); err != nil {
				return nil, err
			}
			if !d.AllArgs(&app.Secret) {
				return nil, d.ArgErr()
			}
			if !strings.Contains(app.Secret, "{") && len(app.Secret) < 32 {
				return nil, d.Err("secret must be at least 32 characters; better, read it from the environment: secret {env.PORTAL_SECRET}")
			}
		case "mail":
			if err := once(opt); err != nil {
				return nil, err
			}
			mc, err := parseMail(d)
			if err != nil {
				return nil, err
			}
			app.Mail = mc
		case "templates_dir":
			if err := once(opt); err != nil {
				return nil, err
			}
			if !d.AllArgs(&app.TemplatesDir) {
				return nil, d.ArgErr()
			}
		case "outbox_workers":
			if err := once(opt); err != nil {
				return nil, err
			}
			n, err := intArg(d, 1, 64)
			if err != nil {
				return nil, err
			}
			app.OutboxWorkers = n
		case "limits":
			if err := once(opt); err != nil {
				return nil, err
			}
			l, err := parseLimits(d)
			if err != nil {
				return nil, err
			}
			app.Limits = l
		case "workspace":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			name := d.Val()
			if !storage.ValidName(name) {
				return nil, d.Errf("workspace name %q: use lowercase letters, digits, - or _, starting with a letter", name)
			}
			if _, dup := app.Workspaces[name]; dup {
				return nil, d.Errf("workspace %s is defined twice", name)
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			ws, err := parseWorkspace(d)
			if err != nil {
				return nil, err
			}
			if app.Workspaces == nil {
				app.Workspaces = map[string]*module.WorkspaceConfig{}
			}
			app.Workspaces[name] = ws
		default:
			return nil, d.Errf("unrecognized portal option %q", opt)
		}
	}
	if len(app.Workspaces) == 0 {
		return nil, d.Err("portal: at least one workspace is required")
	}
	return httpcaddyfile.App{Name: "portal", Value: caddyconfig.JSON(app, nil)}, nil
}

func intArg(d *caddyfile.Dispenser, lo, hi int) (int, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, d.Errf("%s %q: want a whole number from %d to %d", opt, s, lo, hi)
	}
	return n, nil
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, d.Errf("%s %q: want a positive duration such as 30s, 10m or 12h", opt, s)
	}
	return caddy.Duration(v), nil
}

// parseStorage hands the storage block to the backend module of that name
// (portal.storage.<name>), which parses its own syntax, as Caddy's global
// storage option does.
func parseStorage(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	var available []string
	for _, m := range caddy.GetModules("portal.storage") {
		available = append(available, m.ID.Name())
	}
	if !slices.Contains(available, name) {
		return nil, d.Errf("unknown storage backend %q (available: %s)", name, strings.Join(available, ", "))
	}
	mod, err := caddyfile.UnmarshalModule(d, "portal.storage."+name)
	if err != nil {
		return nil, err
	}
	var warnings []caddyconfig.Warning
	raw := caddyconfig.JSONModuleObject(mod, "backend", name, &warnings)
	if len(warnings) > 0 {
		return nil, d.Errf("storage %s: %s", name, warnings[0].Message)
	}
	return raw, nil
}

func parseMail(d *caddyfile.Dispenser) (*module.MailConfig, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	mc := &module.MailConfig{Mailer: d.Val()}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	switch mc.Mailer {
	case "log":
		if d.NextBlock(d.Nesting()) {
			return nil, d.Err("mail log takes no options")
		}
		return mc, nil
	case "smtp":
	default:
		return nil, d.Errf("unknown mailer %q (want smtp or log)", mc.Mailer)
	}
	start := d.Line()
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("mail smtp: %s is set twice", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "host":
			if !d.AllArgs(&mc.Host) {
				return nil, d.ArgErr()
			}
		case "port":
			mc.Port, err = intArg(d, 1, 65535)
		case "username":
			if !d.AllArgs(&mc.Username) {
				return nil, d.ArgErr()
			}
		case "password":
			if !d.AllArgs(&mc.Password) {
				return nil, d.ArgErr()
			}
		case "from":
			if !d.AllArgs(&mc.From) {
				return nil, d.ArgErr()
			}
		case "tls":
			if !d.AllArgs(&mc.TLS) {
				return nil, d.ArgErr()
			}
			if mc.TLS != "starttls" && mc.TLS != "tls" && mc.TLS != "none" {
				return nil, d.Errf("mail smtp: tls %q: want starttls, tls or none", mc.TLS)
			}
		default:
			return nil, d.Errf("unrecognized mail smtp option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	if mc.Host == "" {
		return nil, d.Errf("mail smtp (line %d): host is required", start)
	}
	if mc.From == "" {
		return nil, d.Errf("mail smtp (line %d): from is required", start)
	}
	return mc, nil
}

func parseLimits(d *caddyfile.Dispenser) (*module.LimitsConfig, error) {
	l := new(module.LimitsConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if seen[d.Val()] {
			return nil, d.Errf("limits: %s is set twice", d.Val())
		}
		seen[d.Val()] = true
		var dst *int
		switch d.Val() {
		case "sends_per_email":
			dst = &l.SendsPerEmail
		case "sends_per_ip":
			dst = &l.SendsPerIP
		case "sends_per_workspace":
			dst = &l.SendsPerWorkspace
		case "tries_per_ip":
			dst = &l.TriesPerIP
		case "tries_per_workspace":
			dst = &l.TriesPerWorkspace
		case "window":
			v, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			l.Window = v
			continue
		default:
			return nil, d.Errf("unrecognized limits option %q", d.Val())
		}
		n, err := intArg(d, 1, 1_000_000)
		if err != nil {
			return nil, err
		}
		*dst = n
	}
	return l, nil
}

func parseWorkspace(d *caddyfile.Dispenser) (*module.WorkspaceConfig, error) {
	ws := new(module.WorkspaceConfig)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("workspace option %s is set twice", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "title":
			if !d.AllArgs(&ws.Title) {
				return nil, d.ArgErr()
			}
		case "url":
			if !d.AllArgs(&ws.URL) {
				return nil, d.ArgErr()
			}
		case "contacts_file":
			// read by Provision only: caddy adapt reads no files,
			// caddy validate reports a bad one
			if !d.AllArgs(&ws.ContactsFile) {
				return nil, d.ArgErr()
			}
		case "auth_path":
			if !d.AllArgs(&ws.AuthPath) {
				return nil, d.ArgErr()
			}
			if !strings.HasPrefix(ws.AuthPath, "/") || strings.HasSuffix(ws.AuthPath, "/") {
				return nil, d.Errf("auth_path %q: must be a path like /_portal", ws.AuthPath)
			}
		case "code_ttl":
			ws.CodeTTL, err = durationArg(d)
		case "resend_cooldown":
			ws.ResendCooldown, err = durationArg(d)
		case "session_ttl":
			ws.SessionTTL, err = durationArg(d)
		case "session_idle":
			ws.SessionIdle, err = durationArg(d)
		case "link_ttl":
			ws.LinkTTL, err = durationArg(d)
		case "link_max_ttl":
			ws.LinkMaxTTL, err = durationArg(d)
		case "sso_directory_match":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			ws.SSODirectoryMatch = true
		case "disabled":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			ws.Disabled = true
		case "sso":
			delete(seen, opt) // several providers
			sc, err := parseSSO(d)
			if err != nil {
				return nil, err
			}
			for _, o := range ws.SSO {
				if o.Name == sc.Name {
					return nil, d.Errf("sso %s is defined twice", sc.Name)
				}
			}
			ws.SSO = append(ws.SSO, sc)
		default:
			return nil, d.Errf("unrecognized workspace option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return ws, nil
}

func parseSSO(d *caddyfile.Dispenser) (*module.SSOConfig, error) {
	sc := new(module.SSOConfig)
	if !d.AllArgs(&sc.Name) {
		return nil, d.ArgErr()
	}
	if !storage.ValidName(sc.Name) {
		return nil, d.Errf("sso name %q: use lowercase letters, digits, - or _, starting with a letter", sc.Name)
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("sso %s: %s is set twice", sc.Name, opt)
		}
		seen[opt] = true
		var ok bool
		switch opt {
		case "provider":
			ok = d.AllArgs(&sc.Provider)
			if ok && sc.Provider != "google" && sc.Provider != "microsoft" && sc.Provider != "oidc" {
				return nil, d.Errf("sso %s: provider %q: want google, microsoft or oidc", sc.Name, sc.Provider)
			}
		case "issuer":
			ok = d.AllArgs(&sc.Issuer)
		case "client_id":
			ok = d.AllArgs(&sc.ClientID)
		case "client_secret":
			ok = d.AllArgs(&sc.ClientSecret)
		case "tenant":
			ok = d.AllArgs(&sc.Tenant)
		case "label":
			ok = d.AllArgs(&sc.Label)
		case "allowed_tenants":
			sc.AllowedTenants = d.RemainingArgs()
			ok = len(sc.AllowedTenants) > 0
		case "scopes":
			sc.Scopes = d.RemainingArgs()
			ok = len(sc.Scopes) > 0
		default:
			return nil, d.Errf("unrecognized sso option %q", opt)
		}
		if !ok {
			return nil, d.ArgErr()
		}
	}
	if sc.Provider == "" && sc.Name != "google" && sc.Name != "microsoft" {
		return nil, d.Errf("sso %s: provider is required (google, microsoft or oidc)", sc.Name)
	}
	if sc.ClientID == "" {
		return nil, d.Errf("sso %s: client_id is required", sc.Name)
	}
	return sc, nil
}

// parsePortalAuth sets up the handler. Syntax:
//
//	portal_auth <workspace>
func parsePortalAuth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next() // directive name
	var ws string
	if !h.AllArgs(&ws) {
		return nil, h.ArgErr()
	}
	if h.NextBlock(h.Nesting()) {
		return nil, h.Err("portal_auth takes no block")
	}
	opt, _ := h.Option("portal").(httpcaddyfile.App)
	if opt.Value == nil {
		return nil, h.Errf("portal_auth %s: no portal global option configures workspaces", ws)
	}
	var app module.App
	if err := json.Unmarshal(opt.Value, &app); err != nil {
		return nil, h.Err(err.Error())
	}
	if _, ok := app.Workspaces[ws]; !ok {
		return nil, h.Errf("portal_auth: unknown workspace %q (configure it in the portal global option)", ws)
	}
	return &module.Handler{Workspace: ws}, nil
}
