package module

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

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
	"sends_per_email":     {1, 1_000_000},
	"sends_per_ip":        {1, 1_000_000},
	"sends_per_workspace": {1, 1_000_000},
	"requests_per_ip":     {1, 1_000_000},
	"tries_per_ip":        {1, 1_000_000},
	"tries_per_contact":   {1, 1_000_000},
	"ipv4_prefix":         {8, 32},
	"ipv6_prefix":         {32, 128},
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
	if secret != "" && ok && len(s) < 32 {
		return &OptionError{Block: "secret", Msg: "must be at least 32 characters (or leave it out to have one generated and kept in storage)"}
	}
	return nil
}

// Check reports the first value of the mail config that cannot work.
func (mc *MailConfig) Check(repl *caddy.Replacer) error {
	switch mc.Mailer {
	case "log":
		return nil
	case "smtp":
	default:
		return &OptionError{Block: "mail", Msg: fmt.Sprintf("unknown mailer %q (want smtp or log)", mc.Mailer)}
	}
	const block = "mail smtp"
	if host, ok := value(repl, mc.Host); ok && host == "" {
		return &OptionError{Block: block, Option: "host", Msg: "is required"}
	}
	if from, ok := value(repl, mc.From); ok && from == "" {
		return &OptionError{Block: block, Option: "from", Msg: "is required"}
	}
	switch mc.TLS {
	case "", "starttls", "tls", "none":
	default:
		return &OptionError{Block: block, Option: "tls", Msg: fmt.Sprintf("%q: want starttls, tls or none", mc.TLS)}
	}
	if mc.Port != 0 {
		return checkWholeNumber(block, "port", mc.Port)
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
	if id, ok := value(repl, sc.ClientID); ok && id == "" {
		return &OptionError{Block: block, Option: "client_id", Msg: "is required"}
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
// providers, that cannot work. Provision checks more, on the effective
// values with defaults filled in: the lifetimes and the url's shape.
func (wc *WorkspaceConfig) Check(repl *caddy.Replacer) error {
	if p := wc.AuthPath; p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "?#%\\ ")) {
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
	if u, ok := value(repl, wc.URL); len(wc.SSO) > 0 && ok && u == "" {
		return &OptionError{Option: "sso", Msg: "needs the workspace url, to build the callback address"}
	}
	return nil
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
