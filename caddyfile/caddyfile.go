// Package caddyfile parses portalgate's Caddyfile syntax: the `portal`
// global option and the `portal_auth` directive, into the modules' JSON.
package caddyfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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
//			connections <n>
//			idle_timeout <duration>
//		}
//		mail log
//		templates_dir <dir>
//		outbox_workers <n>
//		log_emails masked|full
//		limits {
//			sends_per_email <n>
//			sends_per_ip <n>
//			sends_per_workspace <n>
//			requests_per_ip <n>
//			tries_per_ip <n>
//			tries_per_contact <n>
//			ipv4_prefix <bits>
//			ipv6_prefix <bits>
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
//				public_client
//				trust_unverified_email
//				tenant common|organizations|<tenant id>
//				allowed_tenants <tenant id>...
//				scopes <scope>...
//				label <button label>
//			}
//			sso_directory_match
//			forward_auth
//			webhook <url> {
//				secret <whsec_…>
//				events <event>...
//			}
//			scim {
//				token <bearer token>
//				groups <group name>...
//				requests_per_minute <n>
//			}
//			languages <lang>...
//			brand {
//				logo <file or url>
//				accent <#hex color>
//				support_url <url>
//				support_email <email>
//				footer <text>
//			}
//			templates_dir <dir>
//			mail_from <"Name <address>">
//			disabled
//		}
//	}
//
// The storage block belongs to the backend module (portal.storage.badger,
// portal.storage.redis), whose UnmarshalCaddyfile documents its syntax;
// storage_dir <dir> is short for storage badger { dir <dir> }.
func parsePortal(d *caddyfile.Dispenser, existing any) (any, error) {
	d.Next() // "portal"
	portalAt := block{"mail": d.Token()}
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
			var oe *module.OptionError
			if err := module.CheckSecret(app.Secret, nil); errors.As(err, &oe) {
				return nil, d.Errf("secret %s; better, read it from the environment: secret {env.PORTAL_SECRET}", oe.Msg)
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
		case "log_emails":
			if err := once(opt); err != nil {
				return nil, err
			}
			if !d.AllArgs(&app.LogEmails) {
				return nil, d.ArgErr()
			}
			if err := module.CheckLogEmails(app.LogEmails); err != nil {
				return nil, d.Errf("portal: %v", err)
			}
		case "outbox_workers":
			if err := once(opt); err != nil {
				return nil, err
			}
			n, err := intArg(d)
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
			if err := module.CheckName("workspace", name); err != nil {
				return nil, d.WrapErr(err)
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
			return nil, storage.UnknownOption(d, "portal", portalOptions)
		}
	}
	if err := app.Validate(); err != nil {
		return nil, d.WrapErr(err)
	}
	if app.Mail == nil {
		// reported at the portal line: the block it is missing from
		return nil, portalAt.errAt(d, app.Mail.Check(nil))
	}
	return httpcaddyfile.App{Name: "portal", Value: caddyconfig.JSON(app, nil)}, nil
}

// The subdirectives of each block, for suggestions when one is misspelled.
var (
	portalOptions    = []string{"storage_dir", "storage", "secret", "mail", "templates_dir", "outbox_workers", "log_emails", "limits", "workspace"}
	mailSMTPOptions  = []string{"host", "port", "username", "password", "from", "tls", "connections", "idle_timeout"}
	limitsOptions    = []string{"sends_per_email", "sends_per_ip", "sends_per_workspace", "requests_per_ip", "tries_per_ip", "tries_per_contact", "ipv4_prefix", "ipv6_prefix", "window"}
	workspaceOptions = []string{
		"title", "url", "contacts_file", "auth_path", "code_ttl", "resend_cooldown", "session_ttl",
		"session_idle", "link_ttl", "link_max_ttl", "sso", "sso_directory_match", "forward_auth", "webhook", "disabled", "scim",
		"languages", "brand", "templates_dir", "mail_from",
	}
	brandOptions   = []string{"logo", "accent", "support_url", "support_email", "footer"}
	webhookOptions = []string{"secret", "events"}
	scimOptions    = []string{"token", "groups", "requests_per_minute"}
	ssoOptions     = []string{"provider", "issuer", "client_id", "client_secret", "public_client", "trust_unverified_email", "tenant", "allowed_tenants", "scopes", "label"}
)

// intArg reads the single argument of a whole-number option; the module
// knows each one's range.
func intArg(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return 0, d.ArgErr()
	}
	n, err := module.ParseWholeNumber(opt, s)
	if err != nil {
		return 0, d.WrapErr(err)
	}
	return n, nil
}

// block remembers where each subdirective of a block is written, to report
// a module check's error at the line of the option it names.
type block map[string]caddyfile.Token

