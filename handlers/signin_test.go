package handlers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// TestCodeExpiry checks that a code works until code_ttl has passed since
// it was made, and not at code_ttl.
func TestCodeExpiry(t *testing.T) {
	for _, tc := range []struct {
		name    string
		advance time.Duration
		ok      bool
	}{
		{"just before code_ttl", 10*time.Minute - time.Second, true},
		{"at code_ttl", 10 * time.Minute, false},
		{"after code_ttl", 10*time.Minute + time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTestPortal(t, nil)
			b := tp.browser(t, tp.acme)
			token := b.requestCode("/tickets/7", jane.Email)
			code := mailCode(t, tp.waitMail(t, 1))
			tp.clock.Advance(tc.advance)
			res := b.submitCode(token, code)
			if tc.ok {
				wantRedirect(t, "right code before expiry", res, "/tickets/7")
				if b.cookie(cookieSession) == "" {
					t.Fatal("no session cookie")
				}
				return
			}
			wantStatus(t, "right code after expiry", res, http.StatusUnauthorized)
			wantBody(t, "right code after expiry", res, "Sign-in failed")
			if b.cookie(cookieSession) != "" {
				t.Fatal("session cookie set for an expired code")
			}
		})
	}
}

// TestCodeSingleUse checks that a code works once.
func TestCodeSingleUse(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email)
	code := mailCode(t, tp.waitMail(t, 1))
	wantRedirect(t, "first use", b.submitCode(token, code), "/")

	// A second browser that asked too (within the cooldown, so no new code)
	// cannot reuse it.
	other := tp.browser(t, tp.acme)
	token2 := other.requestCode("/", jane.Email)
	res := other.submitCode(token2, code)
	wantStatus(t, "second use", res, http.StatusUnauthorized)
	wantBody(t, "second use", res, "Sign-in failed")
}

// TestCodeTypedLoosely checks that the code is taken in any case, with
// spaces and dashes.
func TestCodeTypedLoosely(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email)
	code := mailCode(t, tp.waitMail(t, 1)) // "ABC-DEFG"
	typed := " " + strings.ToLower(code[:2]) + " " + code[2:5] + "--" + strings.ToLower(code[5:]) + "\t"
	wantRedirect(t, "loosely typed code", b.submitCode(token, typed), "/")
}

// TestWrongCodesKillCode checks MaxCodeTries: after that many wrong codes
// even the right one is refused.
func TestWrongCodesKillCode(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email)
	code := mailCode(t, tp.waitMail(t, 1))
	wrong := wrongCode(code)
	for i := range MaxCodeTries {
		res := b.submitCode(token, wrong)
		wantStatus(t, "wrong code", res, http.StatusUnauthorized)
		wantBody(t, "wrong code", res, "Sign-in failed")
		if i == MaxCodeTries-1 {
			wantBody(t, "last wrong code", res, "too many wrong codes")
		}
	}
	res := b.submitCode(token, code)
	wantStatus(t, "right code after too many wrong ones", res, http.StatusUnauthorized)
	wantBody(t, "right code after too many wrong ones", res, "Sign-in failed")
}

// wrongCode returns a well-formed code that differs from code.
func wrongCode(code string) string {
	c, _ := NormalizeCode(code)
	b := []byte(c)
	if b[0] == '2' {
		b[0] = '3'
	} else {
		b[0] = '2'
	}
	return string(b)
}

// TestNewCodeReplacesOld checks that a resend after the cooldown makes a
// new code and the first one stops working.
func TestNewCodeReplacesOld(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/tickets/9", jane.Email)
	first := mailCode(t, tp.waitMail(t, 1))

	// Within the cooldown: no new code, and the page says how long to wait.
	tp.clock.Advance(10 * time.Second)
	res := b.post("/_portal/resend", url.Values{"csrf": {token}})
	wantStatus(t, "resend within the cooldown", res, http.StatusTooManyRequests)
	wantBody(t, "resend within the cooldown", res, "Please wait 20 seconds")
	tp.settle(t)
	if n := tp.mail.count(); n != 1 {
		t.Fatalf("%d emails after a resend within the cooldown, want 1", n)
	}

	tp.clock.Advance(21 * time.Second)
	res = b.post("/_portal/resend", url.Values{"csrf": {token}})
	wantStatus(t, "resend after the cooldown", res, http.StatusOK)
	wantBody(t, "resend after the cooldown", res, "A new code is on its way.")
	second := mailCode(t, tp.waitMail(t, 2))
	if first == second {
		t.Skip("the two random codes are equal; nothing to compare")
	}

	res = b.submitCode(token, first)
	wantStatus(t, "first code after a resend", res, http.StatusUnauthorized)
	wantBody(t, "first code after a resend", res, "Sign-in failed")
	wantRedirect(t, "second code", b.submitCode(token, second), "/tickets/9")
}

