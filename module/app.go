// Package module wires portalgate into Caddy: the portal app, the
// portal_auth HTTP handler, the admin API routes and the CLI commands. It
// holds lifecycle and configuration only; the flows live in handlers.
package module

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/handlers"
	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
	_ "github.com/kdesk/portalgate/storage/badgerstore" // the default backend
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the `portal` app: the state every portal_auth handler of the
// config shares (storage, mail, keys, workspaces and contacts).
type App struct {
	// StorageRaw is the storage backend, a module in the portal.storage
	// namespace. Default: portal.storage.badger in Caddy's data directory.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=portal.storage inline_key=backend"`

	// Secret signs links and keys code hashes. It should be at least 32
	// characters; placeholders such as {env.PORTAL_SECRET} are resolved.
	// Default: a random secret generated once and kept in storage.
	Secret string `json:"secret,omitempty"`

	// Mail configures how code emails leave. Required: the log mailer,
	// which only suits local runs, must be chosen explicitly.
	Mail *MailConfig `json:"mail,omitempty"`

	// Workspaces are the portals, by name.
	Workspaces map[string]*WorkspaceConfig `json:"workspaces,omitempty"`

	// TemplatesDir holds HTML and email templates that replace the
	// embedded ones of the same file name. Default: none.
	TemplatesDir string `json:"templates_dir,omitempty"`

	// Limits are the rate limits on code sends and tries. Default:
	// handlers.DefaultLimits.
	Limits *LimitsConfig `json:"limits,omitempty"`

	// OutboxWorkers fixes the number of concurrent mail deliveries, from
	// 1 to 64. Default: adapted to how long deliveries take, from 1 to 32
	// (more at once against a relay far away, fewer when the machine's
	// cores are busy), starting at 4.
	OutboxWorkers int `json:"outbox_workers,omitempty"`

	// LogEmails is how contact emails appear in the portal.audit log:
	// "masked" (j***@acme.example) or "full". The stored audit trail keeps
	// them whole either way. Default: masked.
	LogEmails string `json:"log_emails,omitempty"`

	backend storage.Backend
	portal  *handlers.Portal
	// mail is the sender, watched for failures.
	mail     *mail.Watched
	contacts map[string][]storage.Contact
	logger   *zap.Logger
	// ctx is the config's context; background work runs under it.
	ctx caddy.Context
	// stop ends the background work of Start.
	stop context.CancelFunc
	// used are the workspaces a portal_auth handler of this config
	// serves (warn.go).
	usedMu sync.Mutex
	used   map[string]bool
}

// MailConfig selects and configures the mailer.
type MailConfig struct {
	// Mailer is "smtp" or "log". The log mailer writes every message,
	// code included, to Caddy's log: for local runs only.
	Mailer string `json:"mailer"`
	// Host is the SMTP server's host name.
	Host string `json:"host,omitempty"`
	// Port is the SMTP server's port. Default: 587, or 465 with tls.
	Port int `json:"port,omitempty"`
	// Username and Password authenticate to the SMTP server when set.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// From is the sender address, like "Acme Support <support@acme.example>".
	From string `json:"from,omitempty"`
	// TLS is "starttls" (required, the default), "tls" (implicit TLS) or
	// "none" (only for a relay on localhost).
	TLS string `json:"tls,omitempty"`
	// Connections is how many connections to the SMTP server may be open
	// at once, from 1 to 64. They stay open between messages, so that a
	// rush of sign-ins does not open one per code; a message waits for a
	// free one when all are busy. Default: as many as the outbox has
	// deliveries under way (at most 32); set it where the provider limits
	// the connections of one account.
	Connections int `json:"connections,omitempty"`
	// IdleTimeout is how long an open connection may wait for the next
	// message before it is closed; keep it below the server's own idle
	// timeout. Default: 30s.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
}

