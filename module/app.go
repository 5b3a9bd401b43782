// Package module wires portalgate into Caddy: the portal app, the
// portal_auth HTTP handler, the admin API routes and the CLI commands. It
// holds lifecycle and configuration only; the flows live in handlers.
package module

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync/atomic"
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

// active is the running portal app, for the admin API and CLI. A reload
// starts the new app before it stops the old one.
var active atomic.Pointer[App]

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

	// Mail configures how code emails leave. Default: the log mailer,
	// which only suits local runs.
	Mail *MailConfig `json:"mail,omitempty"`

	// Workspaces are the portals, by name.
	Workspaces map[string]*WorkspaceConfig `json:"workspaces,omitempty"`

	// TemplatesDir holds HTML and email templates that replace the
	// embedded ones of the same file name. Default: none.
	TemplatesDir string `json:"templates_dir,omitempty"`

	// Limits are the rate limits on code sends and tries. Default:
	// handlers.DefaultLimits.
	Limits *LimitsConfig `json:"limits,omitempty"`

	// OutboxWorkers is the number of concurrent mail deliveries. Default 4.
	OutboxWorkers int `json:"outbox_workers,omitempty"`

	backend  storage.Backend
	portal   *handlers.Portal
	contacts map[string][]storage.Contact
	logger   *zap.Logger
	// stopImport ends a background retry of the contacts import.
	stopImport chan struct{}
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
}

// LimitsConfig is the rate limits on code sends and tries; a zero field
// takes its value from handlers.DefaultLimits.
type LimitsConfig struct {
	// SendsPerEmail caps code emails to one address per Window. Default: 5.
	SendsPerEmail int `json:"sends_per_email,omitempty"`
	// SendsPerIP caps code requests from one client IP per Window. Default: 30.
	SendsPerIP int `json:"sends_per_ip,omitempty"`
	// SendsPerWorkspace caps code requests to one workspace per Window.
	// Default: 2000.
	SendsPerWorkspace int `json:"sends_per_workspace,omitempty"`
	// TriesPerIP caps code entries from one client IP per Window. Default: 60.
	TriesPerIP int `json:"tries_per_ip,omitempty"`
	// TriesPerWorkspace caps code entries in one workspace per Window.
	// Default: 5000.
	TriesPerWorkspace int `json:"tries_per_workspace,omitempty"`
	// Window is the period the counters cover. Default: 10m.
	Window caddy.Duration `json:"window,omitempty"`
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
	// ClientSecret is the OAuth client secret.
	ClientSecret string `json:"client_secret,omitempty"`
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

func (sc *SSOConfig) resolve(repl *caddy.Replacer) (*handlers.SSOProvider, error) {
	if !storage.ValidName(sc.Name) {
		return nil, fmt.Errorf("sso name %q: use lowercase letters, digits, - or _", sc.Name)
	}
	p := &handlers.SSOProvider{
		Name:           sc.Name,
		Kind:           sc.Provider,
		Issuer:         repl.ReplaceKnown(sc.Issuer, ""),
		ClientID:       repl.ReplaceKnown(sc.ClientID, ""),
		ClientSecret:   repl.ReplaceKnown(sc.ClientSecret, ""),
		Tenant:         repl.ReplaceKnown(sc.Tenant, ""),
		AllowedTenants: sc.AllowedTenants,
		Scopes:         sc.Scopes,
		Label:          sc.Label,
	}
	if p.Kind == "" && (sc.Name == handlers.SSOGoogle || sc.Name == handlers.SSOMicrosoft) {
		p.Kind = sc.Name
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
	case handlers.SSOOIDC:
		if p.Issuer == "" {
			return nil, fmt.Errorf("sso %s: issuer is required for provider oidc", sc.Name)
		}
	case "":
		return nil, fmt.Errorf("sso %s: provider is required (google, microsoft or oidc)", sc.Name)
	default:
		return nil, fmt.Errorf("sso %s: unknown provider %q (want google, microsoft or oidc)", sc.Name, p.Kind)
	}
	if p.Kind != handlers.SSOMicrosoft && (p.Tenant != "" || len(p.AllowedTenants) > 0) {
		return nil, fmt.Errorf("sso %s: tenant and allowed_tenants are for provider microsoft", sc.Name)
	}
	if p.Label == "" {
		p.Label = sc.Name
	}
	if p.ClientID == "" {
		return nil, fmt.Errorf("sso %s: client_id is required", sc.Name)
	}
	if u, err := url.Parse(p.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("sso %s: issuer %q must be an http(s) URL", sc.Name, p.Issuer)
	}
	return p, nil
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
	// SSODirectoryMatch allows SSO only for contacts synced from a directory.
	SSODirectoryMatch bool `json:"sso_directory_match,omitempty"`
	// Disabled shows "Portal unavailable" (503) to everyone.
	Disabled bool `json:"disabled,omitempty"`
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

	var secret []byte
	if a.Secret != "" {
		s := repl.ReplaceKnown(a.Secret, "")
		if len(s) < 32 {
			return errors.New("secret: must be at least 32 characters (or leave it out to have one generated and kept in storage)")
		}
		secret = []byte(s)
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
			TriesPerIP:        l.TriesPerIP,
			TriesPerWorkspace: l.TriesPerWorkspace,
			Window:            time.Duration(l.Window),
		}
	}
	a.portal = &handlers.Portal{
		Workspaces:       workspaces,
		Sender:           sender,
		Pages:            pages,
		Logger:           a.logger,
		AuditLog:         a.logger.Named("audit"),
		Limits:           limits,
		ConfiguredSecret: secret,
		OutboxWorkers:    a.OutboxWorkers,
	}
	metrics, err := handlers.NewMetrics(ctx.GetMetricsRegistry(), a.portal.QueueDepth)
	if err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	a.portal.Metrics = metrics
	return nil
}

