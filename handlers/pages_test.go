package handlers

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file in the templates directory replaces the embedded one of the same
// name; the others stay embedded.
func TestTemplatesOverride(t *testing.T) {
	dir := t.TempDir()
	custom := `{{define "content"}}<h1>Welcome to {{.WorkspaceTitle}}</h1><form method="post"><input type="hidden" name="csrf" value="{{.CSRF}}"></form>{{end}}`
	if err := os.WriteFile(filepath.Join(dir, "signin.html"), []byte(custom), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPages(dir)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if err := p.render(w, 200, pageSignIn, pageData{WorkspaceTitle: "Acme <Support>", CSRF: "tok"}); err != nil {
		t.Fatal(err)
	}
	body := w.Body.String()
	if !strings.Contains(body, "<h1>Welcome to Acme &lt;Support&gt;</h1>") || !strings.Contains(body, `value="tok"`) {
		t.Fatalf("override not used or not escaped:\n%s", body)
	}
	w = httptest.NewRecorder()
	if err := p.render(w, 200, pageCode, pageData{WorkspaceTitle: "Acme", MaskedEmail: "j***@acme.example"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.Body.String(), "No sign-in email received?") {
		t.Fatal("the embedded code page was not kept")
	}

	// A broken override is a clear error at load time, not at request time.
	if err := os.WriteFile(filepath.Join(dir, "code.html"), []byte(`{{define "content"}}{{.Nope`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPages(dir); err == nil || !strings.Contains(err.Error(), "code.html") {
		t.Fatalf("broken template: %v", err)
	}
}