// TestSignInAnswerSameForUnknownEmail checks that an email that matches no
// eligible contact gets the same answer, and no mail.
func TestSignInAnswerSameForUnknownEmail(t *testing.T) {
	tp := newTestPortal(t, nil)
	pages := map[string]string{}
	for _, email := range []string{jane.Email, "nobody@acme.example", bob.Email} {
		b := tp.browser(t, tp.acme)
		b.requestCode("/", email)
		res := b.get("/_portal/code")
		pages[email] = csrfField.ReplaceAllString(res.body, "")
		pages[email] = strings.ReplaceAll(pages[email], email, "EMAIL") // the typed address, shown in full
	}
	if pages[jane.Email] != pages["nobody@acme.example"] || pages[jane.Email] != pages[bob.Email] {
		t.Errorf("code pages differ by contact:\n%s\n---\n%s", pages[jane.Email], pages["nobody@acme.example"])
	}
	tp.settle(t)
	msgs := tp.mail.all()
	if len(msgs) != 1 || msgs[0].To != jane.Email {
		t.Fatalf("sent %d emails (%v), want one to %s", len(msgs), msgs, jane.Email)
	}
}

// TestSendRateLimit checks SendsPerEmail: the third send in a window to
// one contact is not mailed, and the answer is the one every address gets
// (a 429 here would tell contacts from strangers); the refusal is audited,
// and the window's end lifts the limit.
func TestSendRateLimit(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{SendsPerEmail: 2} })
	tp.alignToWindow(DefaultLimits.Window)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email) // send 1
	tp.waitMail(t, 1)

	tp.clock.Advance(31 * time.Second)
	wantStatus(t, "send 2", b.post("/_portal/resend", url.Values{"csrf": {token}}), http.StatusOK)
	tp.waitMail(t, 2)

	tp.clock.Advance(31 * time.Second)
	third := b.post("/_portal/resend", url.Values{"csrf": {token}})
	wantStatus(t, "send 3", third, http.StatusOK)
	tp.settle(t)
	if n := tp.mail.count(); n != 2 {
		t.Fatalf("%d emails, want 2", n)
	}
	// The same answer as for an address that is no contact.
	tp.clock.Advance(31 * time.Second)
	nb := tp.browser(t, tp.acme)
	nb.ip = "198.51.100.9"
	ntoken := nb.requestCode("/", "nobody@acme.example")
	tp.clock.Advance(31 * time.Second)
	stranger := nb.post("/_portal/resend", url.Values{"csrf": {ntoken}})
	norm := func(r *response, email string) string {
		return strings.ReplaceAll(csrfField.ReplaceAllString(r.body, ""), email, "EMAIL") // the typed address, shown in full
	}
	if norm(third, jane.Email) != norm(stranger, "nobody@acme.example") {
		t.Errorf("a limited contact's answer differs from a stranger's:\n%s\n---\n%s", third.body, stranger.body)
	}
	if events := tp.auditEvents(t, EventRateLimited); len(events) != 1 || events[0].ContactID != jane.ID {
		t.Fatalf("rate_limited events %+v, want one for jane", events)
	}

	tp.alignToWindow(DefaultLimits.Window)
	wantStatus(t, "send in the next window", b.post("/_portal/resend", url.Values{"csrf": {token}}), http.StatusOK)
	tp.waitMail(t, 3)
}

