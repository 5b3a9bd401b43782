package module

import (
	"fmt"
	netmail "net/mail"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/handlers"
	"github.com/kdesk/portalgate/storage"
)

// The checks on configuration values live here, once. Provision calls them
// on every config, JSON included; the Caddyfile adapter calls the same
// functions right after it parses a block, so that it can point at the
// line. They are pure: no files, no storage, no network.
//
// The checks that take a *caddy.Replacer resolve placeholders with it
// first. With a nil replacer, the way the adapter calls them, a value that
// still holds a placeholder such as {env.SMTP_HOST} is skipped: it can only
// be judged once it is replaced, in Provision.

// An OptionError is a configuration value that cannot work. Block and
// Option say where it is, so that the Caddyfile adapter can report the
// line of the option, or the end of the block when the option is missing.
type OptionError struct {
	// Block is the enclosing block as written, like "mail smtp" or
	// "sso google"; empty for an option of the workspace or the portal
	// option itself.
	Block string
	// Option is the option's name; empty when the block itself is wrong.
	Option string
	// Msg says what is wrong, after the option's name.
	Msg string
}

func (e *OptionError) Error() string {
	switch {
	case e.Option == "":
		return e.Block + ": " + e.Msg
	case e.Block == "":
		return e.Option + " " + e.Msg
	}
	return e.Block + ": " + e.Option + " " + e.Msg
}

// wholeNumbers are the accepted ranges of the whole-number options. In
// JSON, 0 means the option's default.
var wholeNumbers = map[string][2]int{
	"port":                {1, 65535},
	"outbox_workers":      {1, 64},
	"connections":         {1, 64},
	"sends_per_email":     {1, 1_000_000},
	"sends_per_ip":        {1, 1_000_000},
	"sends_per_workspace": {1, 1_000_000},
	"requests_per_ip":     {1, 1_000_000},
	"tries_per_ip":        {1, 1_000_000},
	"tries_per_contact":   {1, 1_000_000},
	"ipv4_prefix":         {8, 32},
	"ipv6_prefix":         {32, 128},
	"requests_per_minute": {1, 1_000_000},
}

// ParseWholeNumber reads s, the value written for one of the whole-number
// options (port, outbox_workers, the limits), and checks it against the
// option's range; the error names both.
func ParseWholeNumber(option, s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, wholeNumberErr("", option, s)
	}
	return n, checkWholeNumber("", option, n)
}

func checkWholeNumber(block, option string, n int) error {
	r, ok := wholeNumbers[option]
	if ok && (n < r[0] || n > r[1]) {
		return wholeNumberErr(block, option, strconv.Itoa(n))
	}
	return nil
}

func wholeNumberErr(block, option, s string) error {
	r := wholeNumbers[option]
	return &OptionError{Block: block, Option: option, Msg: fmt.Sprintf("%q: want a whole number from %d to %d", s, r[0], r[1])}
}

// CheckName checks the name of a workspace or an SSO provider (kind is
// "workspace" or "sso"): it becomes a path segment and a storage key.
func CheckName(kind, name string) error {
	if !storage.ValidName(name) {
		return &OptionError{Option: kind + " name", Msg: fmt.Sprintf("%q: use lowercase letters, digits, - or _, starting with a letter", name)}
	}
	return nil
}

// CheckSecret checks the portal's secret; an empty one is fine (it is then
// generated and kept in storage).
func CheckSecret(secret string, repl *caddy.Replacer) error {
	s, ok := value(repl, secret)
	if secret != "" && ok && s == "" {
		return &OptionError{Block: "secret", Msg: secret + " is empty (is the environment variable set?); leave secret out to have one generated and kept in storage"}
	}
	if secret != "" && ok && len(s) < 32 {
		return &OptionError{Block: "secret", Msg: "must be at least 32 characters (or leave it out to have one generated and kept in storage)"}
	}
	return nil
}

// Check reports the first value of the mail config that cannot work. A
// config without one is refused: a portal whose codes silently went to
// the log would look like it works while no contact gets a code, so the
// log mailer must be asked for by name.
func (mc *MailConfig) Check(repl *caddy.Replacer) error {
	if mc == nil {
		return &OptionError{Option: "mail", Msg: "is required: mail smtp { host … from … }, or mail log for local runs (codes are then written to the log, not emailed)"}
	}
	switch mc.Mailer {
	case "log":
		return nil
	case "smtp":
	default:
		return &OptionError{Block: "mail", Msg: fmt.Sprintf("unknown mailer %q (want smtp or log)", mc.Mailer)}
	}
	const block = "mail smtp"
	if err := required(repl, block, "host", mc.Host); err != nil {
		return err
	}
	if err := required(repl, block, "from", mc.From); err != nil {
		return err
	}
	if user, ok := value(repl, mc.Username); ok && user != "" {
		if err := required(repl, block, "password", mc.Password); err != nil {
			err.(*OptionError).Msg += " when username is set"
			return err
		}
	}
	switch mc.TLS {
	case "", "starttls", "tls", "none":
	default:
		return &OptionError{Block: block, Option: "tls", Msg: fmt.Sprintf("%q: want starttls, tls or none", mc.TLS)}
	}
	if mc.Port != 0 {
		if err := checkWholeNumber(block, "port", mc.Port); err != nil {
			return err
		}
	}
	if mc.Connections != 0 {
		if err := checkWholeNumber(block, "connections", mc.Connections); err != nil {
			return err
		}
	}
	if mc.IdleTimeout < 0 {
		return &OptionError{Block: block, Option: "idle_timeout", Msg: "must not be negative"}
	}
	return nil
}