// LimitsConfig is the rate limits on sign-in requests, code sends and
// tries; a zero field takes its value from handlers.DefaultLimits. No
// limit is a budget anonymous traffic can spend for others: sends count
// only codes actually sent to eligible contacts, and the per-client limits
// refuse only that client's network.
type LimitsConfig struct {
	// SendsPerEmail caps code emails sent to one contact per Window.
	// Default: 5.
	SendsPerEmail int `json:"sends_per_email,omitempty"`
	// SendsPerIP caps code emails sent to contacts at the request of one
	// client network per Window. Default: 30.
	SendsPerIP int `json:"sends_per_ip,omitempty"`
	// SendsPerWorkspace caps code emails sent to a workspace's contacts per
	// Window. Default: 2000.
	SendsPerWorkspace int `json:"sends_per_workspace,omitempty"`
	// RequestsPerIP caps sign-in requests (emails submitted, codes resent,
	// links opened, single sign-ons started, invalid links) from one
	// client network per Window, whether or not they name a contact.
	// Default: 60.
	RequestsPerIP int `json:"requests_per_ip,omitempty"`
	// TriesPerIP caps code entries from one client network per Window.
	// Default: 60.
	TriesPerIP int `json:"tries_per_ip,omitempty"`
	// TriesPerContact caps code entries for one email address per Window,
	// across all its sign-in flows (each code also dies after 5 wrong
	// tries in its flow). Default: 30.
	TriesPerContact int `json:"tries_per_contact,omitempty"`
	// Window is the period the counters cover. Default: 10m.
	Window caddy.Duration `json:"window,omitempty"`
	// IPv4Prefix is the prefix length a client's IPv4 address is counted
	// by. Default: 32 (the address).
	IPv4Prefix int `json:"ipv4_prefix,omitempty"`
	// IPv6Prefix is the prefix length a client's IPv6 address is counted
	// by. Default: 64 (a typical household or host).
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`
}

// WebhookConfig is one receiver of a workspace's events: each chosen
// event is POSTed as JSON {"type","timestamp","data"}, signed per the
// Standard Webhooks specification, through the persistent outbox (at least
// once, retried with backoff for a day).
type WebhookConfig struct {
	// URL receives the events. Required.
	URL string `json:"url"`
	// Secret signs them: "whsec_" and the base64 of at least 24 random
	// bytes; placeholders such as {env.HOOK_SECRET} are resolved.
	// Required.
	Secret string `json:"secret"`
	// Events are the event types sent: sign_in (any method), sign_out,
	// session_revoked, contact_deprovisioned, link_created, or any audit
	// event name. Required.
	Events []string `json:"events"`
}

// SSOConfig is one OpenID Connect provider of a workspace.
type SSOConfig struct {
	// Name is the provider's path segment (/_portal/sso/{name}). Required.
	Name string `json:"name"`
	// Provider is google, microsoft or oidc. Default: the name, when it is
	// google or microsoft.
	Provider string `json:"provider,omitempty"`
	// Issuer is the OpenID Connect issuer. Default for google:
	// https://accounts.google.com; for microsoft:
	// https://login.microsoftonline.com/{tenant}/v2.0. Required for oidc.
	Issuer string `json:"issuer,omitempty"`
	// ClientID is the OAuth client id. Required.
	ClientID string `json:"client_id"`
	// ClientSecret is the OAuth client secret. Required, except for an
	// oidc provider with PublicClient.
	ClientSecret string `json:"client_secret,omitempty"`
	// PublicClient says that the oidc provider registered this client
	// without a secret (PKCE protects the code exchange). Default: false.
	PublicClient bool `json:"public_client,omitempty"`
	// TrustUnverifiedEmail lets an oidc provider's email claim match a
	// contact when the token has no email_verified claim at all, for a
	// provider known to send only addresses it has checked; an explicit
	// email_verified: false is refused still. Default: an email counts only
	// when email_verified is true. (Google and Microsoft keep their own
	// rules.)
	TrustUnverifiedEmail bool `json:"trust_unverified_email,omitempty"`
	// Tenant is the Microsoft tenant: common, organizations or a tenant id.
	// Default: common.
	Tenant string `json:"tenant,omitempty"`
	// AllowedTenants limits Microsoft sign-ins to these tenant ids.
	AllowedTenants []string `json:"allowed_tenants,omitempty"`
	// Scopes requested. Default: openid email profile.
	Scopes []string `json:"scopes,omitempty"`
	// Label is the button text after "Continue with". Default: Google,
	// Microsoft, or the name.
	Label string `json:"label,omitempty"`
}

// resolve builds the handlers' provider, with placeholders replaced and
// defaults filled in; sc.Check has passed.
func (sc *SSOConfig) resolve(repl *caddy.Replacer) *handlers.SSOProvider {
	p := &handlers.SSOProvider{
		Name:           sc.Name,
		Kind:           sc.kind(),
		Issuer:         repl.ReplaceKnown(sc.Issuer, ""),
		ClientID:       repl.ReplaceKnown(sc.ClientID, ""),
		ClientSecret:   repl.ReplaceKnown(sc.ClientSecret, ""),
		Tenant:         repl.ReplaceKnown(sc.Tenant, ""),
		AllowedTenants: sc.AllowedTenants,
		Scopes:         sc.Scopes,
		Label:          sc.Label,

		TrustUnverifiedEmail: sc.TrustUnverifiedEmail,
	}
	switch p.Kind {
	case handlers.SSOGoogle:
		if p.Issuer == "" {
			p.Issuer = "https://accounts.google.com"
		}
		if p.Label == "" {
			p.Label = "Google"
		}
	case handlers.SSOMicrosoft:
		if p.Tenant == "" {
			p.Tenant = "common"
		}
		if p.Issuer == "" {
			p.Issuer = "https://login.microsoftonline.com/" + p.Tenant + "/v2.0"
		}
		if p.Label == "" {
			p.Label = "Microsoft"
		}
	}
	if p.Label == "" {
		p.Label = sc.Name
	}
	return p
}

// WorkspaceConfig is one portal.
type WorkspaceConfig struct {
	// Title is shown on every page and email. Default: the workspace name.
	Title string `json:"title,omitempty"`
	// URL is the public base URL used in emailed links, like
	// https://support.acme.example. Required for personalized links.
	URL string `json:"url,omitempty"`
	// ContactsFile is a JSON array of contacts upserted at start.
	ContactsFile string `json:"contacts_file,omitempty"`
	// AuthPath is the reserved path prefix of the sign-in pages.
	// Default: /_portal.
	AuthPath string `json:"auth_path,omitempty"`
	// CodeTTL is how long an emailed code works. Default: 10m.
	CodeTTL caddy.Duration `json:"code_ttl,omitempty"`
	// ResendCooldown is the wait before another code may be sent to the
	// same address. Default: 30s.
	ResendCooldown caddy.Duration `json:"resend_cooldown,omitempty"`
	// SessionTTL is the absolute lifetime of a session. Default: 12h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`
	// SessionIdle ends a session after this long without a request.
	// Default: 2h (never longer than SessionTTL).
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`
	// LinkTTL is the default lifetime of a personalized link. Default: 72h.
	LinkTTL caddy.Duration `json:"link_ttl,omitempty"`
	// LinkMaxTTL is the longest lifetime a link may ask for. Default: 30 days.
	LinkMaxTTL caddy.Duration `json:"link_max_ttl,omitempty"`
	// SSO are the single sign-on providers offered on the sign-in page, in
	// this order. Requires URL (the callback is built from it).
	SSO []*SSOConfig `json:"sso,omitempty"`
	// Webhooks receive the workspace's events (see WebhookConfig).
	Webhooks []*WebhookConfig `json:"webhooks,omitempty"`
	// SSODirectoryMatch allows SSO only for contacts synced from a directory.
	SSODirectoryMatch bool `json:"sso_directory_match,omitempty"`
	// Disabled shows "Portal unavailable" (503) to everyone.
	Disabled bool `json:"disabled,omitempty"`
	// ForwardAuth makes {auth_path}/auth answer auth subrequests of a
	// proxy in front of the portal (nginx auth_request, Traefik forwardAuth,
	// Caddy forward_auth), from Caddy's trusted_proxies only. Default: off
	// (the endpoint does not exist).
	ForwardAuth bool `json:"forward_auth,omitempty"`
	// SCIM serves a SCIM 2.0 service provider at {auth_path}/scim/v2/ for
	// the customer's directory (scim.go). Default: none (those paths are
	// 404).
	SCIM *SCIMConfig `json:"scim,omitempty"`
	// Languages are the languages of the sign-in pages and the code email,
	// among those portalgate ships (en, de, fr, es, pt-BR, nl, ja, ar).
	// The first is the default; the others are chosen by the browser's
	// Accept-Language or the pages' language switch. Default: en.
	Languages []string `json:"languages,omitempty"`
	// Brand is the workspace's logo, accent color, support contact and
	// footer, shown on every page and in the HTML email. Default: none (a
	// plain title).
	Brand *BrandConfig `json:"brand,omitempty"`
	// TemplatesDir holds templates that replace the embedded ones for this
	// workspace only, overriding the portal's templates_dir. Default: the
	// portal's.
	TemplatesDir string `json:"templates_dir,omitempty"`
	// MailFrom is the sender of this workspace's email, like
	// "Acme Support <support@acme.example>". Default: the mail block's
	// from.
	MailFrom string `json:"mail_from,omitempty"`
}

// BrandConfig is a workspace's look.
type BrandConfig struct {
	// Logo is an image file (PNG, JPEG, GIF, WebP or SVG, at most 256 KiB),
	// read at provision and served inline, or an http(s) URL. Default: none.
	Logo string `json:"logo,omitempty"`
	// Accent is the buttons' and links' color, a CSS hex color like
	// "#2451c7". Default: #2553c7.
	Accent string `json:"accent,omitempty"`
	// SupportURL is where "ask your service provider" links to, an
	// http(s) URL. Default: none.
	SupportURL string `json:"support_url,omitempty"`
	// SupportEmail is the support address that sentence links to when
	// SupportURL is not set. Default: none.
	SupportEmail string `json:"support_email,omitempty"`
	// Footer is a line of text at the foot of every page and email.
	// Default: none.
	Footer string `json:"footer,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "portal",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads the storage module (without opening it), resolves
// placeholders, fills defaults and reads the contacts files, so that
// `caddy validate` reports every configuration error.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()

	if a.StorageRaw == nil {
		a.StorageRaw = json.RawMessage(`{"backend":"badger"}`)
	}
	mod, err := ctx.LoadModule(a, "StorageRaw")
	if err != nil {
		return fmt.Errorf("loading storage module: %w", err)
	}
	backend, ok := mod.(storage.Backend)
	if !ok {
		return fmt.Errorf("storage module %T is not a portal storage backend", mod)
	}
	a.backend = backend

	if err := CheckSecret(a.Secret, repl); err != nil {
		return err
	}
	var secret []byte
	if a.Secret != "" {
		secret = []byte(repl.ReplaceKnown(a.Secret, ""))
	}
	if a.OutboxWorkers != 0 {
		if err := checkWholeNumber("", "outbox_workers", a.OutboxWorkers); err != nil {
			return err
		}
	}
	if err := CheckLogEmails(a.LogEmails); err != nil {
		return err
	}
	if a.Limits != nil {
		if err := a.Limits.Check(); err != nil {
			return err
		}
	}

	sender, err := a.sender(repl)
	if err != nil {
		return err
	}

	pages, err := handlers.LoadPages(repl.ReplaceKnown(a.TemplatesDir, ""))
	if err != nil {
		return fmt.Errorf("templates: %w", err)
	}

	a.contacts = map[string][]storage.Contact{}
	workspaces := map[string]*handlers.Workspace{}
	for name, wc := range a.Workspaces {
		if err := CheckName("workspace", name); err != nil {
			return err
		}
		ws, err := wc.resolve(name, repl)
		if err != nil {
			return fmt.Errorf("workspace %s: %w", name, err)
		}
		workspaces[name] = ws
		if wc.ContactsFile != "" {
			file := repl.ReplaceKnown(wc.ContactsFile, "")
			cs, err := ReadContactsFile(file)
			if err != nil {
				return fmt.Errorf("workspace %s: %w", name, err)
			}
			a.contacts[name] = cs
		}
	}

	limits := handlers.Limits{}
	if l := a.Limits; l != nil {
		limits = handlers.Limits{
			SendsPerEmail:     l.SendsPerEmail,
			SendsPerIP:        l.SendsPerIP,
			SendsPerWorkspace: l.SendsPerWorkspace,
			RequestsPerIP:     l.RequestsPerIP,
			TriesPerIP:        l.TriesPerIP,
			TriesPerContact:   l.TriesPerContact,
			Window:            time.Duration(l.Window),
			IPv4Prefix:        l.IPv4Prefix,
			IPv6Prefix:        l.IPv6Prefix,
		}
	}
	a.mail = &mail.Watched{Sender: sender}
	a.portal = &handlers.Portal{
		Workspaces:       workspaces,
		Sender:           a.mail,
		MailFailing:      a.mail.Failing,
		Pages:            pages,
		Logger:           a.logger,
		AuditLog:         a.logger.Named("audit"),
		LogFullEmails:    a.LogEmails == "full",
		Limits:           limits,
		ConfiguredSecret: secret,
		OutboxWorkers:    a.OutboxWorkers,
		ClientIP:         clientIP,
		ForwardedHTTPS:   forwardedHTTPS,
		TrustedProxy:     trustedProxy,
	}
	metrics, err := handlers.NewMetrics(ctx.GetMetricsRegistry(), a.portal)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	a.portal.Metrics = metrics
	return nil
}

