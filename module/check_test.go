package module

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestChecksSkipPlaceholdersWithoutReplacer: the adapter calls the checks
// with a nil replacer, before placeholders can be resolved; Provision calls
// them with one, and then the resolved value counts.
func TestChecksSkipPlaceholdersWithoutReplacer(t *testing.T) {
	t.Setenv("PORTALGATE_CHECK_SHORT", "hunter2")
	repl := caddy.NewReplacer()
	for _, tc := range []struct {
		name  string
		check func(*caddy.Replacer) error
		want  string // error with a replacer; none without
	}{
		{"secret", func(r *caddy.Replacer) error { return CheckSecret("{env.PORTALGATE_CHECK_SHORT}", r) }, "secret: must be at least 32 characters"},
		{"smtp host", func(r *caddy.Replacer) error {
			return (&MailConfig{Mailer: "smtp", Host: "{env.PORTALGATE_CHECK_UNSET}", From: "a@b.example"}).Check(r)
		}, "mail smtp: host is required"},
		{"sso client_id", func(r *caddy.Replacer) error {
			return (&SSOConfig{Name: "google", ClientID: "{env.PORTALGATE_CHECK_UNSET}", ClientSecret: "s"}).Check(r)
		}, "sso google: client_id is required, but {env.PORTALGATE_CHECK_UNSET} is empty"},
		{"sso client_secret", func(r *caddy.Replacer) error {
			return (&SSOConfig{Name: "microsoft", ClientID: "x", ClientSecret: "{env.PORTALGATE_CHECK_UNSET}"}).Check(r)
		}, "sso microsoft: client_secret is required, but {env.PORTALGATE_CHECK_UNSET} is empty"},
		{"smtp password", func(r *caddy.Replacer) error {
			return (&MailConfig{Mailer: "smtp", Host: "h", From: "a@b.example", Username: "u", Password: "{env.PORTALGATE_CHECK_UNSET}"}).Check(r)
		}, "mail smtp: password is required, but {env.PORTALGATE_CHECK_UNSET} is empty (is the environment variable set?) when username is set"},
		{"secret unset", func(r *caddy.Replacer) error { return CheckSecret("{env.PORTALGATE_CHECK_UNSET}", r) }, "secret: {env.PORTALGATE_CHECK_UNSET} is empty"},
		{"oidc issuer", func(r *caddy.Replacer) error {
			return (&SSOConfig{Name: "corp", Provider: "oidc", Issuer: "{env.PORTALGATE_CHECK_SHORT}", ClientID: "x", ClientSecret: "s"}).Check(r)
		}, `sso corp: issuer "hunter2" must be an http(s) URL`},
		{"sso url", func(r *caddy.Replacer) error {
			return (&WorkspaceConfig{URL: "{env.PORTALGATE_CHECK_UNSET}", SSO: []*SSOConfig{{Name: "google", ClientID: "x", ClientSecret: "s"}}}).Check(r)
		}, "url is required, but {env.PORTALGATE_CHECK_UNSET} is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.check(nil); err != nil {
				t.Errorf("without a replacer: %v; a placeholder must be skipped", err)
			}
			err := tc.check(repl)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("with a replacer: %v, want %q", err, tc.want)
			}
		})
	}
}

