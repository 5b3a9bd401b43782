package handlers

import (
	"net/http/httptest"
	"testing"
)

// codePage is the code page's data in its fullest state: a brand, two
// languages, an error, a resend wait.
func codePage() pageData {
	return pageData{tr: translator(DefaultLanguage), Brand: &Brand{Accent: "#ffcc00", SupportURL: "https://help.acme.example", Footer: "Acme Inc."},
		WorkspaceTitle: "Acme <Support>", AuthPath: "/_portal", CSRF: "tok&1",
		Languages:   []languageChoice{{Tag: "en", Name: "English"}, {Tag: "de", Name: "Deutsch", Current: true}},
		MaskedEmail: "j•@acme.example", CodeTTL: "10 minutes", Wait: 25, ChangeEmail: true, Error: "Sign-in failed"}
}

// BenchmarkRenderCodePage is the code page a contact sees after the email
// form, the page rendered most often in a sign-in.
func BenchmarkRenderCodePage(b *testing.B) {
	p, err := LoadPages("")
	if err != nil {
		b.Fatal(err)
	}
	d := codePage()
	// A real page's token and masked email, which a skeleton takes
	// (codePage's own are markup, which the template renders).
	d.CSRF, d.MaskedEmail = "q7Vd-Xk3_mN0pL9sRt2wYz4A", "j***@acme.example"
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		if err := p.render(w, 200, pageCode, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderCodeMail is the code email, text and HTML.
func BenchmarkRenderCodeMail(b *testing.B) {
	p, err := LoadPages("")
	if err != nil {
		b.Fatal(err)
	}
	d := mailData{tr: translator(DefaultLanguage), Brand: &Brand{Accent: "#ffcc00"}, WorkspaceTitle: "Acme", Code: "ABCD234",
		CodeTTL: "10 minutes", RequestedAt: "1 December 2026, 16:00 UTC", Browser: "Firefox on Windows"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.codeMail(d); err != nil {
			b.Fatal(err)
		}
	}
}