// errAt wraps err, from a module check run at the end of the block, with
// the position of the option it names; an option the block does not write
// (a missing one) is reported at the current token, the block's end.
func (b block) errAt(d *caddyfile.Dispenser, err error) error {
	if err == nil {
		return nil
	}
	var oe *module.OptionError
	if errors.As(err, &oe) {
		if tok, ok := b[oe.Option]; ok {
			at := caddyfile.NewDispenser([]caddyfile.Token{tok})
			at.Next()
			return at.WrapErr(err)
		}
	}
	return d.WrapErr(err)
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
		msg := fmt.Sprintf("unknown storage backend %q (available: %s)", name, strings.Join(available, ", "))
		if s := storage.Suggest(name, available); s != "" {
			msg += "; did you mean " + s + "?"
		}
		return nil, d.Err(msg)
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

// parseMail reads the mail option. The mailer chooses the syntax of the
// block, so an unknown one is an error here; the module's check supplies
// its message.
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
		return nil, d.WrapErr(mc.Check(nil))
	}
	start := d.Line()
	at := block{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if _, dup := at[opt]; dup {
			return nil, d.Errf("mail smtp: %s is set twice", opt)
		}
		at[opt] = d.Token()
		var ok bool
		switch opt {
		case "host":
			ok = d.AllArgs(&mc.Host)
		case "port":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			mc.Port, ok = n, true
		case "username":
			ok = d.AllArgs(&mc.Username)
		case "password":
			ok = d.AllArgs(&mc.Password)
		case "from":
			ok = d.AllArgs(&mc.From)
		case "tls":
			ok = d.AllArgs(&mc.TLS)
		case "connections":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			mc.Connections, ok = n, true
		case "idle_timeout":
			v, err := storage.DurationArg(d)
			if err != nil {
				return nil, err
			}
			mc.IdleTimeout, ok = v, true
		default:
			return nil, storage.UnknownOption(d, "mail smtp", mailSMTPOptions)
		}
		if !ok {
			return nil, d.ArgErr()
		}
	}
	if err := mc.Check(nil); err != nil {
		// a missing option: name the line of the block
		var oe *module.OptionError
		if errors.As(err, &oe) {
			if _, written := at[oe.Option]; !written {
				return nil, d.Errf("%s (line %d): %s %s", oe.Block, start, oe.Option, oe.Msg)
			}
		}
		return nil, at.errAt(d, err)
	}
	return mc, nil
}

func parseLimits(d *caddyfile.Dispenser) (*module.LimitsConfig, error) {
	l := new(module.LimitsConfig)
	at := block{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if _, dup := at[opt]; dup {
			return nil, d.Errf("limits: %s is set twice", opt)
		}
		at[opt] = d.Token()
		var dst *int
		switch opt {
		case "sends_per_email":
			dst = &l.SendsPerEmail
		case "sends_per_ip":
			dst = &l.SendsPerIP
		case "sends_per_workspace":
			dst = &l.SendsPerWorkspace
		case "requests_per_ip":
			dst = &l.RequestsPerIP
		case "tries_per_ip":
			dst = &l.TriesPerIP
		case "tries_per_contact":
			dst = &l.TriesPerContact
		case "ipv4_prefix":
			dst = &l.IPv4Prefix
		case "ipv6_prefix":
			dst = &l.IPv6Prefix
		case "tries_per_workspace":
			return nil, d.Errf("limits: tries_per_workspace is gone: one client could use up the whole workspace's tries; use tries_per_contact (per email address) and tries_per_ip")
		case "window":
			v, err := storage.DurationArg(d)
			if err != nil {
				return nil, err
			}
			l.Window = v
			continue
		default:
			return nil, storage.UnknownOption(d, "limits", limitsOptions)
		}
		n, err := intArg(d)
		if err != nil {
			return nil, err
		}
		*dst = n
	}
	return l, at.errAt(d, l.Check())
}

func parseWorkspace(d *caddyfile.Dispenser) (*module.WorkspaceConfig, error) {
	ws := new(module.WorkspaceConfig)
	at := block{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if _, dup := at[opt]; dup && opt != "sso" {
			return nil, d.Errf("workspace option %s is set twice", opt)
		}
		at[opt] = d.Token()
		var err error
		switch opt {
		case "title":
			err = oneArg(d, &ws.Title)
		case "url":
			err = oneArg(d, &ws.URL)
		case "contacts_file":
			// read by Provision only: caddy adapt reads no files,
			// caddy validate reports a bad one
			err = oneArg(d, &ws.ContactsFile)
		case "auth_path":
			err = oneArg(d, &ws.AuthPath)
		case "code_ttl":
			ws.CodeTTL, err = storage.DurationArg(d)
		case "resend_cooldown":
			ws.ResendCooldown, err = storage.DurationArg(d)
		case "session_ttl":
			ws.SessionTTL, err = storage.DurationArg(d)
		case "session_idle":
			ws.SessionIdle, err = storage.DurationArg(d)
		case "link_ttl":
			ws.LinkTTL, err = storage.DurationArg(d)
		case "link_max_ttl":
			ws.LinkMaxTTL, err = storage.DurationArg(d)
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
		case "forward_auth":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			ws.ForwardAuth = true
		case "webhook":
			h, err := parseWebhook(d)
			if err != nil {
				return nil, err
			}
			ws.Webhooks = append(ws.Webhooks, h)
			continue
		case "scim":
			ws.SCIM, err = parseSCIM(d)
		case "languages":
			ws.Languages = d.RemainingArgs()
			if len(ws.Languages) == 0 {
				return nil, d.ArgErr()
			}
		case "brand":
			ws.Brand, err = parseBrand(d)
		case "templates_dir":
			err = oneArg(d, &ws.TemplatesDir)
		case "mail_from":
			err = oneArg(d, &ws.MailFrom)
		case "sso":
			sc, err := parseSSO(d)
			if err != nil {
				return nil, err
			}
			// the block's end, where a repeated provider is reported
			at["sso "+sc.Name] = d.Token()
			ws.SSO = append(ws.SSO, sc)
		default:
			return nil, storage.UnknownOption(d, "workspace", workspaceOptions)
		}
		if err != nil {
			return nil, err
		}
	}
	return ws, at.errAt(d, ws.Check(nil))
}

