package handlers

import (
	"net/http/httptest"
	"testing"
)

// pageSamples are data for every page in the states a contact meets.
func pageSamples(t *tr) map[string]pageData {
	brand := &Brand{Accent: "#ffcc00", SupportURL: "https://help.acme.example", Footer: "Acme Inc."}
	base := pageData{tr: t, Brand: brand, WorkspaceTitle: "Acme <Support>", AuthPath: "/_portal", CSRF: "tok&1",
		Languages: []languageChoice{{Tag: "en", Name: "English"}, {Tag: "de", Name: "Deutsch", Current: true}}}
	signIn := base
	signIn.EmailInput, signIn.SSO, signIn.DirectoryMatch = "jo@acme.example", []ssoButton{{Name: "google", Label: "Google"}}, true
	signedIn := base
	signedIn.SignedInAs = "jo@acme.example"
	code := base
	code.MaskedEmail, code.CodeTTL, code.Wait, code.ChangeEmail, code.Error = "j•@acme.example", "10 minutes", 25, true, "Sign-in failed"
	personal := base
	personal.Personal, personal.MailDelayed, personal.MaskedEmail, personal.CodeTTL = true, true, "j•@acme.example", "10 minutes"
	message := base
	message.Heading, message.Message, message.ActionURL, message.ActionLabel = "Invalid portal link", "Use a fresh link.", "/", "Back"
	return map[string]pageData{
		pageSignIn + " form": signIn, pageSignIn + " signed in": signedIn, pageCode: code, pageCode + " personal": personal,
		pageMessage: message, pageSignOut: signedIn,
	}
}

// BenchmarkRenderCodePage is the code page a contact sees after the email
// form, the page rendered most often in a sign-in.
func BenchmarkRenderCodePage(b *testing.B) {
	p, err := LoadPages("")
	if err != nil {
		b.Fatal(err)
	}
	d := pageSamples(translator(DefaultLanguage))[pageCode]
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
