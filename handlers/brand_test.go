package handlers

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A workspace's brand shows on every page and in the email, "ask your
// service provider" links to its support, its own templates and sender
// are used, and the other workspace keeps the defaults.
func TestBrand(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "signout.html"), []byte(`{{define "content"}}<h1>Acme sign-out</h1>{{end}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	own, err := LoadPages(dir)
	if err != nil {
		t.Fatal(err)
	}
	tp := newTestPortal(t, func(p *Portal) {
		ws := p.Workspaces["acme"]
		ws.Brand = &Brand{LogoURL: "data:image/png;base64,iVBORw0KGgo=", Accent: "#ffcc00",
			SupportURL: "https://acme.example/help", Footer: "Acme Inc. · 1 Main Street"}
		ws.Pages = own
		ws.MailFrom = "Acme Support <support@acme.example>"
	})
	b := tp.browser(t, tp.acme)
	page := b.get("/_portal/signin")
	for _, want := range []string{`<img src="data:image/png;base64,iVBORw0KGgo=" alt="">`, "<footer>Acme Inc. · 1 Main Street</footer>"} {
		wantBody(t, "branded sign-in page", page, want)
	}
	// #ffcc00 is too light for white text: the pages darken it.
	if strings.Contains(page.body, "--accent:#ffcc00") || !strings.Contains(page.body, "--accent:#") {
		t.Errorf("accent not made readable:\n%s", page.body)
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; img-src data:") {
		t.Errorf("CSP %q lacks img-src data:", csp)
	}
	wantBody(t, "invalid link", tp.browser(t, tp.acme).get("/_portal/link/nope"), `href="https://acme.example/help">Contact your service provider</a>`)
	wantRedirect(t, "email", b.post("/_portal/signin", url.Values{"csrf": {csrf(t, page)}, "email": {jane.Email}}), "/_portal/code")
	m := tp.waitMail(t, 1)
	if m.From != "Acme Support <support@acme.example>" || !strings.Contains(m.HTML, "data:image/png") || !strings.Contains(m.HTML, "Acme Inc.") || !strings.Contains(m.Text, "Acme Inc.") {
		t.Errorf("email not branded: from %q\n%s\n%s", m.From, m.Text, m.HTML)
	}
	s := tp.browser(t, tp.acme)
	tp.clock.Advance(tp.acme.ws.ResendCooldown)
	tp.signIn(s, "/")
	wantBody(t, "own template", s.get("/_portal/signout"), "<h1>Acme sign-out</h1>")

	plain := tp.browser(t, tp.other).get("/_portal/signin")
	if strings.Contains(plain.body, "<img") || strings.Contains(plain.body, "<footer>") || strings.Contains(plain.header.Get("Content-Security-Policy"), "img-src") {
		t.Errorf("unbranded workspace shows a brand:\n%s", plain.body)
	}
	wantStatus(t, "unbranded", plain, http.StatusOK)
}

func TestAccentContrast(t *testing.T) {
	for _, accent := range []string{"#2451c7", "#ffcc00", "#fff", "#000000", "#00a0ff", ""} {
		l := lookOf(translator(DefaultLanguage), &Brand{Accent: accent})
		c, _ := parseHex(l.Accent)
		if r := contrast(c, lightCard); r < 4.5 {
			t.Errorf("accent %q → %s: %.2f:1 on white", accent, l.Accent, r)
		}
		d, _ := parseHex(l.AccentOnDark)
		if r := contrast(d, darkCard); r < 4.5 {
			t.Errorf("accent %q → %s: %.2f:1 on the dark card", accent, l.AccentOnDark, r)
		}
	}
	if got := lookOf(translator(DefaultLanguage), &Brand{Accent: "#2451c7"}).Accent; got != "#2451c7" {
		t.Errorf("a readable accent is kept: got %s", got)
	}
}