// Check reports the first limit out of range; zero fields take defaults.
func (l *LimitsConfig) Check() error {
	for _, f := range []struct {
		option string
		n      int
	}{
		{"sends_per_email", l.SendsPerEmail},
		{"sends_per_ip", l.SendsPerIP},
		{"sends_per_workspace", l.SendsPerWorkspace},
		{"requests_per_ip", l.RequestsPerIP},
		{"tries_per_ip", l.TriesPerIP},
		{"tries_per_contact", l.TriesPerContact},
		{"ipv4_prefix", l.IPv4Prefix},
		{"ipv6_prefix", l.IPv6Prefix},
	} {
		if f.n == 0 {
			continue
		}
		if err := checkWholeNumber("limits", f.option, f.n); err != nil {
			return err
		}
	}
	if l.Window < 0 {
		return &OptionError{Block: "limits", Option: "window", Msg: "must not be negative"}
	}
	return nil
}

// Check reports the first value of the SSO provider that cannot work.
func (sc *SSOConfig) Check(repl *caddy.Replacer) error {
	if err := CheckName("sso", sc.Name); err != nil {
		return err
	}
	block := "sso " + sc.Name
	kind := sc.kind()
	issuer, issuerKnown := value(repl, sc.Issuer)
	switch kind {
	case handlers.SSOGoogle, handlers.SSOMicrosoft:
	case handlers.SSOOIDC:
		if issuerKnown && issuer == "" {
			return &OptionError{Block: block, Option: "issuer", Msg: "is required for provider oidc"}
		}
	case "":
		return &OptionError{Block: block, Option: "provider", Msg: "is required (google, microsoft or oidc)"}
	default:
		return &OptionError{Block: block, Option: "provider", Msg: fmt.Sprintf("%q: want google, microsoft or oidc", kind)}
	}
	if kind != handlers.SSOMicrosoft {
		if sc.Tenant != "" {
			return &OptionError{Block: block, Option: "tenant", Msg: "is for provider microsoft"}
		}
		if len(sc.AllowedTenants) > 0 {
			return &OptionError{Block: block, Option: "allowed_tenants", Msg: "are for provider microsoft"}
		}
	}
	if sc.TrustUnverifiedEmail && kind != handlers.SSOOIDC {
		return &OptionError{Block: block, Option: "trust_unverified_email", Msg: "is for provider oidc (" + kind + " has its own rule)"}
	}
	if sc.PublicClient && kind != handlers.SSOOIDC {
		return &OptionError{Block: block, Option: "public_client", Msg: "is for provider oidc (" + kind + " always needs a client_secret)"}
	}
	if err := required(repl, block, "client_id", sc.ClientID); err != nil {
		return err
	}
	if !sc.PublicClient {
		if err := required(repl, block, "client_secret", sc.ClientSecret); err != nil {
			if kind == handlers.SSOOIDC && sc.ClientSecret == "" {
				err.(*OptionError).Msg += " (or public_client, for a client registered without one)"
			}
			return err
		}
	}
	if issuerKnown && issuer != "" {
		if u, err := url.Parse(issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return &OptionError{Block: block, Option: "issuer", Msg: fmt.Sprintf("%q must be an http(s) URL", issuer)}
		}
	}
	return nil
}

// kind is the provider, google or microsoft by default for those names.
func (sc *SSOConfig) kind() string {
	if sc.Provider == "" && (sc.Name == handlers.SSOGoogle || sc.Name == handlers.SSOMicrosoft) {
		return sc.Name
	}
	return sc.Provider
}

