package caddyfile

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // reverse_proxy, respond

	// the backends parse their own storage blocks; a build gets them
	// from the root package portalgate
	_ "github.com/kdesk/portalgate/storage/badgerstore"
	_ "github.com/kdesk/portalgate/storage/redisstore"
)

// update rewrites the JSON half of every golden file with what the adapter
// produces now: go test ./caddyfile/ -update, then review the diff.
var update = flag.Bool("update", false, "rewrite the expected JSON in testdata/*.caddyfiletest")

// goldenSep separates the Caddyfile from the expected JSON in a golden
// file, as in Caddy's caddytest/integration/caddyfile_adapt.
const goldenSep = "----------"

// adapt runs the caddyfile adapter the way `caddy adapt` does and returns
// the indented JSON. Warnings (formatting) are logged, not failed.
func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("caddyfile adapter is not registered")
	}
	out, warnings, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	for _, w := range warnings {
		t.Logf("warning: %s:%d: %s: %s", w.File, w.Line, w.Directive, w.Message)
	}
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatalf("adapter output is not JSON: %v\n%s", err, out)
	}
	return buf.Bytes(), nil
}

type golden struct {
	file      string
	caddyfile string
	json      string
}

func readGoldens(t *testing.T) []golden {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.caddyfiletest files")
	}
	var gs []golden
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), "\r\n", "\n")
		cf, js, ok := strings.Cut(text, "\n"+goldenSep+"\n")
		if !ok {
			// an empty expectation may end right after the separator
			cf, js, ok = strings.Cut(text, "\n"+goldenSep)
		}
		if !ok {
			t.Fatalf("%s: no %q line between the Caddyfile and the JSON", f, goldenSep)
		}
		gs = append(gs, golden{file: f, caddyfile: strings.TrimSpace(cf) + "\n", json: strings.TrimSpace(js)})
	}
	return gs
}

func TestAdaptGolden(t *testing.T) {
	for _, g := range readGoldens(t) {
		t.Run(filepath.Base(g.file), func(t *testing.T) {
			got, err := adapt(t, g.caddyfile)
			if err != nil {
				t.Fatalf("adapting: %v", err)
			}
			if *update {
				content := g.caddyfile + goldenSep + "\n" + string(got) + "\n"
				if err := os.WriteFile(g.file, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if string(got) != g.json {
				t.Errorf("adapted JSON differs from %s (run with -update and review the diff):\n%s",
					g.file, lineDiff(g.json, string(got)))
			}
		})
	}
}

// lineDiff is a small line-by-line comparison, enough to spot the change.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl == gl {
			continue
		}
		if i < len(w) {
			b.WriteString("- " + wl + "\n")
		}
		if i < len(g) {
			b.WriteString("+ " + gl + "\n")
		}
	}
	return b.String()
}

// TestAdaptHandlerOrder checks, apart from the golden file, that the plugin
// orders portal_auth itself: written after reverse_proxy, it still runs
// first, with no `order` in the Caddyfile.
func TestAdaptHandlerOrder(t *testing.T) {
	for _, site := range []string{
		"portal_auth acme\n\treverse_proxy 127.0.0.1:8080",
		"reverse_proxy 127.0.0.1:8080\n\tportal_auth acme",
		"reverse_proxy 127.0.0.1:8080\n\tbasic_auth {\n\t\tops $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n\t}\n\tportal_auth acme",
	} {
		cf := "{\n\tportal {\n\t\tmail log\n\t\tworkspace acme\n\t}\n}\n\nsupport.acme.example {\n\t" + site + "\n}\n"
		out, err := adapt(t, cf)
		if err != nil {
			t.Fatalf("adapting:\n%s\n%v", cf, err)
		}
		var cfg struct {
			Apps struct {
				HTTP struct {
					Servers map[string]struct {
						Routes []struct {
							Handle []struct {
								Handler string `json:"handler"`
								Routes  []struct {
									Handle []map[string]any `json:"handle"`
								} `json:"routes"`
							} `json:"handle"`
						} `json:"routes"`
					} `json:"servers"`
				} `json:"http"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		var order []string
		for _, srv := range cfg.Apps.HTTP.Servers {
			for _, r := range srv.Routes {
				for _, h := range r.Handle {
					if h.Handler != "subroute" {
						order = append(order, h.Handler)
						continue
					}
					for _, sr := range h.Routes {
						for _, hh := range sr.Handle {
							order = append(order, hh["handler"].(string))
						}
					}
				}
			}
		}
		want := "portal_auth,reverse_proxy"
		if strings.Contains(site, "basic_auth") {
			want = "authentication,portal_auth,reverse_proxy"
		}
		if got := strings.Join(order, ","); got != want {
			t.Errorf("site block\n\t%s\nhandlers run in order %s, want %s", site, got, want)
		}
	}
}

// TestLimitsJSONKeys: the JSON config is documentation (STYLE.md), so the
// limits keys are snake_case like every other option.
func TestLimitsJSONKeys(t *testing.T) {
	out, err := adapt(t, `{
	portal {
		mail log
		limits {
			sends_per_email 3
			window 15m
		}
		workspace acme
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			Portal struct {
				Limits map[string]json.RawMessage `json:"limits"`
			} `json:"portal"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sends_per_email", "window"} {
		if _, ok := cfg.Apps.Portal.Limits[k]; !ok {
			t.Errorf("limits JSON has no %q key: %v", k, cfg.Apps.Portal.Limits)
		}
	}
}
