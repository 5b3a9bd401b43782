package handlers

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// The walk through the pages of issue 15: a contact is never stuck on a
// page or misled by it.

// On the shared link the code page shows the address typed, in full, with
// "Change email", which goes back to the form with that address; the
// Resend button works without JavaScript, and the code email says when and
// from which browser the code was asked for, and that the dash is
// optional.
func TestSharedLinkCodePage(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	b.requestCode("/", jane.Email)
	page := b.get("/_portal/code")
	wantBody(t, "code page", page, "<strong>"+jane.Email+"</strong> belongs to a contact")
	wantBody(t, "code page", page, `<a href="/_portal/signin">Change email</a>`)
	if strings.Contains(page.body, " disabled") {
		t.Errorf("the Resend button is disabled without JavaScript:\n%s", page.body)
	}
	if n := strings.Count(page.body, "30 s)"); n != 1 {
		t.Errorf("the wait is shown %d times", n)
	}
	wantBody(t, "change email", b.get("/_portal/signin"), `value="`+jane.Email+`"`)

	m := tp.waitMail(t, 1)
	when := tp.clock.Now().UTC().Format("2006-01-02 15:04 UTC")
	for _, part := range []string{m.Text, m.HTML} {
		for _, want := range []string{"with or without the dash", "It was asked for on " + when + " from an unknown browser."} {
			if !strings.Contains(part, want) {
				t.Errorf("code email lacks %q:\n%s", want, part)
			}
		}
	}
	c := tp.browser(t, tp.acme)
	tp.clock.Advance(time.Minute)
	tok := csrf(t, c.get("/_portal/signin"))
	c.do(http.MethodPost, "/_portal/signin", url.Values{"csrf": {tok}, "email": {jane.Email}},
		http.Header{"User-Agent": {"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:140.0) Gecko/20100101 Firefox/140.0"}})
	if m := tp.waitMail(t, 2); !strings.Contains(m.Text, "from Firefox on Windows.") {
		t.Errorf("code email does not name the browser:\n%s", m.Text)
	}
}

// A personalized link's code page states where the code went, without
// "if … belongs to a contact".
func TestPersonalLinkCodePage(t *testing.T) {
	tp := newTestPortal(t, nil)
	path, _ := tp.mint(t, "acme", jane.ID, "/tickets/42", 0)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "open link", b.get(path), "/_portal/code")
	page := b.get("/_portal/code")
	wantBody(t, "code page", page, "We have emailed a 7-character code to <strong>"+maskEmail(jane.Email)+"</strong>.")
	if strings.Contains(page.body, "belongs to a contact") || strings.Contains(page.body, "Change email") {
		t.Errorf("personalized link's code page hedges or offers to change the address:\n%s", page.body)
	}
}

