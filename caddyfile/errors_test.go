package caddyfile

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// site is a minimal site block guarding workspace acme, appended to configs
// whose error is in the global options.
const site = `

:8080 {
	portal_auth acme
	respond "portal"
}
`

// adaptErrorCases must all fail to adapt. Line is the Caddyfile line the
// error must point at (Caddy appends ", at Caddyfile:LINE"); the Caddyfiles
// start on line 1 with no leading newline, so count from the backquote.
var adaptErrorCases = []struct {
	name      string
	caddyfile string
	want      []string // substrings of the error
	line      int
}{
	{
		name: "unknown language",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			languages en xx
		}
	}
}` + site,
		want: []string{"languages \"xx\": not a shipped language"},
		line: 5,
	},
	{
		name: "language twice",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			languages en de en
		}
	}
}` + site,
		want: []string{"languages en is listed twice"},
		line: 5,
	},
	{
		name: "accent not a color",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			brand {
				accent blue
			}
		}
	}
}` + site,
		want: []string{"brand: accent \"blue\": must be a CSS hex color"},
		line: 6,
	},
	{
		name: "support_url not http",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			brand {
				support_url ftp://acme.example
			}
		}
	}
}` + site,
		want: []string{"support_url \"ftp://acme.example\": must be an http or https URL"},
		line: 6,
	},
	{
		name: "logo not an image",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			brand {
				logo /etc/acme/logo.txt
			}
		}
	}
}` + site,
		want: []string{"must be a .png, .jpg, .gif, .webp or .svg file"},
		line: 6,
	},
	{
		name: "mail_from not an address",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			mail_from "Acme Support"
		}
	}
}` + site,
		want: []string{"mail_from"},
		line: 5,
	},
	{
		// a portal that only looks like it works: refused unless mail
		// log is asked for by name
		name: "no mail",
		caddyfile: `{
	admin off
	portal {
		storage_dir /srv/portalgate
		workspace acme
	}
}` + site,
		want: []string{"mail is required", "mail log"},
		line: 3,
	},
	{
		name: "sso_directory_match without sso",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			url https://support.acme.example
			sso_directory_match
		}
	}
}` + site,
		want: []string{"sso_directory_match needs an sso provider"},
		line: 6,
	},
	{
		name: "google without client_secret",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			url https://support.acme.example
			sso google {
				client_id x
			}
		}
	}
}` + site,
		want: []string{"sso google: client_secret is required"},
		line: 8,
	},
	{
		name: "oidc without client_secret",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			url https://support.acme.example
			sso corp {
				provider oidc
				issuer https://idp.example/
				client_id x
			}
		}
	}
}` + site,
		want: []string{"sso corp: client_secret is required (or public_client, for a client registered without one)"},
		line: 10,
	},
	{
		name: "public_client for microsoft",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			url https://support.acme.example
			sso microsoft {
				client_id x
				public_client
			}
		}
	}
}` + site,
		want: []string{"sso microsoft: public_client is for provider oidc"},
		line: 8,
	},
	{
		name: "smtp username without password",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			from support@acme.example
			username portal
		}
		workspace acme
	}
}` + site,
		want: []string{"mail smtp (line 3): password is required when username is set"},
		line: 7,
	},
	{
		name: "code_ttl too short",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			title "Acme Support"
			code_ttl 5s
		}
	}
}` + site,
		want: []string{"code_ttl 5s: must be between 30s and 24h"},
		line: 6,
	},
	{
		name: "unknown portal option",
		caddyfile: `{
	portal {
		storage_dir /srv/portalgate
		bogus 1
		workspace acme
	}
}` + site,
		want: []string{`unrecognized portal option "bogus"`},
		line: 4,
	},
	{
		name: "portal takes no arguments",
		caddyfile: `{
	portal acme {
		workspace acme
	}
}` + site,
		want: []string{"wrong argument count"},
		line: 2,
	},
	{
		name: "portal option twice",
		caddyfile: `{
	portal {
		mail log
		workspace acme
	}
	portal {
		workspace other
	}
}` + site,
		want: []string{"the portal global option may appear only once"},
		line: 6,
	},
	{
		name: "no workspace",
		caddyfile: `{
	portal {
		mail log
	}
}`,
		want: []string{"at least one workspace is required"},
		line: 4,
	},
	{
		name: "unknown workspace option",
		caddyfile: `{
	portal {
		workspace acme {
			title "Acme Support"
			colour blue
		}
	}
}` + site,
		want: []string{`unrecognized workspace option "colour"`},
		line: 5,
	},
	{
		name: "repeated workspace option",
		caddyfile: `{
	portal {
		workspace acme {
			code_ttl 10m
			session_ttl 12h
			code_ttl 5m
		}
	}
}` + site,
		want: []string{"workspace option code_ttl is set twice"},
		line: 6,
	},
	{
		name: "repeated portal option",
		caddyfile: `{
	portal {
		secret {env.PORTAL_SECRET}
		workspace acme
		secret {env.OTHER_SECRET}
	}
}` + site,
		want: []string{"secret is set twice"},
		line: 5,
	},
	{
		name: "storage_dir and storage together",
		caddyfile: `{
	portal {
		storage_dir /srv/a
		storage badger {
			dir /srv/b
		}
		workspace acme
	}
}` + site,
		want: []string{"storage is set twice"},
		line: 4,
	},
	{
		name: "mail twice",
		caddyfile: `{
	portal {
		mail log
		mail log
		workspace acme
	}
}` + site,
		want: []string{"mail is set twice"},
		line: 4,
	},
	{
		name: "repeated mail smtp option",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			from support@acme.example
			host smtp2.example.com
		}
		workspace acme
	}
}` + site,
		want: []string{"mail smtp: host is set twice"},
		line: 6,
	},
	{
		// The message names the line of `mail smtp`; Caddy's location is
		// the closing brace, where the parser notices.
		name: "mail smtp without from",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			port 587
		}
		workspace acme
	}
}` + site,
		want: []string{"mail smtp (line 3): from is required"},
		line: 6,
	},
	{
		name: "mail smtp without host",
		caddyfile: `{
	portal {
		workspace acme
		mail smtp {
			from "Acme Support <support@acme.example>"
		}
	}
}` + site,
		want: []string{"mail smtp (line 4): host is required"},
		line: 6,
	},
	{
		name: "mail smtp bad tls",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			from support@acme.example
			tls ssl
		}
		workspace acme
	}
}` + site,
		want: []string{`mail smtp: tls "ssl": want starttls, tls or none`},
		line: 6,
	},
	{
		name: "mail smtp port out of range",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			port 70000
			from support@acme.example
		}
		workspace acme
	}
}` + site,
		want: []string{`"70000": want a whole number from 1 to 65535`},
		line: 5,
	},
	{
		name: "mail smtp connections out of range",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			from support@acme.example
			connections 0
		}
		workspace acme
	}
}` + site,
		want: []string{`connections "0": want a whole number from 1 to 64`},
		line: 6,
	},
	{
		name: "mail smtp connections not a number",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			connections many
			from support@acme.example
		}
		workspace acme
	}
}` + site,
		want: []string{`connections "many": want a whole number from 1 to 64`},
		line: 5,
	},
	{
		name: "mail smtp bad idle_timeout",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			from support@acme.example
			idle_timeout -30s
		}
		workspace acme
	}
}` + site,
		want: []string{`idle_timeout "-30s": want a positive duration`},
		line: 6,
	},
	{
		name: "mail smtp connections twice",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			from support@acme.example
			connections 2
			connections 4
		}
		workspace acme
	}
}` + site,
		want: []string{"mail smtp: connections is set twice"},
		line: 7,
	},
	{
		name: "mail smtp port not a number",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			from support@acme.example
			port submission
		}
		workspace acme
	}
}` + site,
		want: []string{`"submission": want a whole number from 1 to 65535`},
		line: 6,
	},
	{
		name: "bad port error names the option",
		caddyfile: `{
	portal {
		mail smtp {
			host smtp.example.com
			port 70000
			from support@acme.example
		}
		workspace acme
	}
}` + site,
		want: []string{`port "70000": want a whole number from 1 to 65535`},
		line: 5,
	},
	{
		name: "unknown mailer",
		caddyfile: `{
	portal {
		mail sendgrid
		workspace acme
	}
}` + site,
		want: []string{`unknown mailer "sendgrid" (want smtp or log)`},
		line: 3,
	},
	{
		name: "mail log takes no block",
		caddyfile: `{
	portal {
		mail log {
			level debug
		}
		workspace acme
	}
}` + site,
		want: []string{"mail log takes no options"},
		line: 4,
	},
	{
		name: "bad duration",
		caddyfile: `{
	portal {
		workspace acme {
			title "Acme Support"
			code_ttl soon
		}
	}
}` + site,
		want: []string{`code_ttl "soon": want a positive duration`},
		line: 5,
	},
	{
		name: "negative duration",
		caddyfile: `{
	portal {
		workspace acme {
			session_ttl -1h
		}
	}
}` + site,
		want: []string{`session_ttl "-1h": want a positive duration`},
		line: 4,
	},
	{
		name: "bad auth_path",
		caddyfile: `{
	portal {
		workspace acme {
			auth_path _portal/
		}
	}
}` + site,
		want: []string{`auth_path "_portal/": must be a path like /_portal`},
		line: 4,
	},
	{
		name: "workspace name with uppercase",
		caddyfile: `{
	portal {
		storage_dir /srv/portalgate
		workspace Acme {
			title "Acme Support"
		}
	}
}` + site,
		want: []string{`workspace name "Acme"`, "lowercase"},
		line: 4,
	},
	{
		name: "workspace without a name",
		caddyfile: `{
	portal {
		workspace {
			title "Acme Support"
		}
	}
}`,
		want: []string{"wrong argument count"},
		line: 3,
	},
	{
		name: "duplicate workspace",
		caddyfile: `{
	portal {
		workspace acme {
			title "Acme Support"
		}
		workspace acme {
			title "Acme again"
		}
	}
}` + site,
		want: []string{"workspace acme is defined twice"},
		line: 6,
	},
	{
		name: "short literal secret",
		caddyfile: `{
	portal {
		secret hunter2
		workspace acme
	}
}` + site,
		want: []string{"secret must be at least 32 characters", "{env.PORTAL_SECRET}"},
		line: 3,
	},
	{
		name: "unknown storage backend",
		caddyfile: `{
	portal {
		storage etcd {
			address etcd.internal:2379
		}
		workspace acme
	}
}` + site,
		want: []string{`unknown storage backend "etcd"`, "available: badger, redis"},
		line: 3,
	},
	{
		name: "storage redis without address",
		caddyfile: `{
	portal {
		storage redis {
			password secret
		}
		workspace acme
	}
}` + site,
		want: []string{"storage redis: address is required"},
		line: 5,
	},
	{
		name: "storage redis bad db",
		caddyfile: `{
	portal {
		storage redis {
			address 127.0.0.1:6379
			db x
		}
		workspace acme
	}
}` + site,
		want: []string{`db "x"`},
		line: 5,
	},
	{
		name: "storage redis cache_records 0",
		caddyfile: `{
	portal {
		storage redis {
			address 127.0.0.1:6379
			cache_records 0
		}
		workspace acme
	}
}` + site,
		want: []string{`cache_records "0"`, "at least 1"},
		line: 5,
	},
	{
		name: "storage redis cache_records not a number",
		caddyfile: `{
	portal {
		storage redis {
			address 127.0.0.1:6379
			cache_records lots
		}
		workspace acme
	}
}` + site,
		want: []string{`cache_records "lots"`},
		line: 5,
	},
	{
		name: "storage redis unknown option",
		caddyfile: `{
	portal {
		storage redis {
			address 127.0.0.1:6379
			cluster yes
		}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized storage redis option "cluster"`},
		line: 5,
	},
	{
		name: "unknown storage badger option",
		caddyfile: `{
	portal {
		storage badger {
			dir /srv/portalgate
			sync_writes
		}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized storage badger option "sync_writes"`},
		line: 5,
	},
	{
		name: "bad audit_retention",
		caddyfile: `{
	portal {
		storage badger {
			audit_retention forever
		}
		workspace acme
	}
}` + site,
		want: []string{`audit_retention "forever": want a positive duration`},
		line: 4,
	},
	{
		name: "bad badger compression",
		caddyfile: `{
	portal {
		storage badger {
			compression gzip
		}
		workspace acme
	}
}` + site,
		want: []string{`compression "gzip": want none, snappy or zstd`},
		line: 4,
	},
	{
		name: "repeated storage badger option",
		caddyfile: `{
	portal {
		storage badger {
			dir /srv/a
			dir /srv/b
		}
		workspace acme
	}
}` + site,
		want: []string{"dir is set twice"},
		line: 5,
	},
	{
		name: "unknown limits option",
		caddyfile: `{
	portal {
		limits {
			sends_per_ip 10
			codes_per_hour 3
		}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized limits option "codes_per_hour"`},
		line: 5,
	},
	{
		name: "limits zero",
		caddyfile: `{
	portal {
		limits {
			tries_per_ip 0
		}
		workspace acme
	}
}` + site,
		want: []string{`"0": want a whole number from 1 to 1000000`},
		line: 4,
	},
	{
		name: "repeated limits option",
		caddyfile: `{
	portal {
		limits {
			sends_per_ip 10
			sends_per_ip 20
		}
		workspace acme
	}
}` + site,
		want: []string{"sends_per_ip is set twice"},
		line: 5,
	},
	{
		name: "log_emails unknown",
		caddyfile: `{
	portal {
		mail log
		log_emails partly
		workspace acme
	}
}` + site,
		want: []string{`log_emails "partly": want masked or full`},
		line: 4,
	},
	{
		name: "trust_unverified_email on google",
		caddyfile: `{
	portal {
		mail log
		workspace acme {
			url https://support.acme.example
			sso google {
				client_id x
				client_secret y
				trust_unverified_email
			}
		}
	}
}` + site,
		want: []string{"trust_unverified_email is for provider oidc"},
		line: 9,
	},
	{
		name: "outbox_workers out of range",
		caddyfile: `{
	portal {
		outbox_workers 0
		workspace acme
	}
}` + site,
		want: []string{`"0": want a whole number from 1 to 64`},
		line: 3,
	},
	{
		name: "sso unknown provider",
		caddyfile: `{
	portal {
		workspace acme {
			url https://support.acme.example
			sso corp {
				provider saml
				client_id x
			}
		}
	}
}` + site,
		want: []string{`provider "saml"`},
		line: 6,
	},
	{
		name: "sso without client_id",
		caddyfile: `{
	portal {
		workspace acme {
			url https://support.acme.example
			sso google {
				client_secret s
			}
		}
	}
}` + site,
		want: []string{"sso google: client_id is required"},
		line: 7,
	},
	{
		name: "sso custom name without provider",
		caddyfile: `{
	portal {
		workspace acme {
			url https://support.acme.example
			sso corp {
				issuer https://idp.example/
				client_id x
			}
		}
	}
}` + site,
		want: []string{"sso corp: provider is required"},
		line: 8,
	},
	{
		name: "sso defined twice",
		caddyfile: `{
	portal {
		workspace acme {
			url https://support.acme.example
			sso google {
				client_id a
				client_secret s
			}
			sso google {
				client_id b
				client_secret s
			}
		}
	}
}` + site,
		want: []string{"sso google is defined twice"},
		line: 12,
	},
	{
		name: "sso unknown option",
		caddyfile: `{
	portal {
		workspace acme {
			sso google {
				client_id a
				realm x
			}
		}
	}
}` + site,
		want: []string{`unrecognized sso option "realm"`},
		line: 6,
	},
	{
		name: "misspelled workspace option",
		caddyfile: `{
	portal {
		workspace acme {
			code_ttl 10m
			resend_cooldwn 30s
		}
	}
}` + site,
		want: []string{`unrecognized workspace option "resend_cooldwn"; did you mean resend_cooldown?`},
		line: 5,
	},
	{
		name: "misspelled portal option",
		caddyfile: `{
	portal {
		secert {env.PORTAL_SECRET}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized portal option "secert"; did you mean secret?`},
		line: 3,
	},
	{
		name: "misspelled mail smtp option",
		caddyfile: `{
	portal {
		mail smtp {
			hots smtp.example.com
		}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized mail smtp option "hots"; did you mean host?`},
		line: 4,
	},
	{
		name: "misspelled limits option",
		caddyfile: `{
	portal {
		limits {
			sends_per_mail 3
		}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized limits option "sends_per_mail"; did you mean sends_per_email?`},
		line: 4,
	},
	{
		name: "misspelled sso option",
		caddyfile: `{
	portal {
		workspace acme {
			url https://support.acme.example
			sso google {
				clientid x
			}
		}
	}
}` + site,
		want: []string{`unrecognized sso option "clientid"; did you mean client_id?`},
		line: 6,
	},
	{
		name: "misspelled storage badger option",
		caddyfile: `{
	portal {
		storage badger {
			audit_retension 30d
		}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized storage badger option "audit_retension"; did you mean audit_retention?`},
		line: 4,
	},
	{
		name: "misspelled storage redis option",
		caddyfile: `{
	portal {
		storage redis {
			adress 127.0.0.1:6379
		}
		workspace acme
	}
}` + site,
		want: []string{`unrecognized storage redis option "adress"; did you mean address?`},
		line: 4,
	},
	{
		name: "misspelled storage backend",
		caddyfile: `{
	portal {
		storage bagder {
			dir /srv/portalgate
		}
		workspace acme
	}
}` + site,
		want: []string{`unknown storage backend "bagder" (available: badger, redis); did you mean badger?`},
		line: 3,
	},
	{
		name: "no suggestion for an unrelated word",
		caddyfile: `{
	portal {
		workspace acme {
			colour blue
		}
	}
}` + site,
		want: []string{`unrecognized workspace option "colour", at`},
		line: 4,
	},
	{
		name: "portal_auth unknown workspace",
		caddyfile: `{
	portal {
		mail log
		workspace acme
	}
}

support.acme.example {
	portal_auth globex
	reverse_proxy 127.0.0.1:8080
}
`,
		want: []string{"portal_auth", `unknown workspace "globex"`},
		line: 9,
	},
	{
		name: "portal_auth without the portal option",
		caddyfile: `support.acme.example {
	reverse_proxy 127.0.0.1:8080
	portal_auth acme
}
`,
		want: []string{"portal_auth acme: no portal global option configures workspaces"},
		line: 3,
	},
	{
		name: "portal_auth with two arguments",
		caddyfile: `{
	portal {
		mail log
		workspace acme
		workspace globex
	}
}

support.acme.example {
	portal_auth acme globex
	reverse_proxy 127.0.0.1:8080
}
`,
		want: []string{"portal_auth", "wrong argument count"},
		line: 10,
	},
	{
		name: "portal_auth without argument",
		caddyfile: `{
	portal {
		mail log
		workspace acme
	}
}

support.acme.example {
	reverse_proxy 127.0.0.1:8080
	portal_auth
}
`,
		want: []string{"portal_auth", "wrong argument count"},
		line: 10,
	},
	{
		name: "portal_auth with a block",
		caddyfile: `{
	portal {
		mail log
		workspace acme
	}
}

support.acme.example {
	portal_auth acme {
		workspace acme
	}
	reverse_proxy 127.0.0.1:8080
}
`,
		want: []string{"portal_auth takes no block"},
		line: 10,
	},
}

func TestAdaptErrors(t *testing.T) {
	for _, tc := range adaptErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := adapt(t, tc.caddyfile)
			if err == nil {
				t.Fatalf("adapting succeeded, want an error containing %q; got:\n%s", tc.want, out)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain %q:\n%s", w, msg)
				}
			}
			if got := errorLine(msg); got != tc.line {
				t.Errorf("error points at line %d, want Caddyfile:%d:\n%s", got, tc.line, msg)
			}
		})
	}
}

// locationPattern finds Caddy's location suffix; the last one is the
// innermost (directive errors get wrapped once more by the adapter).
var locationPattern = regexp.MustCompile(`Caddyfile:(\d+)\b`)

// errorLine returns the line of the last "Caddyfile:N" in msg, or 0.
func errorLine(msg string) int {
	m := locationPattern.FindAllStringSubmatch(msg, -1)
	if len(m) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}