// TestRequestLimitPerIP checks RequestsPerIP: the third sign-in request
// from one client network is refused with 429 and Retry-After, the page
// does not claim a code was sent, nothing is queued, and another network
// is not affected.
func TestRequestLimitPerIP(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{RequestsPerIP: 2} })
	tp.alignToWindow(DefaultLimits.Window)
	for _, email := range []string{"a@acme.example", "b@acme.example"} {
		tp.browser(t, tp.acme).requestCode("/", email)
	}
	tp.settle(t)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "GET", b.get("/"), "/_portal/signin")
	token := csrf(t, b.get("/_portal/signin"))
	res := b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {jane.Email}})
	wantStatus(t, "third request from one IP", res, http.StatusTooManyRequests)
	wantBody(t, "third request from one IP", res, "Try again in")
	if strings.Contains(res.body, "emailed") {
		t.Errorf("the 429 page claims a code was sent:\n%s", res.body)
	}
	if ra := res.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	tp.wantNoMail(t)

	b2 := tp.browser(t, tp.acme)
	b2.ip = "198.51.100.7"
	b2.requestCode("/", jane.Email)
	tp.waitMail(t, 1)
}

// TestTryRateLimit checks TriesPerIP: the third code entry in a window is
// refused with 429 (even the right code), refused entries cost the flow
// none of its tries, another IP is not affected, and the next window
// lifts the limit.
func TestTryRateLimit(t *testing.T) {
	const window = 5 * time.Minute // shorter than code_ttl, so the code outlives it
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{TriesPerIP: 2, Window: window} })
	tp.alignToWindow(window)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/tickets/1", jane.Email)
	code := mailCode(t, tp.waitMail(t, 1))
	for range 2 {
		res := b.submitCode(token, wrongCode(code))
		wantStatus(t, "wrong code", res, http.StatusUnauthorized)
	}
	res := b.submitCode(token, code)
	wantStatus(t, "third try", res, http.StatusTooManyRequests)
	wantBody(t, "third try", res, "Try again in")
	if b.cookie(cookieSession) != "" {
		t.Fatal("signed in past the try limit")
	}
	// Refused tries spend nothing of the flow's own MaxCodeTries: were
	// they counted, the code would be dead in the next window.
	for range MaxCodeTries {
		wantStatus(t, "refused try", b.submitCode(token, wrongCode(code)), http.StatusTooManyRequests)
	}

	// Another address still gets its own tries (a wrong code, to keep the
	// right one for later).
	b2 := tp.browser(t, tp.acme)
	b2.ip = "198.51.100.7"
	token2 := b2.requestCode("/", jane.Email)
	wantStatus(t, "try from another IP", b2.submitCode(token2, wrongCode(code)), http.StatusUnauthorized)

	tp.alignToWindow(window)
	wantRedirect(t, "right code in the next window", b.submitCode(token, code), "/tickets/1")
}

// TestSignInFormErrors covers the answers to bad forms.
func TestSignInFormErrors(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "GET", b.get("/"), "/_portal/signin")
	token := csrf(t, b.get("/_portal/signin"))

	res := b.post("/_portal/signin", url.Values{"email": {jane.Email}})
	wantStatus(t, "no CSRF token", res, http.StatusForbidden)
	res = b.post("/_portal/signin", url.Values{"csrf": {token + "x"}, "email": {jane.Email}})
	wantStatus(t, "wrong CSRF token", res, http.StatusForbidden)
	res = b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {"not an email"}})
	wantStatus(t, "bad email", res, http.StatusBadRequest)
	wantBody(t, "bad email", res, "Enter a valid email address")

	anon := tp.browser(t, tp.acme)
	res = anon.post("/_portal/signin", url.Values{"csrf": {token}, "email": {jane.Email}})
	wantStatus(t, "no flow cookie", res, http.StatusBadRequest)

	wantRedirect(t, "code without email", b.post("/_portal/code", url.Values{"csrf": {token}, "code": {"ABC-DEFG"}}), "/_portal/signin")
	tp.wantNoMail(t)
}

