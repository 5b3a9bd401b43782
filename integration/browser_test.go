package integration

// Proof in a real browser: headless Chromium, driven through the DevTools
// protocol, clicks and types through each sign-in journey against the
// in-process Caddy, the real SMTP mailbox and the real OIDC provider. The
// portal behind the gate serves HTML pages that show who is signed in.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// A contact opens a deep portal link, signs in with the emailed code, typed
// as people type it, and lands on the page they wanted.
func TestBrowserEmailCodeSignIn(t *testing.T) {
	g := newGateway(t)
	p := startWithPortal(t, g)
	c := newChrome(t, g)
	const wanted = "/tickets/1042?tab=history"

	c.expect(c.open(wanted), http.StatusOK, "/_portal/signin", "Sign in")
	if got := get(c, "page title", chromedp.Title()); got != "Sign in · Acme Support" {
		t.Errorf("sign-in page title %q", got)
	}
	c.shot("signin")

	c.submitEmail("jane@acme.example")
	if txt := c.text("main"); !strings.Contains(txt, "jane@acme.example") || !strings.Contains(txt, "10 minutes") {
		t.Errorf("the code page does not say where the code went and for how long:\n%s", txt)
	}
	c.shot("code")

	code := codeFor(t, g, "jane@acme.example")
	c.typeInto("#code", asTyped(code))
	c.expect(c.press(codeButton), http.StatusOK, wanted, "Ticket #1042")
	if who := c.text("#who"); who != "jane@acme.example" {
		t.Fatalf("the portal shows %q signed in", who)
	}
	if where := c.text("#where"); where != wanted {
		t.Fatalf("the portal was asked for %q", where)
	}

	// Signed in: the portal opens directly, with no more sign-in.
	c.expect(c.open("/tickets/7"), http.StatusOK, "/tickets/7", "Ticket #7")
	if hits := p.requests(); !slices.Equal(hits, []string{"GET " + wanted, "GET /tickets/7"}) {
		t.Fatalf("portal requests: %q", hits)
	}
	c.noProblems()
}

// A personalized link from the admin API sends the code at once; a broken
// link says so.
func TestBrowserPersonalizedLink(t *testing.T) {
	g := newGateway(t)
	startWithPortal(t, g)
	c := newChrome(t, g)
	const wanted = "/tickets/1043?tab=replies"
	_, link, _ := g.mintLink(t, `{"contact_id":"c-2","return_to":"`+wanted+`","ttl":"2h"}`)

	// A link cut short by a mail client.
	broken := link[:len(link)-5]
	r := c.open(broken)
	c.expect(r, http.StatusBadRequest, g.pathOf(t, broken), "Invalid portal link")
	if txt := c.text("main"); !strings.Contains(txt, "fresh link") {
		t.Errorf("the invalid link page does not say what to do:\n%s", txt)
	}
	c.shot("invalid-link")

	c.expect(c.open(link), http.StatusOK, "/_portal/code", "Enter your sign-in code")
	code := codeFor(t, g, "sam@acme.example")
	c.typeInto("#code", asTyped(code))
	c.expect(c.press(codeButton), http.StatusOK, wanted, "Ticket #1043")
	if who := c.text("#who"); who != "sam@acme.example" {
		t.Fatalf("the portal shows %q signed in", who)
	}
	c.noProblems()
}

// SSO with a Google-shaped provider: one click, the provider answers at
// once, and the browser is back on the deep link.
func TestBrowserSSOGoogle(t *testing.T) {
	g, _ := ssoGateway(t, "google", "google", "")
	startWithPortal(t, g)
	c := newChrome(t, g)
	const wanted = "/tickets/1042?tab=history"

	c.expect(c.open(wanted), http.StatusOK, "/_portal/signin", "Sign in")
	const button = `a[href="/_portal/sso/google"]`
	if txt := c.text(button); txt != "Continue with Google" {
		t.Fatalf("SSO button says %q", txt)
	}
	c.shot("signin-sso")
	c.expect(c.act("clicking Continue with Google", chromedp.Click(chromedp.CSS(button))), http.StatusOK, wanted, "Ticket #1042")
	if who := c.text("#who"); who != "jane@acme.example" {
		t.Fatalf("the portal shows %q signed in", who)
	}
	g.mail.none(t, 200*time.Millisecond)
	if ev := g.auditEvents("event=sso_success"); len(ev) != 1 {
		t.Fatalf("sso_success events: %v", ev)
	}
	c.noProblems()
}

