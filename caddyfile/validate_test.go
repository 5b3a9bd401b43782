package caddyfile

import (
	"context"
	"os"
	"path/filepath"
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

// TestValidateCatchesWhatAdaptCannot: each config adapts fine (the values
// are well-formed, come from placeholders, or are files, which caddy adapt
// does not read) and fails in Provision.
func TestValidateCatchesWhatAdaptCannot(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		workspace string // body of workspace acme
		portal    string // extra portal options
		want      []string
	}{
		{
			name:      "resend_cooldown longer than code_ttl",
			workspace: "\t\t\tcode_ttl 2m\n\t\t\tresend_cooldown 5m",
			want:      []string{"workspace acme", "resend_cooldown 5m0s: must not be longer than code_ttl 2m0s"},
		},
		{
			name:      "resend_cooldown longer than default code_ttl",
			workspace: "\t\t\tresend_cooldown 11m",
			want:      []string{"workspace acme", "resend_cooldown 11m0s", "code_ttl 10m0s"},
		},
		{
			name:      "url with ftp scheme",
			workspace: "\t\t\turl ftp://x",
			want:      []string{"workspace acme", `url "ftp://x": must be an absolute http(s) URL`},
		},
		{
			name:      "url without host",
			workspace: "\t\t\turl /support",
			want:      []string{`url "/support"`},
		},
		{
			name:      "url with query",
			workspace: "\t\t\turl https://support.acme.example/?next=x",
			want:      []string{`url "https://support.acme.example/?next=x"`},
		},
		{
			name:      "url from environment",
			env:       map[string]string{"PORTALGATE_TEST_URL": "javascript:alert(1)"},
			workspace: "\t\t\turl {env.PORTALGATE_TEST_URL}",
			want:      []string{`url "javascript:alert(1)"`},
		},
		{
			name:      "code_ttl too short",
			workspace: "\t\t\tcode_ttl 10s",
			want:      []string{"code_ttl 10s: must be between 30s and 24h"},
		},
		{
			name:      "code_ttl too long",
			workspace: "\t\t\tcode_ttl 2d\n\t\t\tresend_cooldown 30s",
			want:      []string{"code_ttl 48h0m0s: must be between 30s and 24h"},
		},
		{
			name:      "session_ttl too short",
			workspace: "\t\t\tsession_ttl 30s",
			want:      []string{"session_ttl 30s: must be at least 1m"},
		},
		{
			name:      "link_ttl longer than link_max_ttl",
			workspace: "\t\t\tlink_ttl 10d\n\t\t\tlink_max_ttl 7d",
			want:      []string{"link_ttl 240h0m0s: must not be longer than link_max_ttl 168h0m0s"},
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
			want:   []string{"secret: must be at least 32 characters"},
		},
		{
			name:   "smtp host from unset environment variable",
			portal: "\t\tmail smtp {\n\t\t\thost {env.PORTALGATE_TEST_UNSET_HOST}\n\t\t\tfrom support@acme.example\n\t\t}",
			want:   []string{"mail smtp: host is required"},
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