func (a *App) sender(repl *caddy.Replacer) (mail.Sender, error) {
	mc := a.Mail
	if mc == nil || mc.Mailer == "log" {
		return mail.Log{Logger: a.logger.Named("mail")}, nil
	}
	if mc.Mailer != "smtp" {
		return nil, fmt.Errorf("mail: unknown mailer %q (want smtp or log)", mc.Mailer)
	}
	s := &mail.SMTP{
		Host:     repl.ReplaceKnown(mc.Host, ""),
		Port:     mc.Port,
		Username: repl.ReplaceKnown(mc.Username, ""),
		Password: repl.ReplaceKnown(mc.Password, ""),
		From:     repl.ReplaceKnown(mc.From, ""),
		TLS:      mc.TLS,
	}
	if s.Host == "" {
		return nil, errors.New("mail smtp: host is required")
	}
	if s.From == "" {
		return nil, errors.New("mail smtp: from is required")
	}
	switch s.TLS {
	case "":
		s.TLS = "starttls"
	case "starttls", "tls", "none":
	default:
		return nil, fmt.Errorf("mail smtp: tls %q: want starttls, tls or none", s.TLS)
	}
	if s.Port == 0 {
		s.Port = 587
		if s.TLS == "tls" {
			s.Port = 465
		}
	}
	if s.Port < 1 || s.Port > 65535 {
		return nil, fmt.Errorf("mail smtp: port %d is out of range", s.Port)
	}
	return s, nil
}