func (a *App) sender(repl *caddy.Replacer) (mail.Sender, error) {
	mc := a.Mail
	if err := mc.Check(repl); err != nil {
		return nil, err
	}
	if mc.Mailer == "log" {
		return mail.Log{Logger: a.logger.Named("mail")}, nil
	}
	s := &mail.SMTP{
		Host:     repl.ReplaceKnown(mc.Host, ""),
		Port:     mc.Port,
		Username: repl.ReplaceKnown(mc.Username, ""),
		Password: repl.ReplaceKnown(mc.Password, ""),
		From:     repl.ReplaceKnown(mc.From, ""),
		TLS:      mc.TLS,
		// 0 takes mail.SMTP's defaults
		Connections: mc.Connections,
		IdleTimeout: time.Duration(mc.IdleTimeout),
	}
	if s.TLS == "" {
		s.TLS = "starttls"
	}
	if s.Port == 0 {
		s.Port = 587
		if s.TLS == "tls" {
			s.Port = 465
		}
	}
	return s, nil
}

// resolve checks the workspace and builds the handlers' workspace, with
// placeholders replaced and defaults filled in.
func (wc *WorkspaceConfig) resolve(name string, repl *caddy.Replacer) (*handlers.Workspace, error) {
	if err := wc.Check(repl); err != nil {
		return nil, err
	}
	lt := wc.lifetimes()
	u, _ := wc.publicURL(repl) // checked above
	ws := &handlers.Workspace{
		Name:              name,
		Title:             repl.ReplaceKnown(wc.Title, ""),
		URL:               u,
		AuthPath:          wc.AuthPath,
		CodeTTL:           lt.code,
		ResendCooldown:    lt.resend,
		SessionTTL:        lt.session,
		SessionIdle:       lt.idle,
		LinkTTL:           lt.link,
		LinkMaxTTL:        lt.linkMax,
		Disabled:          wc.Disabled,
		SSODirectoryMatch: wc.SSODirectoryMatch,
		ForwardAuth:       wc.ForwardAuth,
	}
	if ws.Title == "" {
		ws.Title = name
	}
	if ws.AuthPath == "" {
		ws.AuthPath = "/_portal"
	}
	for _, sc := range wc.SSO {
		ws.SSO = append(ws.SSO, sc.resolve(repl))
	}
	for _, h := range wc.Webhooks {
		// Check has accepted the secret.
		key, _ := handlers.ParseWebhookSecret(repl.ReplaceKnown(h.Secret, ""))
		ws.Webhooks = append(ws.Webhooks, &handlers.Webhook{URL: repl.ReplaceKnown(h.URL, ""), Key: key, Events: h.Events})
	}
	if wc.SCIM != nil {
		ws.SCIM = wc.SCIM.resolve(repl)
	}
	for _, l := range wc.Languages {
		tag, _ := handlers.LanguageSupported(l) // checked above
		ws.Languages = append(ws.Languages, tag)
	}
	if len(ws.Languages) == 0 {
		ws.Languages = append(ws.Languages, handlers.DefaultLanguage)
	}
	ws.MailFrom = repl.ReplaceKnown(wc.MailFrom, "")
	if wc.Brand != nil {
		b, err := wc.Brand.resolve(repl)
		if err != nil {
			return nil, err
		}
		ws.Brand = b
	}
	if dir := repl.ReplaceKnown(wc.TemplatesDir, ""); dir != "" {
		pages, err := handlers.LoadPages(dir)
		if err != nil {
			return nil, fmt.Errorf("workspace %s: templates: %w", name, err)
		}
		ws.Pages = pages
	}
	return ws, nil
}

