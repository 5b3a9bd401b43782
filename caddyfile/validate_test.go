package caddyfile

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/storage/badgerstore"
)

// isolate keeps Caddy's data and config directories (certificate storage,
// the default portalgate directory) inside the test's temp dir.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
}

// validate adapts a Caddyfile and runs what `caddy validate` runs on the
// result: strict unmarshal, then caddy.Validate, which provisions every
// module without starting the apps.
func validate(t *testing.T, caddyfile string) error {
	t.Helper()
	out, err := adapt(t, caddyfile)
	if err != nil {
		t.Fatalf("adapting:\n%s\n%v", caddyfile, err)
	}
	return validateJSON(t, out)
}

func validateJSON(t *testing.T, js []byte) error {
	t.Helper()
	var cfg *caddy.Config
	if err := caddy.StrictUnmarshalJSON(js, &cfg); err != nil {
		t.Fatalf("unmarshaling adapted config: %v\n%s", err, js)
	}
	return caddy.Validate(cfg)
}

// assertEmpty fails if anything was created in dir: validation must not
// open (and so create) the Badger database.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("validation created %v in the storage directory %s; it must not open the database", names, dir)
	}
}

func portalCaddyfile(storageDir, workspaceBody string) string {
	return `{
	portal {
		storage_dir ` + storageDir + `
		mail log
		workspace acme {
` + workspaceBody + `
		}
	}
}

:8080 {
	reverse_proxy 127.0.0.1:9
	portal_auth acme
}
`
}

const goodWorkspace = `			title "Acme Support"
			url https://support.acme.example
			contacts_file testdata/contacts.json
			code_ttl 10m
			resend_cooldown 30s`

func TestValidateDoesNotOpenStorage(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	if err := validate(t, portalCaddyfile(dir, goodWorkspace)); err != nil {
		t.Fatalf("validate: %v", err)
	}
	assertEmpty(t, dir)
}

func TestValidateDefaultStorageDirUntouched(t *testing.T) {
	isolate(t)
	cf := `{
	portal {
		mail log
		workspace acme
	}
}

:8080 {
	portal_auth acme
	respond "portal"
}
`
	if err := validate(t, cf); err != nil {
		t.Fatalf("validate: %v", err)
	}
	def := filepath.Join(caddy.AppDataDir(), "portalgate")
	if _, err := os.Stat(def); !os.IsNotExist(err) {
		t.Errorf("validation touched the default storage directory %s (stat: %v)", def, err)
	}
}

// TestValidateWhileServerHoldsLock is `caddy validate` next to a running
// server: another handle holds the Badger directory lock.
func TestValidateWhileServerHoldsLock(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	store, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatalf("opening the database as the running server would: %v", err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			t.Errorf("closing the server's handle: %v", err)
		}
	}()

	for i := range 2 { // twice: a second validate must not trip over the first
		if err := validate(t, portalCaddyfile(dir, goodWorkspace)); err != nil {
			t.Fatalf("validate %d while the database is open elsewhere: %v", i+1, err)
		}
	}

	// Validation neither closed the server's handle nor imported the
	// contacts file (that is Start's job).
	cs, err := store.Contacts(context.Background(), "acme")
	if err != nil {
		t.Fatalf("the server's handle no longer works after validate: %v", err)
	}
	if len(cs) != 0 {
		t.Errorf("validate imported %d contacts; only Start may write to storage", len(cs))
	}
}