func durOr(d caddy.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

func (wc *WorkspaceConfig) resolve(name string, repl *caddy.Replacer) (*handlers.Workspace, error) {
	if !storage.ValidName(name) {
		return nil, errors.New("name must be lowercase letters, digits, - or _, starting with a letter")
	}
	ws := &handlers.Workspace{
		Name:              name,
		Title:             repl.ReplaceKnown(wc.Title, ""),
		AuthPath:          wc.AuthPath,
		CodeTTL:           durOr(wc.CodeTTL, 10*time.Minute),
		ResendCooldown:    durOr(wc.ResendCooldown, 30*time.Second),
		SessionTTL:        durOr(wc.SessionTTL, 12*time.Hour),
		SessionIdle:       durOr(wc.SessionIdle, 2*time.Hour),
		LinkTTL:           durOr(wc.LinkTTL, 72*time.Hour),
		LinkMaxTTL:        durOr(wc.LinkMaxTTL, 30*24*time.Hour),
		Disabled:          wc.Disabled,
		SSODirectoryMatch: wc.SSODirectoryMatch,
	}
	if ws.Title == "" {
		ws.Title = name
	}
	if ws.AuthPath == "" {
		ws.AuthPath = "/_portal"
	}
	if !strings.HasPrefix(ws.AuthPath, "/") || strings.HasSuffix(ws.AuthPath, "/") || strings.ContainsAny(ws.AuthPath, "?#%\\ ") {
		return nil, fmt.Errorf("auth_path %q: must be a path like /_portal", ws.AuthPath)
	}
	ws.SessionIdle = min(ws.SessionIdle, ws.SessionTTL)
	if ws.CodeTTL < 30*time.Second || ws.CodeTTL > 24*time.Hour {
		return nil, fmt.Errorf("code_ttl %s: must be between 30s and 24h", ws.CodeTTL)
	}
	if ws.ResendCooldown > ws.CodeTTL {
		return nil, fmt.Errorf("resend_cooldown %s: must not be longer than code_ttl %s", ws.ResendCooldown, ws.CodeTTL)
	}
	if ws.SessionTTL < time.Minute {
		return nil, fmt.Errorf("session_ttl %s: must be at least 1m", ws.SessionTTL)
	}
	if ws.LinkTTL > ws.LinkMaxTTL {
		return nil, fmt.Errorf("link_ttl %s: must not be longer than link_max_ttl %s", ws.LinkTTL, ws.LinkMaxTTL)
	}
	if raw := repl.ReplaceKnown(wc.URL, ""); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return nil, fmt.Errorf("url %q: must be an absolute http(s) URL without query, like https://support.acme.example", raw)
		}
		ws.URL = u
	}
	seen := map[string]bool{}
	for _, sc := range wc.SSO {
		p, err := sc.resolve(repl)
		if err != nil {
			return nil, err
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("sso %s is configured twice", p.Name)
		}
		seen[p.Name] = true
		ws.SSO = append(ws.SSO, p)
	}
	if len(ws.SSO) > 0 && ws.URL == nil {
		return nil, errors.New("sso needs the workspace url, to build the callback address")
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

// Validate checks the configuration without side effects.
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
	if err := a.portal.Start(store); err != nil {
		return err
	}
	if err := a.importContacts(store); err != nil {
		if !errors.Is(err, storage.ErrUnavailable) {
			a.portal.Stop()
			return err
		}
		a.logger.Error("importing contacts files: storage unavailable, will retry", zap.Error(err))
		a.stopImport = make(chan struct{})
		go a.retryImport(store, a.stopImport)
	}
	active.Store(a)
	return nil
}

func (a *App) importContacts(store storage.Store) error {
	names := make([]string, 0, len(a.contacts))
	for n := range a.contacts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, ws := range names {
		if err := store.PutContacts(context.Background(), ws, a.contacts[ws]); err != nil {
			return fmt.Errorf("workspace %s: importing contacts_file: %w", ws, err)
		}
		a.logger.Info("contacts imported", zap.String("workspace", ws), zap.Int("count", len(a.contacts[ws])))
	}
	return nil
}

func (a *App) retryImport(store storage.Store, stop <-chan struct{}) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			err := a.importContacts(store)
			if err == nil {
				return
			}
			if !errors.Is(err, storage.ErrUnavailable) {
				a.logger.Error("importing contacts files", zap.Error(err))
				return
			}
		}
	}
}

// Stop ends the outbox workers; queued mail stays in storage.
func (a *App) Stop() error {
	active.CompareAndSwap(a, nil)
	if a.stopImport != nil {
		close(a.stopImport)
	}
	a.portal.Stop()
	return nil
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)