// ReadContactsFile reads and validates a JSON array of contacts. An invalid
// record is an error naming its position.
func ReadContactsFile(file string) ([]storage.Contact, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("contacts_file: %w", err)
	}
	cs, err := storage.ParseContactsJSON(b)
	if err != nil {
		return nil, fmt.Errorf("contacts_file %s: %w", file, err)
	}
	return cs, nil
}

// Validate checks the configuration without side effects. It needs
// nothing from Provision: the Caddyfile adapter calls it on the config it
// has just parsed.
func (a *App) Validate() error {
	if len(a.Workspaces) == 0 {
		return errors.New("portal: at least one workspace is required")
	}
	return nil
}

// Start opens storage, upserts the contacts files and starts the outbox.
// Storage that cannot be reached yet (a Redis that is down) does not stop
// Caddy: the portal fails closed and both are retried in the background.
func (a *App) Start() error {
	store, err := a.backend.Open()
	if err != nil {
		return fmt.Errorf("opening portal storage: %w", err)
	}
	a.warnAtStart()
	ctx, stop := context.WithCancel(a.ctx)
	a.stop = stop
	if s, ok := a.mail.Sender.(*mail.SMTP); ok {
		go a.probeSMTP(ctx, s)
	}
	// The contacts files go in before the portal serves: the HTTP server
	// may already be taking requests (Caddy starts apps in no particular
	// order), and a sign-in must not find a contact missing because its
	// file was still being read.
	imported, importErr := a.importContacts(ctx, store)
	if importErr != nil && !errors.Is(importErr, storage.ErrUnavailable) {
		stop()
		return importErr
	}
	if err := a.portal.Start(ctx, store); err != nil {
		stop()
		return err
	}
	a.auditImports(ctx, imported)
	if importErr != nil {
		a.logger.Error("importing contacts files: storage unavailable, will retry", zap.Error(importErr))
		go func() {
			err := storage.Retry(ctx, 3*time.Second, func() error {
				imported, err := a.importContacts(ctx, store)
				a.auditImports(ctx, imported)
				return err
			})
			if err != nil && ctx.Err() == nil {
				a.logger.Error("importing contacts files", zap.Error(err))
			}
		}()
	}
	return nil
}