// TestAdaptChecksLifetimesAndURL: the checks on the effective lifetimes
// and on the url's shape fail caddy adapt at the option's line, and the
// same workspace in a JSON config (which no adapter sees) fails Provision.
func TestAdaptChecksLifetimesAndURL(t *testing.T) {
	for _, tc := range []struct {
		name      string
		workspace string // body of workspace acme, from line 5
		json      string // the same workspace in JSON
		want      string
		line      int
	}{
		{"resend_cooldown longer than code_ttl", "\t\t\tcode_ttl 2m\n\t\t\tresend_cooldown 5m",
			`{"code_ttl": 120000000000, "resend_cooldown": 300000000000}`, "resend_cooldown 5m0s: must not be longer than code_ttl 2m0s", 6},
		{"resend_cooldown longer than default code_ttl", "\t\t\tresend_cooldown 11m",
			`{"resend_cooldown": 660000000000}`, "resend_cooldown 11m0s: must not be longer than code_ttl 10m0s", 5},
		{"url with ftp scheme", "\t\t\turl ftp://x", `{"url": "ftp://x"}`, `url "ftp://x": must be an absolute http(s) URL`, 5},
		{"url without host", "\t\t\ttitle Acme\n\t\t\turl /support", `{"url": "/support"}`, `url "/support"`, 6},
		{"url with query", "\t\t\turl https://support.acme.example/?next=x", `{"url": "https://support.acme.example/?next=x"}`, `url "https://support.acme.example/?next=x"`, 5},
		{"code_ttl too short", "\t\t\tcode_ttl 5s\n\t\t\tresend_cooldown 1s", `{"code_ttl": 5000000000, "resend_cooldown": 1000000000}`, "code_ttl 5s: must be between 30s and 24h", 5},
		{"code_ttl too long", "\t\t\tresend_cooldown 30s\n\t\t\tcode_ttl 2d", `{"code_ttl": 172800000000000}`, "code_ttl 48h0m0s: must be between 30s and 24h", 6},
		{"session_ttl too short", "\t\t\tsession_ttl 30s", `{"session_ttl": 30000000000}`, "session_ttl 30s: must be at least 1m", 5},
		{"link_ttl longer than link_max_ttl", "\t\t\tlink_max_ttl 7d\n\t\t\tlink_ttl 10d", `{"link_ttl": 864000000000000, "link_max_ttl": 604800000000000}`,
			"link_ttl 240h0m0s: must not be longer than link_max_ttl 168h0m0s", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := "{\n\tportal {\n\t\tmail log\n\t\tworkspace acme {\n" + tc.workspace + "\n\t\t}\n\t}\n}" + site
			out, err := adapt(t, cf)
			if err == nil {
				t.Fatalf("adapting succeeded, want %q at line %d:\n%s", tc.want, tc.line, out)
			}
			if !strings.Contains(err.Error(), tc.want) || errorLine(err.Error()) != tc.line {
				t.Errorf("adapt: %v\nwant %q at Caddyfile:%d", err, tc.want, tc.line)
			}

			isolate(t)
			dir := t.TempDir()
			js := `{"apps": {"portal": {"storage": {"backend": "badger", "dir": ` + strconv.Quote(dir) + `}, "mail": {"mailer": "log"}, "workspaces": {"acme": ` + tc.json + `}}}}`
			if err := validateJSON(t, []byte(js)); err == nil || !strings.Contains(err.Error(), "workspace acme: "+tc.want) {
				t.Errorf("validate JSON: %v, want %q", err, "workspace acme: "+tc.want)
			}
			assertEmpty(t, dir)
		})
	}
}