// A signed-in contact on the sign-in page is told so, with Continue and
// Sign out; one who opens their own personalized link goes straight to its
// page; one who opens another contact's link is told who is signed in and
// may switch.
func TestSignedInContactNotStuck(t *testing.T) {
	tp := newTestPortal(t, nil)
	ana := storage.Contact{ID: "c-9", Email: "ana@acme.example", Name: "Ana"}
	if err := ana.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := tp.store.PutContacts(context.Background(), "acme", []storage.Contact{ana}); err != nil {
		t.Fatal(err)
	}
	b := tp.signedIn(t)
	page := b.get("/_portal/signin")
	for _, want := range []string{"You are signed in to Acme Support as <strong>" + jane.Email + "</strong>.", `<a class="button" href="/">Continue</a>`, `action="/_portal/signout"`} {
		wantBody(t, "signed-in sign-in page", page, want)
	}

	mails := tp.mail.count()
	own, _ := tp.mint(t, "acme", jane.ID, "/tickets/7", 0)
	wantRedirect(t, "own link while signed in", b.get(own), "/tickets/7")
	wantPortal(t, "still signed in", b)

	other, _ := tp.mint(t, "acme", ana.ID, "/tickets/8", 0)
	page = b.get(other)
	wantStatus(t, "another contact's link", page, http.StatusOK)
	wantBody(t, "another contact's link", page, "You are signed in as <strong>"+jane.Email+"</strong>, but this sign-in link is for another contact")
	wantBody(t, "another contact's link", page, `<input type="hidden" name="then" value="`+other+`">`)
	if tp.settle(t); tp.mail.count() != mails {
		t.Fatal("opening a link while signed in sent a code")
	}
	res := b.do(http.MethodPost, "/_portal/signout", url.Values{"then": {other}}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	wantRedirect(t, "switch", res, other)
	wantSignIn(t, "after switching", b)
	wantRedirect(t, "the link, signed out", b.get(other), "/_portal/code")
	if m := tp.waitMail(t, mails+1); m.To != ana.Email {
		t.Fatalf("code went to %s", m.To)
	}
	// Only a link of this workspace is a place to go after sign-out.
	tp.clock.Advance(time.Minute) // past jane's resend cooldown
	s := tp.signedIn(t)
	wantRedirect(t, "then elsewhere", s.do(http.MethodPost, "/_portal/signout", url.Values{"then": {"https://evil.example/"}}, http.Header{"Sec-Fetch-Site": {"same-origin"}}), "/_portal/signin?signed_out=1")
}

// Post/Redirect/Get: a refused form answers with a redirect to its page,
// which shows the refusal once, with its status; a reload shows the page
// afresh and never posts again.
func TestRefusedFormsRedirect(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email)
	b.noFollow = true
	for _, c := range []struct {
		what, path string
		form       url.Values
		to         string
		status     int
		says       string
	}{
		{"wrong code", "/_portal/code", url.Values{"csrf": {token}, "code": {"ABC-2345"}}, "/_portal/code", http.StatusUnauthorized, "the code is wrong or has expired"},
		{"malformed code", "/_portal/code", url.Values{"csrf": {token}, "code": {"?"}}, "/_portal/code", http.StatusUnauthorized, "a code has 7 letters and digits"},
		{"resend too soon", "/_portal/resend", url.Values{"csrf": {token}}, "/_portal/code", http.StatusTooManyRequests, "Please wait"},
		{"no address", "/_portal/signin", url.Values{"csrf": {token}, "email": {"jane at acme"}}, "/_portal/signin", http.StatusBadRequest, "Enter a valid email address"},
	} {
		res := b.post(c.path, c.form)
		wantRedirect(t, c.what, res, c.to)
		if strings.Contains(res.body, c.says) {
			t.Errorf("%s: the POST answer is a page", c.what)
		}
		page := b.get(c.to)
		wantStatus(t, c.what+", the page", page, c.status)
		wantBody(t, c.what+", the page", page, c.says)
		reload := b.get(c.to)
		wantStatus(t, c.what+", reloaded", reload, http.StatusOK)
		if strings.Contains(reload.body, c.says) {
			t.Errorf("%s: the refusal is shown again on reload", c.what)
		}
	}
	// The typed input comes back with its error.
	b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {"jane at acme"}})
	wantBody(t, "typed input", b.get("/_portal/signin"), `value="jane at acme"`)
	// A forged notice cookie shows nothing.
	b.jar[cookieNotice] = "anything.1.eA"
	wantStatus(t, "forged notice", b.get("/_portal/code"), http.StatusOK)
}

// Post/Redirect/Get for refusals that leave no form to show again: a form
// that is not ours, a sign-in that expired, a rate limit. The POST answers
// with a redirect to the notice page, which shows the refusal once with its
// status; reloaded, it sends the contact to sign in and posts nothing.
func TestRefusedFormsRedirectToNotice(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) {
		p.Limits = Limits{TriesPerIP: 1, Window: time.Hour}
	})
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email)
	b.noFollow = true
	fresh := tp.browser(t, tp.acme)
	fresh.noFollow = true
	wrong := url.Values{"csrf": {token}, "code": {"ABC-2345"}}
	for _, c := range []struct {
		what   string
		b      *browser
		path   string
		form   url.Values
		h      http.Header
		status int
		says   string
	}{
		{"a forged token", b, "/_portal/code", url.Values{"csrf": {"forged"}, "code": {"ABC-2345"}}, nil, http.StatusForbidden, "This form was not sent from the sign-in page."},
		{"a cross-site post", b, "/_portal/code", wrong, http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden, "This form was not sent from the sign-in page."},
		{"no sign-in flow", fresh, "/_portal/code", url.Values{"csrf": {"x"}, "code": {"ABC-2345"}}, nil, http.StatusBadRequest, "Your sign-in session has expired."},
		{"the first wrong code", b, "/_portal/code", wrong, nil, http.StatusUnauthorized, "the code is wrong or has expired"},
		{"a try over the limit", b, "/_portal/code", wrong, nil, http.StatusTooManyRequests, "nothing was sent or checked"},
	} {
		res := c.b.do(http.MethodPost, c.path, c.form, c.h)
		if res.status != http.StatusSeeOther {
			t.Fatalf("%s: status %d, want a redirect; body:\n%s", c.what, res.status, res.body)
		}
		if strings.Contains(res.body, c.says) {
			t.Errorf("%s: the POST answer is a page", c.what)
		}
		page := c.b.get(res.location())
		wantStatus(t, c.what+", the page", page, c.status)
		wantBody(t, c.what+", the page", page, c.says)
		if c.status == http.StatusTooManyRequests && page.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", c.what)
		}
		if res.location() == "/_portal/notice" {
			wantRedirect(t, c.what+", reloaded", c.b.get("/_portal/notice"), "/_portal/signin")
		}
	}
	wantRedirect(t, "the notice page without a notice", fresh.get("/_portal/notice"), "/_portal/signin")
}