// auditImports records what importContacts did.
func (a *App) auditImports(ctx context.Context, events []storage.AuditEvent) {
	for _, e := range events {
		a.portal.Audit(ctx, e)
	}
}

// probeSMTP tries the SMTP server once, in the background so that a slow
// or unreachable server never holds up a start, and logs the result; a
// failure shows on the code page (mail may be delayed) until a message
// goes out.
func (a *App) probeSMTP(ctx context.Context, s *mail.SMTP) {
	fields := []zap.Field{zap.String("host", s.Host), zap.Int("port", s.Port), zap.String("tls", s.TLS),
		zap.Bool("auth", s.Username != "")}
	if s.Username != "" {
		fields = append(fields, zap.String("username", s.Username))
	}
	if err := s.Probe(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		a.mail.MarkFailing()
		a.logger.Error("smtp server check failed at start: sign-in codes will wait in the outbox until it answers",
			append(fields, zap.Error(err))...)
		return
	}
	a.logger.Info("smtp server check passed", fields...)
}

// importContacts upserts the contacts files and returns the audit events
// of what it did, for the caller to record once the portal runs.
func (a *App) importContacts(ctx context.Context, store storage.Store) (events []storage.AuditEvent, err error) {
	names := make([]string, 0, len(a.contacts))
	for n := range a.contacts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, ws := range names {
		// The file is authoritative for the contacts it brought in: those
		// it no longer lists are disabled and signed out in the same store
		// call; contacts added through the admin API are left alone.
		res, err := store.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, a.contacts[ws])
		if err != nil {
			return events, fmt.Errorf("workspace %s: importing contacts_file: %w", ws, err)
		}
		a.logger.Info("contacts imported", zap.String("workspace", ws), zap.Int("count", len(a.contacts[ws])),
			zap.Int("upserted", res.Upserted), zap.Int("disabled", res.Disabled), zap.Int("unchanged", res.Unchanged))
		events = append(events, storage.AuditEvent{Workspace: ws, Event: handlers.EventContactsImported, Actor: handlers.ActorFile, Count: len(a.contacts[ws]),
			Time: time.Now(), Reason: fmt.Sprintf("contacts_file: %d upserted, %d disabled, %d unchanged", res.Upserted, res.Disabled, res.Unchanged)})
	}
	return events, nil
}