// TestOptionErrorNamesTheOption: the adapter reports a check's error at the
// line of the option the error names.
func TestOptionErrorNamesTheOption(t *testing.T) {
	for _, tc := range []struct {
		err           error
		block, option string
		msg           string
	}{
		{(&MailConfig{Mailer: "smtp", Host: "h", From: "f", TLS: "ssl"}).Check(nil), "mail smtp", "tls", `mail smtp: tls "ssl": want starttls, tls or none`},
		{(&MailConfig{Mailer: "smtp", Host: "h", From: "f", Port: 70000}).Check(nil), "mail smtp", "port", `mail smtp: port "70000": want a whole number from 1 to 65535`},
		{(&MailConfig{Mailer: "smtp", Host: "h"}).Check(nil), "mail smtp", "from", "mail smtp: from is required"},
		{(&MailConfig{Mailer: "smtp", Host: "h", From: "f", Connections: 65}).Check(nil), "mail smtp", "connections", `mail smtp: connections "65": want a whole number from 1 to 64`},
		{(&MailConfig{Mailer: "smtp", Host: "h", From: "f", IdleTimeout: -1}).Check(nil), "mail smtp", "idle_timeout", "mail smtp: idle_timeout must not be negative"},
		{(&MailConfig{Mailer: "sendgrid"}).Check(nil), "mail", "", `mail: unknown mailer "sendgrid" (want smtp or log)`},
		{(&LimitsConfig{TriesPerIP: -1}).Check(), "limits", "tries_per_ip", `limits: tries_per_ip "-1": want a whole number from 1 to 1000000`},
		{(&SSOConfig{Name: "corp", ClientID: "x"}).Check(nil), "sso corp", "provider", "sso corp: provider is required (google, microsoft or oidc)"},
		{(&SSOConfig{Name: "corp", Provider: "saml", ClientID: "x"}).Check(nil), "sso corp", "provider", `sso corp: provider "saml": want google, microsoft or oidc`},
		{(&SSOConfig{Name: "corp", Provider: "oidc", ClientID: "x"}).Check(nil), "sso corp", "issuer", "sso corp: issuer is required for provider oidc"},
		{(&SSOConfig{Name: "google", ClientID: "x", Tenant: "common"}).Check(nil), "sso google", "tenant", "sso google: tenant is for provider microsoft"},
		{(&WorkspaceConfig{AuthPath: "/_portal/"}).Check(nil), "", "auth_path", `auth_path "/_portal/": must be a path like /_portal`},
		{(&WorkspaceConfig{URL: "https://x.example", SSO: []*SSOConfig{{Name: "google", ClientID: "a", ClientSecret: "s"}, {Name: "google", ClientID: "b", ClientSecret: "s"}}}).Check(nil), "", "sso google", "sso google is defined twice"},
		{CheckName("workspace", "Acme"), "", "workspace name", `workspace name "Acme": use lowercase letters`},
		{(*MailConfig)(nil).Check(nil), "", "mail", "mail is required: mail smtp { host … from … }, or mail log"},
		{(&MailConfig{Mailer: "smtp", Host: "h", From: "f", Username: "u"}).Check(nil), "mail smtp", "password", "mail smtp: password is required when username is set"},
		{(&SSOConfig{Name: "google", ClientID: "x"}).Check(nil), "sso google", "client_secret", "sso google: client_secret is required"},
		{(&SSOConfig{Name: "microsoft", ClientID: "x", PublicClient: true}).Check(nil), "sso microsoft", "public_client", "sso microsoft: public_client is for provider oidc"},
		{(&SSOConfig{Name: "corp", Provider: "oidc", Issuer: "https://idp.example", ClientID: "x"}).Check(nil), "sso corp", "client_secret", "sso corp: client_secret is required (or public_client"},
		{(&WorkspaceConfig{SSODirectoryMatch: true}).Check(nil), "", "sso_directory_match", "sso_directory_match needs an sso provider"},
		{(&WorkspaceConfig{CodeTTL: caddy.Duration(5 * time.Second)}).Check(nil), "", "code_ttl", "code_ttl 5s: must be between 30s and 24h"},
		{(&WorkspaceConfig{URL: "ftp://x"}).Check(nil), "", "url", `url "ftp://x": must be an absolute http(s) URL`},
	} {
		var oe *OptionError
		if !errors.As(tc.err, &oe) {
			t.Errorf("%v: not an *OptionError, want %q", tc.err, tc.msg)
			continue
		}
		if oe.Block != tc.block || oe.Option != tc.option || !strings.HasPrefix(oe.Error(), tc.msg) {
			t.Errorf("got block %q option %q: %v; want block %q option %q: %s", oe.Block, oe.Option, oe, tc.block, tc.option, tc.msg)
		}
	}
}

func TestParseWholeNumber(t *testing.T) {
	if n, err := ParseWholeNumber("port", "587"); n != 587 || err != nil {
		t.Errorf("port 587: %d, %v", n, err)
	}
	for _, tc := range []struct{ option, s, want string }{
		{"port", "0", `port "0": want a whole number from 1 to 65535`},
		{"port", "submission", `port "submission": want a whole number from 1 to 65535`},
		{"outbox_workers", "65", `outbox_workers "65": want a whole number from 1 to 64`},
		{"sends_per_ip", "0", `sends_per_ip "0": want a whole number from 1 to 1000000`},
	} {
		if _, err := ParseWholeNumber(tc.option, tc.s); err == nil || err.Error() != tc.want {
			t.Errorf("%s %s: %v, want %q", tc.option, tc.s, err, tc.want)
		}
	}
}