// FuzzSignInForm posts random bodies and content types to the three form
// endpoints with a live flow (tied to a contact's email, or not yet) and,
// when asked, the right CSRF token: never a panic, an error or a 5xx, and
// never a session.
func FuzzSignInForm(f *testing.F) {
	tp := newTestPortal(f, func(p *Portal) {
		p.Limits = Limits{SendsPerEmail: 1 << 30, SendsPerIP: 1 << 30, SendsPerWorkspace: 1 << 30,
			TriesPerIP: 1 << 30, TriesPerContact: 1 << 30, RequestsPerIP: 1 << 30}
	})
	const form = "application/x-www-form-urlencoded"
	// endpoint%3 picks the form; endpoint/3%2 == 1 gives a flow that
	// already holds jane's email (so a code may be live).
	seeds := []struct {
		endpoint uint8
		ct, body string
		csrf     bool
	}{
		{0, form, "email=jane%40acme.example", true},
		{0, form, "email=JANE@ACME.EXAMPLE&email=x", true},
		{0, form, "email=%zz", true},
		{3, form, "email=" + strings.Repeat("a", 300) + "@acme.example", true},
		{0, "", "email=jane@acme.example", true},
		{4, form, "code=ABC-DEFG", true},
		{4, form, "code=abc+defg", true},
		{4, form, "code=" + strings.Repeat("2", 100), true},
		{4, form, "code=ABC-DEFG", false},
		{1, form, "code=ABC-DEFG", true},
		{5, form, "", true},
		{2, form, "", true},
		{5, "text/plain", "csrf=x", false},
		{4, "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"code\"\r\n\r\nABCDEFG\r\n--x--\r\n", true},
		{3, "application/x-www-form-urlencoded; charset=\x00", "a=b", true},
		{4, form, strings.Repeat("code=2&", 2000), true},
		{4, form, "code=2;code=3", true},
		{0, "text/html; ;;", "", false},
	}
	for _, s := range seeds {
		f.Add(s.endpoint, s.ct, s.body, s.csrf)
	}
	endpoints := []string{"/_portal/signin", "/_portal/code", "/_portal/resend"}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, endpoint uint8, contentType, body string, withCSRF bool) {
		// A fresh flow for every input, so one input cannot change the
		// next one's starting point.
		now := tp.clock.Now()
		id := NewID()
		flow := storage.SignInFlow{IDHash: HashID(id), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(flowTTL)}
		if endpoint/3%2 == 1 {
			flow.Email, flow.Method = jane.Email, "code"
		}
		if err := tp.store.PutFlow(ctx, flow); err != nil {
			t.Fatal(err)
		}
		if withCSRF {
			body = "csrf=" + csrfFor(tp.acme, id) + "&" + body
		}
		target := endpoints[int(endpoint)%len(endpoints)]
		r := httptest.NewRequest(http.MethodPost, "http://support.acme.example"+target, strings.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		r.Header.Set("Accept", "text/html")
		r.AddCookie(&http.Cookie{Name: cookieFlow, Value: id})
		b := &browser{t: t, gate: tp.acme, jar: map[string]string{}}
		res := b.send(r)
		if res.status >= 500 {
			t.Fatalf("POST %s %q (%s): status %d:\n%s", target, body, contentType, res.status, res.body)
		}
		if res.passed {
			t.Fatalf("POST %s reached the portal", target)
		}
		for _, c := range res.cookies {
			if c.Name == cookieSession && c.Value != "" {
				t.Fatalf("POST %s %q (%s) set a session cookie", target, body, contentType)
			}
		}
		sessions, err := tp.store.Sessions(ctx, "acme", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(sessions) != 0 {
			t.Fatalf("POST %s %q (%s) created a session", target, body, contentType)
		}
	})
}

// TestFlowCookieOutlivesCode checks that a browser which asks for a code
// late in its sign-in flow can still enter it: the flow cookie must last as
// long as the flow, whose expiry every code request extends.
//
// The flow cookie is refreshed whenever the flow is extended, so a code
// asked for 25 minutes in and entered 6 minutes later still finds its flow.
func TestFlowCookieOutlivesCode(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "GET", b.get("/tickets/1"), "/_portal/signin")
	tp.clock.Advance(25 * time.Minute)
	token := csrf(t, b.get("/_portal/signin"))
	wantRedirect(t, "POST email", b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {jane.Email}}), "/_portal/code")
	code := mailCode(t, tp.waitMail(t, 1))
	tp.clock.Advance(6 * time.Minute) // the code has 4 minutes left
	wantRedirect(t, "right code", b.submitCode(token, code), "/tickets/1")
}