var waitPattern = regexp.MustCompile(`^Resend code \(wait (\d+) s\)$`)

// resendWait reads the countdown on the Resend button, checking the button
// is disabled while it runs and that the wait is shown once, on the button
// only.
func (c *chrome) resendWait() int {
	c.t.Helper()
	txt := c.text(resendButton)
	m := waitPattern.FindStringSubmatch(txt)
	if m == nil {
		c.t.Fatalf("the Resend button says %q, want a countdown", txt)
	}
	if !get(c, "reading the Resend button", chromedp.JavascriptAttribute[bool](chromedp.CSS(resendButton), "disabled")) {
		c.t.Fatalf("the Resend button is enabled during the countdown")
	}
	n, _ := strconv.Atoi(m[1])
	if c.has("#resend-wait") {
		c.t.Fatalf("the wait is shown twice: on the button and in a hint")
	}
	return n
}

// The resend cooldown is shown as a live countdown on a disabled button;
// an impatient contact who gets round it is told to wait, and no second
// code is sent.
func TestBrowserResendCooldown(t *testing.T) {
	g := newGateway(t)
	startWithPortal(t, g)
	c := newChrome(t, g)
	const wanted = "/tickets/1042?tab=history"

	c.expect(c.open(wanted), http.StatusOK, "/_portal/signin", "Sign in")
	c.submitEmail("jane@acme.example")
	first := c.resendWait()
	if first < 28 || first > 30 {
		t.Fatalf("the countdown starts at %d, want about 30 (resend_cooldown 30s)", first)
	}
	start := time.Now()
	c.do("waiting", chromedp.Sleep(2200*time.Millisecond))
	later := c.resendWait()
	elapsed := int(time.Since(start) / time.Second)
	if later > first-elapsed+1 || later < first-elapsed-1 {
		t.Fatalf("after %s the countdown went from %d to %d", time.Since(start).Round(100*time.Millisecond), first, later)
	}

	// Clicking the disabled button does nothing.
	c.do("clicking the disabled Resend button", chromedp.Click(chromedp.CSS(resendButton)), chromedp.Sleep(300*time.Millisecond))
	if path := c.path(); path != "/_portal/code" || c.has(".alert") {
		t.Fatalf("a disabled Resend button did something: on %s", path)
	}

	// An impatient contact enables it by hand.
	c.do("enabling the Resend button", chromedp.RemoveAttribute(chromedp.CSS(resendButton), "disabled"))
	r := c.press(resendButton)
	// Post/Redirect/Get: the refusal is shown on GET /_portal/code, so a
	// reload never posts the resend again.
	c.expect(r, http.StatusTooManyRequests, "/_portal/code", "Enter your sign-in code")
	msg := c.text(".alert.error")
	if !regexp.MustCompile(`^Please wait \d+ seconds before asking for another code\.$`).MatchString(msg) {
		t.Fatalf("the refused resend says %q", msg)
	}
	c.shot("resend-wait")
	if n := c.resendWait(); n > later || n < later-5 {
		t.Fatalf("after the refused resend the countdown shows %d (was %d)", n, later)
	}
	code := codeFor(t, g, "jane@acme.example")
	g.mail.none(t, 500*time.Millisecond)

	// The first code still works from this page.
	c.typeInto("#code", asTyped(code))
	c.expect(c.press(codeButton), http.StatusOK, wanted, "Ticket #1042")
	c.noProblems()
}