// Check reports the first option of the workspace, or of its SSO
// providers, that cannot work, the lifetimes judged with their defaults
// filled in.
func (wc *WorkspaceConfig) Check(repl *caddy.Replacer) error {
	lt := wc.lifetimes()
	switch {
	case lt.code < 30*time.Second || lt.code > 24*time.Hour:
		return &OptionError{Option: "code_ttl", Msg: fmt.Sprintf("%s: must be between 30s and 24h", lt.code)}
	case lt.resend > lt.code:
		return &OptionError{Option: "resend_cooldown", Msg: fmt.Sprintf("%s: must not be longer than code_ttl %s", lt.resend, lt.code)}
	case lt.session < time.Minute:
		return &OptionError{Option: "session_ttl", Msg: fmt.Sprintf("%s: must be at least 1m", lt.session)}
	case lt.link > lt.linkMax:
		return &OptionError{Option: "link_ttl", Msg: fmt.Sprintf("%s: must not be longer than link_max_ttl %s", lt.link, lt.linkMax)}
	}
	if _, err := wc.publicURL(repl); err != nil {
		return err
	}
	if p := wc.AuthPath; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#%\\ {}")) {
		return &OptionError{Option: "auth_path", Msg: fmt.Sprintf("%q: must be a path like /_portal", p)}
	}
	seen := map[string]bool{}
	for _, sc := range wc.SSO {
		if err := sc.Check(repl); err != nil {
			return err
		}
		if seen[sc.Name] {
			return &OptionError{Option: "sso " + sc.Name, Msg: "is defined twice"}
		}
		seen[sc.Name] = true
	}
	if u, ok := value(repl, wc.URL); len(wc.SSO) > 0 && ok && u == "" && wc.URL == "" {
		return &OptionError{Option: "sso", Msg: "needs the workspace url, to build the callback address"}
	}
	for _, h := range wc.Webhooks {
		if err := h.Check(repl); err != nil {
			return err
		}
	}
	if wc.SCIM != nil {
		if err := wc.SCIM.Check(repl); err != nil {
			return err
		}
	}
	if err := CheckLanguages(wc.Languages); err != nil {
		return err
	}
	if wc.Brand != nil {
		if err := wc.Brand.Check(repl); err != nil {
			return err
		}
	}
	if from, ok := value(repl, wc.MailFrom); ok && from != "" {
		if _, err := netmail.ParseAddress(from); err != nil {
			return &OptionError{Option: "mail_from", Msg: fmt.Sprintf("%q: must be an address like \"Acme Support <support@acme.example>\"", from)}
		}
	}
	if wc.SSODirectoryMatch && len(wc.SSO) == 0 {
		return &OptionError{Option: "sso_directory_match", Msg: "needs an sso provider: it limits single sign-on to directory contacts, and this workspace offers none"}
	}
	return nil
}

// CheckLanguages checks a workspace's languages: each one shipped, none
// twice.
func CheckLanguages(langs []string) error {
	seen := map[string]bool{}
	for _, l := range langs {
		tag, ok := handlers.LanguageSupported(l)
		if !ok {
			names := make([]string, len(handlers.Languages))
			for i, t := range handlers.Languages {
				names[i] = t.String()
			}
			return &OptionError{Option: "languages", Msg: fmt.Sprintf("%q: not a shipped language (known: %s)", l, strings.Join(names, " "))}
		}
		if seen[tag.String()] {
			return &OptionError{Option: "languages", Msg: fmt.Sprintf("%s is listed twice", l)}
		}
		seen[tag.String()] = true
	}
	return nil
}

// hexColor is a CSS hex color: #rgb or #rrggbb.
var hexColor = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// maxLogoBytes bounds a logo file, which every page carries inline.
const maxLogoBytes = 256 << 10

// logoTypes are the logo files' types, by extension.
var logoTypes = map[string]string{".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml"}

// Check reports the first brand value that cannot work. The logo file
// itself is read by Provision.
func (b *BrandConfig) Check(repl *caddy.Replacer) error {
	if a, ok := value(repl, b.Accent); ok && a != "" && !hexColor.MatchString(a) {
		return &OptionError{Block: "brand", Option: "accent", Msg: fmt.Sprintf("%q: must be a CSS hex color like \"#2451c7\"", a)}
	}
	if u, ok := value(repl, b.SupportURL); ok && u != "" && !httpURL(u) {
		return &OptionError{Block: "brand", Option: "support_url", Msg: fmt.Sprintf("%q: must be an http or https URL", u)}
	}
	if e, ok := value(repl, b.SupportEmail); ok && e != "" {
		if _, err := storage.NormalizeEmail(e); err != nil {
			return &OptionError{Block: "brand", Option: "support_email", Msg: fmt.Sprintf("%q: must be an email address", e)}
		}
	}
	if l, ok := value(repl, b.Logo); ok && l != "" {
		switch {
		case strings.Contains(l, "://"):
			if !httpURL(l) {
				return &OptionError{Block: "brand", Option: "logo", Msg: fmt.Sprintf("%q: must be an image file or an http or https URL", l)}
			}
		case logoTypes[strings.ToLower(filepath.Ext(l))] == "":
			return &OptionError{Block: "brand", Option: "logo", Msg: fmt.Sprintf("%q: must be a .png, .jpg, .gif, .webp or .svg file", l)}
		}
	}
	if len(b.Footer) > 500 {
		return &OptionError{Block: "brand", Option: "footer", Msg: "must be at most 500 characters"}
	}
	return nil
}