// A refused sign-out is redirected to the confirmation page, which says
// the form was not the portal's and offers its own buttons; the refused
// post changes nothing, not even a cookie.
func TestRefusedSignOutRedirects(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.signedIn(t)
	b.noFollow = true
	before := len(b.setCookies)
	res := b.do(http.MethodPost, "/_portal/signout", url.Values{"all": {"1"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	wantRedirect(t, "cross-site sign-out", res, "/_portal/signout?refused=1")
	if n := len(b.setCookies) - before; n != 0 {
		t.Errorf("a refused sign-out set %d cookies", n)
	}
	page := b.get(res.location())
	wantStatus(t, "refused sign-out page", page, http.StatusForbidden)
	wantBody(t, "refused sign-out page", page, "Sign-out failed")
	wantBody(t, "refused sign-out page", page, "This form was not sent from the portal.")
	wantBody(t, "refused sign-out page", page, `name="csrf"`)
	wantPortal(t, "after the refused sign-out", b)
	// The page's own button signs out.
	wantRedirect(t, "sign-out from the page", b.post("/_portal/signout", url.Values{"csrf": {csrf(t, page)}}), "/_portal/signin?signed_out=1")
	wantSignIn(t, "after signing out", b)
}

// TestSignOutTokens checks the sign-out token: a new session's is keyed
// from its id, not stored; the token of one session does not sign out
// another; and a session of an earlier version, stored with a random
// token, signs out with that token and no other.
func TestSignOutTokens(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.signedIn(t)
	hash := HashID(b.cookie(cookieSession))
	sess, err := tp.store.Session(t.Context(), "acme", hash)
	if err != nil {
		t.Fatal(err)
	}
	if sess.CSRF != "" {
		t.Fatalf("a new session was stored with a sign-out token %q", sess.CSRF)
	}
	token := csrf(t, b.get("/_portal/signout"))
	now := tp.clock.Now()
	otherID := NewID()
	if err := tp.store.PutSession(t.Context(), storage.Session{IDHash: HashID(otherID), Workspace: "acme", ContactID: jane.ID, Method: "code",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	other := tp.browser(t, tp.acme)
	other.jar[sessionCookieName(other)] = otherID
	otherToken := csrf(t, other.get("/_portal/signout"))
	if token == otherToken {
		t.Fatal("two sessions share a sign-out token")
	}
	b.noFollow = true
	wantRedirect(t, "another session's token", b.post("/_portal/signout", url.Values{"csrf": {otherToken}}), "/_portal/signout?refused=1")
	wantPortal(t, "after another session's token", b)

	// As an earlier version stored it.
	id := NewID()
	old := storage.Session{IDHash: HashID(id), Workspace: "acme", ContactID: jane.ID, Method: "code", CSRF: "stored-random-token",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
	if err := tp.store.PutSession(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	legacy := tp.browser(t, tp.acme)
	legacy.jar[sessionCookieName(legacy)] = id
	legacy.noFollow = true
	if got := csrf(t, legacy.get("/_portal/signout")); got != "stored-random-token" {
		t.Fatalf("an earlier session's sign-out page carries %q, want its stored token", got)
	}
	wantRedirect(t, "an earlier session with the keyed token", legacy.post("/_portal/signout", url.Values{"csrf": {token}}), "/_portal/signout?refused=1")
	wantRedirect(t, "an earlier session with its token", legacy.post("/_portal/signout", url.Values{"csrf": {"stored-random-token"}}), "/_portal/signin?signed_out=1")
	wantRedirect(t, "the new session with its token", b.post("/_portal/signout", url.Values{"csrf": {token}}), "/_portal/signin?signed_out=1")
}

// sessionCookieName is the name b keeps its session cookie under.
func sessionCookieName(b *browser) string {
	if b.tls || b.gate.httpsURL {
		return "__Host-" + cookieSession
	}
	return cookieSession
}