// A wrong code shows "Sign-in failed" on the code page; the right one then
// works.
func TestBrowserWrongCodeThenRightCode(t *testing.T) {
	g := newGateway(t)
	startWithPortal(t, g)
	c := newChrome(t, g)
	const wanted = "/tickets/1042?tab=history"

	c.expect(c.open(wanted), http.StatusOK, "/_portal/signin", "Sign in")
	c.submitEmail("sam@acme.example")
	code := codeFor(t, g, "sam@acme.example")

	// A well-formed code with one character mistyped.
	wrong := []byte(code)
	if wrong[6] == 'Z' {
		wrong[6] = 'Y'
	} else {
		wrong[6] = 'Z'
	}
	c.typeInto("#code", asTyped(string(wrong)))
	r := c.press(codeButton)
	c.expect(r, http.StatusUnauthorized, "/_portal/code", "Enter your sign-in code")
	if msg := c.text(".alert.error"); !strings.HasPrefix(msg, "Sign-in failed") {
		t.Fatalf("a wrong code says %q", msg)
	}
	if v := get(c, "reading the code field", chromedp.Value(chromedp.CSS("#code"))); v != "" {
		t.Errorf("the code field keeps the wrong code %q", v)
	}
	c.shot("signin-failed")

	c.typeInto("#code", asTyped(code))
	c.expect(c.press(codeButton), http.StatusOK, wanted, "Ticket #1042")
	if who := c.text("#who"); who != "sam@acme.example" {
		t.Fatalf("the portal shows %q signed in", who)
	}
	c.noProblems()
}

// Sign-out from the portal's own button (a plain form: Chromium's
// Sec-Fetch-Site and Origin vouch for it) ends the session: the browser is
// on the sign-in page and the deep link asks for sign-in again. The same
// form on a page of another origin changes nothing.
func TestBrowserSignOut(t *testing.T) {
	g := newGateway(t)
	p := startWithPortal(t, g)
	c := newChrome(t, g)
	const wanted = "/tickets/1042?tab=history"

	c.signInByCode(g, "jane@acme.example", wanted)

	// Another origin on the same host (another port): a forged sign-out
	// button is refused, and the session lives on.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>Elsewhere</title><form id="signout" method="post" action="%s/_portal/signout"><button type="submit">Win a prize</button></form>`, c.base)
	}))
	defer evil.Close()
	c.do("opening a page of another origin", chromedp.Navigate(evil.URL))
	// It lands on the confirmation page, which says so and offers its own
	// buttons.
	c.expect(c.press(`#signout button`), http.StatusForbidden, "/_portal/signout?refused=1", "Sign-out failed")
	c.expect(c.open(wanted), http.StatusOK, wanted, "Ticket #1042")

	hits := len(p.requests())
	c.expect(c.press(`#signout button`), http.StatusOK, "/_portal/signin?signed_out=1", "Sign in")
	if msg := c.text(".alert.notice"); msg != "You have signed out." {
		t.Fatalf("notice after sign-out: %q", msg)
	}
	c.expect(c.open(wanted), http.StatusOK, "/_portal/signin", "Sign in")
	if n := len(p.requests()); n != hits {
		t.Fatalf("the portal got %d requests after sign-out: %q", n-hits, p.requests()[hits:])
	}
	if ev := g.auditEvents("event=session_ended"); len(ev) != 1 {
		t.Fatalf("session_ended events: %v", ev)
	}

	c.noProblems()
}

// Signing in again right after signing out falls inside the resend
// cooldown: no code is sent, and the code page says so.
func TestBrowserSignInAgainWithinCooldown(t *testing.T) {
	g := newGateway(t)
	startWithPortal(t, g)
	c := newChrome(t, g)
	const wanted = "/tickets/1042?tab=history"
	c.signInByCode(g, "jane@acme.example", wanted)
	c.expect(c.press(`#signout button`), http.StatusOK, "/_portal/signin?signed_out=1", "Sign in")
	c.expect(c.open(wanted), http.StatusOK, "/_portal/signin", "Sign in")
	c.submitEmail("jane@acme.example")
	if msg := c.text(".alert.notice"); !strings.Contains(msg, "no new one was sent") {
		t.Fatalf("notice %q", msg)
	}
	c.shot("held")
	c.resendWait()
	g.mail.none(t, 500*time.Millisecond)
	c.noProblems()
}