// TestValidateCatchesWhatAdaptCannot: each config adapts fine (the values
// come from placeholders, or are files, which caddy adapt does not read)
// and fails in Provision.
func TestValidateCatchesWhatAdaptCannot(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		workspace string // body of workspace acme
		portal    string // extra portal options
		want      []string
	}{
		{
			name:      "url from environment",
			env:       map[string]string{"PORTALGATE_TEST_URL": "javascript:alert(1)"},
			workspace: "\t\t\turl {env.PORTALGATE_TEST_URL}",
			want:      []string{"workspace acme", `url "javascript:alert(1)"`},
		},
		{
			name:      "url from unset environment variable",
			workspace: "\t\t\turl {env.PORTALGATE_TEST_UNSET_URL}",
			want:      []string{"workspace acme", "url is required, but {env.PORTALGATE_TEST_UNSET_URL} is empty"},
		},
		{
			name:      "sso client_secret from unset environment variable",
			workspace: "\t\t\turl https://support.acme.example\n\t\t\tsso google {\n\t\t\t\tclient_id x\n\t\t\t\tclient_secret {env.PORTALGATE_TEST_NOPE}\n\t\t\t}",
			want:      []string{"workspace acme", "sso google: client_secret is required, but {env.PORTALGATE_TEST_NOPE} is empty"},
		},
		{
			name:      "sso client_id from unset environment variable",
			workspace: "\t\t\turl https://support.acme.example\n\t\t\tsso google {\n\t\t\t\tclient_id {env.PORTALGATE_TEST_NOPE}\n\t\t\t\tclient_secret s\n\t\t\t}",
			want:      []string{"sso google: client_id is required, but {env.PORTALGATE_TEST_NOPE} is empty"},
		},
		{
			// caddy adapt reads no contacts file; validate reads it
			name:      "missing contacts_file",
			workspace: "\t\t\ttitle \"Acme Support\"\n\t\t\tcontacts_file testdata/no-such-contacts.json",
			want:      []string{"workspace acme", "contacts_file", "testdata/no-such-contacts.json", "no such file"},
		},
		{
			name:      "contacts_file with an invalid record",
			workspace: "\t\t\tcontacts_file testdata/contacts-bad-email.json",
			want:      []string{"workspace acme", "testdata/contacts-bad-email.json", "record 2", "c-2", `"not-an-email" is not a valid address`},
		},
		{
			name:      "contacts_file from environment with a bad record",
			env:       map[string]string{"PORTALGATE_TEST_CONTACTS": "testdata/contacts-bad-email.json"},
			workspace: "\t\t\tcontacts_file {env.PORTALGATE_TEST_CONTACTS}",
			want:      []string{"workspace acme", "record 2", "c-2"},
		},
		{
			name:      "contacts_file from environment, missing",
			env:       map[string]string{"PORTALGATE_TEST_CONTACTS": "testdata/no-such-contacts.json"},
			workspace: "\t\t\tcontacts_file {env.PORTALGATE_TEST_CONTACTS}",
			want:      []string{"workspace acme", "testdata/no-such-contacts.json"},
		},
		{
			name:   "secret from environment too short",
			env:    map[string]string{"PORTALGATE_TEST_SECRET": "hunter2"},
			portal: "\t\tsecret {env.PORTALGATE_TEST_SECRET}",
			want:   []string{"secret: must be at least 32 characters"},
		},
		{
			name:   "secret from unset environment variable",
			portal: "\t\tsecret {env.PORTALGATE_TEST_UNSET_SECRET}",
			want:   []string{"secret: {env.PORTALGATE_TEST_UNSET_SECRET} is empty", "leave secret out"},
		},
		{
			name:   "smtp host from unset environment variable",
			portal: "\t\tmail smtp {\n\t\t\thost {env.PORTALGATE_TEST_UNSET_HOST}\n\t\t\tfrom support@acme.example\n\t\t}",
			want:   []string{"mail smtp: host is required, but {env.PORTALGATE_TEST_UNSET_HOST} is empty"},
		},
		{
			name:   "smtp from from unset environment variable",
			portal: "\t\tmail smtp {\n\t\t\thost smtp.example.com\n\t\t\tfrom {env.PORTALGATE_TEST_UNSET_FROM}\n\t\t}",
			want:   []string{"mail smtp: from is required, but {env.PORTALGATE_TEST_UNSET_FROM} is empty"},
		},
		{
			name:   "smtp password from unset environment variable",
			env:    map[string]string{"PORTALGATE_TEST_SMTP_USER": "portal"},
			portal: "\t\tmail smtp {\n\t\t\thost smtp.example.com\n\t\t\tfrom support@acme.example\n\t\t\tusername {env.PORTALGATE_TEST_SMTP_USER}\n\t\t\tpassword {env.PORTALGATE_TEST_UNSET_PASSWORD}\n\t\t}",
			want:   []string{"mail smtp: password is required, but {env.PORTALGATE_TEST_UNSET_PASSWORD} is empty", "when username is set"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			isolate(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dir := t.TempDir()
			mail := "\t\tmail log\n"
			if strings.Contains(tc.portal, "mail ") {
				mail = ""
			}
			cf := `{
	portal {
		storage_dir ` + dir + `
` + mail + tc.portal + `
		workspace acme {
` + tc.workspace + `
		}
	}
}

:8080 {
	portal_auth acme
	reverse_proxy 127.0.0.1:9
}
`
			err := validate(t, cf)
			if err == nil {
				t.Fatalf("validate succeeded, want an error containing %q; config:\n%s", tc.want, cf)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			assertEmpty(t, dir)
		})
	}
}

// TestValidateGolden loads every golden file's JSON the way `caddy validate`
// would: it catches a JSON key the parser writes but the modules do not
// accept (module configs are unmarshaled strictly).
func TestValidateGolden(t *testing.T) {
	for _, g := range readGoldens(t) {
		t.Run(filepath.Base(g.file), func(t *testing.T) {
			if g.json == "" {
				t.Skip("no expected JSON yet; run with -update")
			}
			isolate(t)
			t.Setenv("PORTAL_SECRET", strings.Repeat("s3cr3t-", 6))
			for _, k := range []string{"GOOGLE_ID", "GOOGLE_SECRET", "MS_ID", "MS_SECRET", "CORP_SECRET"} {
				t.Setenv(k, "test-"+strings.ToLower(k))
			}
			dir := t.TempDir()
			js := g.json
			// never let a validation bug create the operator paths of
			// the examples on this machine
			for _, p := range []string{"/var/lib/portalgate", "/srv/portalgate"} {
				js = strings.ReplaceAll(js, `"`+p+`"`, `"`+dir+`"`)
			}
			if err := validateJSON(t, []byte(js)); err != nil {
				t.Fatalf("validate: %v", err)
			}
			assertEmpty(t, dir)
		})
	}
}