// httpURL reports whether s is an absolute http(s) URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}

// lifetimes are a workspace's durations with the defaults filled in.
type lifetimes struct {
	code, resend, session, idle, link, linkMax time.Duration
}

// lifetimes fills in the defaults of the workspace's durations, here only.
func (wc *WorkspaceConfig) lifetimes() lifetimes {
	lt := lifetimes{
		code:    durOr(wc.CodeTTL, 10*time.Minute),
		resend:  durOr(wc.ResendCooldown, 30*time.Second),
		session: durOr(wc.SessionTTL, 12*time.Hour),
		idle:    durOr(wc.SessionIdle, 2*time.Hour),
		link:    durOr(wc.LinkTTL, 72*time.Hour),
		linkMax: durOr(wc.LinkMaxTTL, 30*24*time.Hour),
	}
	lt.idle = min(lt.idle, lt.session)
	return lt
}

func durOr(d caddy.Duration, def time.Duration) time.Duration {
	if d > 0 {
		return time.Duration(d)
	}
	return def
}

// publicURL parses the workspace url: nil when there is none, or when it
// holds a placeholder and repl is nil.
func (wc *WorkspaceConfig) publicURL(repl *caddy.Replacer) (*url.URL, error) {
	raw, ok := value(repl, wc.URL)
	if !ok || wc.URL == "" {
		return nil, nil
	}
	if raw == "" {
		return nil, emptyPlaceholder("", "url", wc.URL)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, &OptionError{Option: "url", Msg: fmt.Sprintf("%q: must be an absolute http(s) URL without query, like https://support.acme.example", raw)}
	}
	return u, nil
}

// required reports a required value that is empty: not written, or
// written as a placeholder (such as {env.SMTP_HOST}) that resolved to
// nothing, which the error then names.
func required(repl *caddy.Replacer, block, option, raw string) error {
	v, ok := value(repl, raw)
	switch {
	case !ok || v != "":
		return nil
	case raw == "":
		return &OptionError{Block: block, Option: option, Msg: "is required"}
	}
	return emptyPlaceholder(block, option, raw)
}

func emptyPlaceholder(block, option, raw string) *OptionError {
	return &OptionError{Block: block, Option: option, Msg: fmt.Sprintf("is required, but %s is empty (is the environment variable set?)", raw)}
}

// value resolves s with repl; with a nil repl it reports whether s can be
// judged as written, that is whether it holds no placeholder.
func value(repl *caddy.Replacer, s string) (string, bool) {
	if repl != nil {
		return repl.ReplaceKnown(s, ""), true
	}
	open := strings.IndexByte(s, '{')
	return s, open < 0 || !strings.Contains(s[open:], "}")
}

// CheckLogEmails checks the log_emails option: masked (the default) or full.
func CheckLogEmails(v string) error {
	switch v {
	case "", "masked", "full":
		return nil
	}
	return &OptionError{Option: "log_emails", Msg: fmt.Sprintf("%q: want masked or full", v)}
}

// Check reports the first value of the webhook that cannot work.
func (h *WebhookConfig) Check(repl *caddy.Replacer) error {
	block := "webhook " + h.URL
	if u, ok := value(repl, h.URL); ok {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			return &OptionError{Option: "webhook", Msg: fmt.Sprintf("%q: must be an http(s) URL", u)}
		}
	}
	if h.Secret == "" {
		return &OptionError{Block: block, Option: "secret", Msg: "is required (whsec_ and base64, e.g. whsec_$(openssl rand -base64 32))"}
	}
	if s, ok := value(repl, h.Secret); ok {
		if s == "" {
			return &OptionError{Block: block, Option: "secret", Msg: "is required, but " + h.Secret + " is empty"}
		}
		if _, err := handlers.ParseWebhookSecret(s); err != nil {
			return &OptionError{Block: block, Option: "secret", Msg: err.Error()}
		}
	}
	if len(h.Events) == 0 {
		return &OptionError{Block: block, Option: "events", Msg: "is required: name the events to send, like sign_in sign_out"}
	}
	for _, e := range h.Events {
		if e == handlers.WebhookSignIn || e == handlers.WebhookSignOut {
			continue
		}
		if err := handlers.CheckEventName(e); err != nil {
			return &OptionError{Block: block, Option: "events", Msg: err.Error() + " (or sign_in, sign_out)"}
		}
	}
	return nil
}