// Stop ends the outbox workers, then closes the SMTP connections they
// kept open, so that a reload leaves none behind; queued mail stays in
// storage.
func (a *App) Stop() error {
	a.portal.Stop()
	if a.stop != nil {
		a.stop()
	}
	if s, ok := a.mail.Sender.(*mail.SMTP); ok {
		s.Close()
	}
	return nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)

// resolve builds the handlers' brand: placeholders replaced, the logo file
// read into a data: URL.
func (b *BrandConfig) resolve(repl *caddy.Replacer) (*handlers.Brand, error) {
	out := &handlers.Brand{
		Accent:       repl.ReplaceKnown(b.Accent, ""),
		SupportURL:   repl.ReplaceKnown(b.SupportURL, ""),
		SupportEmail: repl.ReplaceKnown(b.SupportEmail, ""),
		Footer:       repl.ReplaceKnown(b.Footer, ""),
	}
	logo := repl.ReplaceKnown(b.Logo, "")
	switch {
	case logo == "":
	case strings.Contains(logo, "://"):
		out.LogoURL = logo
	default:
		raw, err := os.ReadFile(logo)
		if err != nil {
			return nil, fmt.Errorf("brand: logo: %w", err)
		}
		if len(raw) > maxLogoBytes {
			return nil, fmt.Errorf("brand: logo %s: %d bytes, at most %d", logo, len(raw), maxLogoBytes)
		}
		out.LogoURL = "data:" + logoTypes[strings.ToLower(filepath.Ext(logo))] + ";base64," + base64.StdEncoding.EncodeToString(raw)
	}
	return out, nil
}