func parseSSO(d *caddyfile.Dispenser) (*module.SSOConfig, error) {
	sc := new(module.SSOConfig)
	if !d.AllArgs(&sc.Name) {
		return nil, d.ArgErr()
	}
	if err := module.CheckName("sso", sc.Name); err != nil {
		return nil, d.WrapErr(err)
	}
	at := block{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if _, dup := at[opt]; dup {
			return nil, d.Errf("sso %s: %s is set twice", sc.Name, opt)
		}
		at[opt] = d.Token()
		var ok bool
		switch opt {
		case "provider":
			ok = d.AllArgs(&sc.Provider)
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
		case "public_client":
			sc.PublicClient, ok = true, !d.NextArg()
		case "trust_unverified_email":
			sc.TrustUnverifiedEmail, ok = true, !d.NextArg()
		case "allowed_tenants":
			sc.AllowedTenants = d.RemainingArgs()
			ok = len(sc.AllowedTenants) > 0
		case "scopes":
			sc.Scopes = d.RemainingArgs()
			ok = len(sc.Scopes) > 0
		default:
			return nil, storage.UnknownOption(d, "sso", ssoOptions)
		}
		if !ok {
			return nil, d.ArgErr()
		}
	}
	return sc, at.errAt(d, sc.Check(nil))
}

// parseWebhook reads a workspace's webhook block:
//
//	webhook <url> {
//		secret <whsec_…>
//		events <event>...
//	}
func parseWebhook(d *caddyfile.Dispenser) (*module.WebhookConfig, error) {
	h := new(module.WebhookConfig)
	if !d.AllArgs(&h.URL) {
		return nil, d.ArgErr()
	}
	at := block{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if _, dup := at[opt]; dup {
			return nil, d.Errf("webhook %s: %s is set twice", h.URL, opt)
		}
		at[opt] = d.Token()
		switch opt {
		case "secret":
			if !d.AllArgs(&h.Secret) {
				return nil, d.ArgErr()
			}
		case "events":
			if h.Events = d.RemainingArgs(); len(h.Events) == 0 {
				return nil, d.ArgErr()
			}
		default:
			return nil, storage.UnknownOption(d, "webhook", webhookOptions)
		}
	}
	return h, at.errAt(d, h.Check(nil))
}

// parseSCIM reads a workspace's scim block; token may repeat (rotation).
func parseBrand(d *caddyfile.Dispenser) (*module.BrandConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	b := new(module.BrandConfig)
	at := block{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if _, dup := at[opt]; dup {
			return nil, d.Errf("brand: %s is set twice", opt)
		}
		at[opt] = d.Token()
		var dst *string
		switch opt {
		case "logo":
			dst = &b.Logo
		case "accent":
			dst = &b.Accent
		case "support_url":
			dst = &b.SupportURL
		case "support_email":
			dst = &b.SupportEmail
		case "footer":
			dst = &b.Footer
		default:
			return nil, storage.UnknownOption(d, "brand", brandOptions)
		}
		if err := oneArg(d, dst); err != nil {
			return nil, err
		}
	}
	return b, at.errAt(d, b.Check(nil))
}

func parseSCIM(d *caddyfile.Dispenser) (*module.SCIMConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	sc := new(module.SCIMConfig)
	at := block{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if _, dup := at[opt]; dup && opt != "token" {
			return nil, d.Errf("scim: %s is set twice", opt)
		}
		at[opt] = d.Token()
		switch opt {
		case "token":
			var t string
			if !d.AllArgs(&t) {
				return nil, d.ArgErr()
			}
			sc.Tokens = append(sc.Tokens, t)
		case "groups":
			sc.Groups = d.RemainingArgs()
			if len(sc.Groups) == 0 {
				return nil, d.ArgErr()
			}
		case "requests_per_minute":
			n, err := intArg(d)
			if err != nil {
				return nil, err
			}
			sc.RequestsPerMinute = n
		default:
			return nil, storage.UnknownOption(d, "scim", scimOptions)
		}
	}
	return sc, at.errAt(d, sc.Check(nil))
}

// oneArg reads the single argument of the current subdirective into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.AllArgs(dst) {
		return d.ArgErr()
	}
	return nil
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