// TestProvisionChecksJSON: a JSON config never goes through the adapter,
// so Provision runs every check itself.
func TestProvisionChecksJSON(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		app  string // fields of the portal app besides storage
		want string
	}{
		{"no workspace", `"mail": {"mailer": "log"}`, "at least one workspace is required"},
		{"no mail", `"workspaces": {"acme": {}}`, "mail is required"},
		{"sso_directory_match without sso", `"mail": {"mailer": "log"}, "workspaces": {"acme": {"sso_directory_match": true}}`, "workspace acme: sso_directory_match needs an sso provider"},
		{"google without client_secret", `"mail": {"mailer": "log"}, "workspaces": {"acme": {"url": "https://x.example", "sso": [{"name": "google", "client_id": "a"}]}}`, "workspace acme: sso google: client_secret is required"},
		{"workspace name", `"mail": {"mailer": "log"}, "workspaces": {"Acme": {}}`, `workspace name "Acme"`},
		{"secret", `"secret": "hunter2", "workspaces": {"acme": {}}`, "secret: must be at least 32 characters"},
		{"outbox_workers", `"outbox_workers": 100, "workspaces": {"acme": {}}`, `outbox_workers "100": want a whole number from 1 to 64`},
		{"limits", `"limits": {"sends_per_ip": -3}, "workspaces": {"acme": {}}`, `limits: sends_per_ip "-3"`},
		{"mailer", `"mail": {"mailer": "sendgrid"}, "workspaces": {"acme": {}}`, `mail: unknown mailer "sendgrid"`},
		{"smtp port", `"mail": {"mailer": "smtp", "host": "h", "from": "f@x.example", "port": 70000}, "workspaces": {"acme": {}}`, `mail smtp: port "70000"`},
		{"smtp tls", `"mail": {"mailer": "smtp", "host": "h", "from": "f@x.example", "tls": "ssl"}, "workspaces": {"acme": {}}`, `mail smtp: tls "ssl"`},
		{"auth_path", `"mail": {"mailer": "log"}, "workspaces": {"acme": {"auth_path": "/a b"}}`, `workspace acme: auth_path "/a b": must be a path like /_portal`},
		{"sso twice", `"mail": {"mailer": "log"}, "workspaces": {"acme": {"url": "https://x.example", "sso": [{"name": "google", "client_id": "a", "client_secret": "s"}, {"name": "google", "client_id": "b", "client_secret": "s"}]}}`, "workspace acme: sso google is defined twice"},
		{"sso without url", `"mail": {"mailer": "log"}, "workspaces": {"acme": {"sso": [{"name": "google", "client_id": "a", "client_secret": "s"}]}}`, "workspace acme: sso needs the workspace url"},
		{"code_ttl", `"mail": {"mailer": "log"}, "workspaces": {"acme": {"code_ttl": 1000000000}}`, "workspace acme: code_ttl 1s: must be between 30s and 24h"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := `{"apps": {"portal": {"storage": {"backend": "badger", "dir": ` + quote(dir) + `}, ` + tc.app + `}}}`
			var cfg *caddy.Config
			if err := caddy.StrictUnmarshalJSON([]byte(js), &cfg); err != nil {
				t.Fatalf("%v\n%s", err, js)
			}
			err := caddy.Validate(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("validate: %v, want %q", err, tc.want)
			}
		})
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestPublicOIDCClientNeedsNoSecret: a generic OpenID Connect client
// registered without a secret says so with public_client.
func TestPublicOIDCClientNeedsNoSecret(t *testing.T) {
	sc := &SSOConfig{Name: "corp", Provider: "oidc", Issuer: "https://idp.example/", ClientID: "x", PublicClient: true}
	if err := sc.Check(caddy.NewReplacer()); err != nil {
		t.Errorf("public oidc client: %v", err)
	}
}

// TestSCIMCheck: tokens are required and long, with placeholders judged
// once replaced.
func TestSCIMCheck(t *testing.T) {
	t.Setenv("PORTALGATE_SCIM_SHORT", "short")
	long := strings.Repeat("x", 32)
	repl := caddy.NewReplacer()
	for _, tc := range []struct {
		sc   SCIMConfig
		repl *caddy.Replacer
		want string
	}{
		{SCIMConfig{}, nil, "scim: token is required"},
		{SCIMConfig{Tokens: []string{"short"}}, nil, "scim: token must be at least 32 characters"},
		{SCIMConfig{Tokens: []string{long, "short"}}, nil, "scim: token must be at least 32 characters (token 2)"},
		{SCIMConfig{Tokens: []string{"{env.PORTALGATE_SCIM_SHORT}"}}, nil, ""},
		{SCIMConfig{Tokens: []string{"{env.PORTALGATE_SCIM_SHORT}"}}, repl, "scim: token must be at least 32 characters"},
		{SCIMConfig{Tokens: []string{"{env.PORTALGATE_SCIM_UNSET}"}}, repl, "scim: token is required, but {env.PORTALGATE_SCIM_UNSET} is empty"},
		{SCIMConfig{Tokens: []string{long}, RequestsPerMinute: -1}, nil, `scim: requests_per_minute "-1"`},
		{SCIMConfig{Tokens: []string{long}, Groups: []string{"Portal Users"}}, nil, ""},
	} {
		err := tc.sc.Check(tc.repl)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.sc, err, tc.want)
		}
	}
}
