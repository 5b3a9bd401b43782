package module

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// A logo file is read at provision into a data: URL; a logo URL is kept;
// a missing or oversized file is an error.
func TestBrandLogo(t *testing.T) {
	dir := t.TempDir()
	logo := filepath.Join(dir, "logo.svg")
	if err := os.WriteFile(logo, []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), 0o600); err != nil {
		t.Fatal(err)
	}
	repl := caddy.NewReplacer()
	b, err := (&BrandConfig{Logo: logo, Accent: "#2451c7"}).resolve(repl)
	if err != nil || !strings.HasPrefix(b.LogoURL, "data:image/svg+xml;base64,") {
		t.Fatalf("logo file: %v %q", err, b.LogoURL)
	}
	if b, err := (&BrandConfig{Logo: "https://cdn.acme.example/logo.png"}).resolve(repl); err != nil || b.LogoURL != "https://cdn.acme.example/logo.png" {
		t.Fatalf("logo URL: %v %+v", err, b)
	}
	if _, err := (&BrandConfig{Logo: filepath.Join(dir, "none.png")}).resolve(repl); err == nil {
		t.Fatal("missing logo file accepted")
	}
	big := filepath.Join(dir, "big.png")
	if err := os.WriteFile(big, make([]byte, maxLogoBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&BrandConfig{Logo: big}).resolve(repl); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("oversized logo: %v", err)
	}
	for _, bad := range []BrandConfig{{Accent: "red"}, {Accent: "#12345"}, {SupportURL: "javascript:alert(1)"}, {SupportEmail: "nope"}, {Logo: "ftp://x/logo.png"}} {
		if err := bad.Check(nil); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
