package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kdesk/portalgate/integration/e2e"
)

// A contact who opens a deep link signs in with an emailed code and lands
// on that exact page, and the portal receives their identity, never a
// client's forged copy of it.
func TestCodeSignInReturnsToWantedPage(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()

	forged := []string{"X-Portal-Contact-Id", "c-999", "X-Portal-Contact-Email", "evil@x.example", "X-Portal-Workspace", "other"}
	r := b.get("/tickets/1042?tab=history", forged...)
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/signin" {
		t.Fatalf("not signed in: %d %q, want 303 to /_portal/signin", r.Status, r.Location)
	}
	if strings.Contains(r.Location, "1042") {
		t.Fatalf("the wanted path leaked into the redirect: %q", r.Location)
	}
	if g.up.requests() != 0 {
		t.Fatal("a request reached the portal before sign-in")
	}

	csrf := b.submitEmail("Jane@ACME.example")
	m := g.mail.wait(t, 10*time.Second)
	if m.To[0] != "jane@acme.example" || !strings.Contains(m.Data, "Acme Support") {
		t.Fatalf("unexpected mail: %+v", m)
	}
	code := m.Code()
	if len(code) != 7 {
		t.Fatalf("no code in mail:\n%s", m.Data)
	}
	// Typed in lower case with a space, as people do.
	r = b.enterCode(csrf, strings.ToLower(code[:3])+" "+code[3:])
	if r.Status != http.StatusSeeOther || r.Location != "/tickets/1042?tab=history" {
		t.Fatalf("right code: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	signedIn := r
	sc := r.Header.Get("Set-Cookie")
	if !strings.Contains(strings.Join(r.Header.Values("Set-Cookie"), ";"), "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
		t.Fatalf("session cookie flags: %q", r.Header.Values("Set-Cookie"))
	}

	r = b.get("/tickets/1042?tab=history", forged...)
	path, h := seen(t, r)
	if r.Status != http.StatusOK || path != "/tickets/1042?tab=history" {
		t.Fatalf("signed in: %d %q", r.Status, path)
	}
	if c := h.Get("Cookie"); strings.Contains(c, "portal_") {
		t.Fatalf("the portal received the gate's cookies: %q", c)
	}
	for k, want := range map[string]string{
		"X-Portal-Contact-Id":    "c-1",
		"X-Portal-Contact-Email": "jane@acme.example",
		"X-Portal-Contact-Name":  "Jane Doe",
		"X-Portal-Workspace":     "acme",
		"X-Auth-User-Id":         "c-1",
		"X-Auth-User-Email":      "jane@acme.example",
	} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want only %q", k, got, want)
		}
	}
	// Neither the code, the CSRF token nor the session id is ever logged.
	cookies := strings.Join(signedIn.Header.Values("Set-Cookie"), ";")
	sessionID := cookies[strings.Index(cookies, "portal_session=")+len("portal_session="):]
	sessionID = sessionID[:strings.IndexByte(sessionID, ';')]
	logs := g.logText()
	if !strings.Contains(logs, "code_accepted") {
		t.Fatal("the sign-in was not logged")
	}
	for _, secret := range []string{code, code[:3] + "-" + code[3:], csrf, sessionID} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log contains a secret %q", secret)
		}
	}

	// The code works once (and the cooldown holds back another mail).
	csrf2 := b.submitEmail("jane@acme.example")
	if r := b.enterCode(csrf2, code); r.Status != http.StatusUnauthorized || !strings.Contains(r.Body, "Sign-in failed") {
		t.Fatalf("reused code: %d", r.Status)
	}
}

func TestAPICallsGet401JSON(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()
	for _, hdr := range [][]string{
		{"Accept", "application/json"},
		{"Accept", "text/html", "X-Requested-With", "XMLHttpRequest"},
	} {
		r := b.get("/api/tickets", hdr...)
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("Content-Type"), "application/json") ||
			!strings.Contains(r.Body, `"sign_in_required"`) {
			t.Errorf("%v: %d %s %s", hdr, r.Status, r.Header.Get("Content-Type"), r.Body)
		}
	}
	if g.up.requests() != 0 {
		t.Fatal("an unauthenticated API call reached the portal")
	}
}

func TestDisabledWorkspaceIsUnavailable(t *testing.T) {
	g := newGateway(t)
	g.extraWorkspace = "disabled"
	g.start()
	b := g.browser()
	for _, p := range []string{"/", "/tickets/1", "/_portal/signin"} {
		r := b.get(p)
		if r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "Portal unavailable") {
			t.Errorf("GET %s: %d", p, r.Status)
		}
	}
	if r := b.get("/api", "Accept", "application/json"); r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "portal_unavailable") {
		t.Errorf("API: %d %s", r.Status, r.Body)
	}
	// The sign-in attempt is audited; the portal page views are not.
	if ev := g.signInEvents(""); len(ev) != 1 || ev[0] != "portal_unavailable" {
		t.Errorf("audit: %v", ev)
	}
	if g.up.requests() != 0 {
		t.Error("a request reached a disabled portal")
	}
}

// The answer to an email submission does not tell whether the email
// belongs to an eligible contact; only eligible contacts get mail.
func TestEmailSubmissionDoesNotRevealContacts(t *testing.T) {
	g := newGateway(t)
	g.start()
	normalize := func(body, email string) string {
		body = e2e.CSRFPattern.ReplaceAllString(body, "")
		// The code page shows the typed address in full.
		return strings.ReplaceAll(body, email, "EMAIL")
	}
	var pages []string
	for _, email := range []string{"sam@acme.example", "nobody@acme.example", "former@acme.example"} {
		b := g.browser()
		page := b.get("/_portal/signin")
		start := time.Now()
		r := b.post("/_portal/signin", url.Values{"csrf": {csrfOf(t, page.Body)}, "email": {email}})
		if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
			t.Errorf("%s: the submission took %s; mail must not be sent inside the request", email, elapsed)
		}
		if r.Status != http.StatusSeeOther || r.Location != "/_portal/code" {
			t.Fatalf("%s: %d %q", email, r.Status, r.Location)
		}
		code := b.get("/_portal/code")
		pages = append(pages, fmt.Sprint(code.Status)+normalize(code.Body, email))
	}
	for i := 1; i < len(pages); i++ {
		if pages[i] != pages[0] {
			t.Fatalf("code page %d differs from the first:\n%s\n---\n%s", i, pages[0], pages[i])
		}
	}
	m := g.mail.wait(t, 10*time.Second)
	if m.To[0] != "sam@acme.example" {
		t.Fatalf("mail to %v", m.To)
	}
	eventually(t, 10*time.Second, "two code_not_sent audit events", func() bool {
		return strings.Count(strings.Join(g.auditEvents("event=code_not_sent"), ","), "code_not_sent") == 2
	})
	g.mail.none(t, 300*time.Millisecond)
}

func TestFiveWrongCodesKillTheCode(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()
	b.get("/dashboard")
	csrf := b.submitEmail("sam@acme.example")
	code := g.mail.wait(t, 10*time.Second).Code()
	wrong := "2222222"
	if code == wrong {
		wrong = "3333333"
	}
	for i := 0; i < 5; i++ {
		r := b.enterCode(csrf, wrong)
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Body, "Sign-in failed") {
			t.Fatalf("wrong code %d: %d", i+1, r.Status)
		}
	}
	if r := b.enterCode(csrf, code); r.Status != http.StatusUnauthorized {
		t.Fatalf("the right code after 5 wrong tries: %d %q, want refused", r.Status, r.Location)
	}
	if r := b.enterCode(csrf, "not a code!"); r.Status != http.StatusUnauthorized || !strings.Contains(r.Body, "7 letters") {
		t.Fatalf("malformed code: %d", r.Status)
	}
}

func TestResendCooldownIsShown(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()
	csrf := b.submitEmail("sam@acme.example")
	first := g.mail.wait(t, 10*time.Second).Code()
	page := b.get("/_portal/code")
	if !strings.Contains(page.Body, "Resend code (wait ") {
		t.Fatalf("code page does not show the cooldown:\n%s", page.Body)
	}
	r := b.post("/_portal/resend", url.Values{"csrf": {csrf}})
	if r.Status != http.StatusTooManyRequests || !strings.Contains(r.Body, "Please wait") || !strings.Contains(r.Body, "seconds") {
		t.Fatalf("resend within cooldown: %d\n%s", r.Status, r.Body)
	}
	g.mail.none(t, 300*time.Millisecond)
	// The first code still works.
	if r := b.enterCode(csrf, first); r.Status != http.StatusSeeOther {
		t.Fatalf("first code: %d", r.Status)
	}
}

func TestCSRFIsRequired(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()
	b.get("/_portal/signin")
	r := b.post("/_portal/signin", url.Values{"email": {"sam@acme.example"}, "csrf": {"forged"}})
	if r.Status != http.StatusForbidden {
		t.Fatalf("forged csrf: %d", r.Status)
	}
	// A form from another browser (no flow cookie) is refused too.
	other := g.browser()
	r = other.post("/_portal/signin", url.Values{"email": {"sam@acme.example"}})
	if r.Status != http.StatusBadRequest {
		t.Fatalf("no flow: %d", r.Status)
	}
	g.mail.none(t, 300*time.Millisecond)
}

// Sign-out: a plain button in the portal works when the browser vouches for
// it, a link to /_portal/signout asks first, and a post from another site
// changes nothing.
func TestSignOutEndsTheSession(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()
	b.signIn("sam@acme.example", "/")
	r := b.get("/")
	if _, h := seen(t, r); h.Get("X-Portal-Csrf") != "" {
		t.Fatal("the portal gets a sign-out token it does not need")
	}
	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Origin", "https://evil.example"},
		{"Sec-Fetch-Site", "same-origin"}, // with a wrong token
	} {
		if r := b.post("/_portal/signout", url.Values{"csrf": {"wrong"}}, hdr...); r.Status != http.StatusForbidden {
			t.Fatalf("sign-out with %v: %d", hdr, r.Status)
		}
	}
	// The post itself is redirected to the confirmation page and sets no
	// cookie.
	if r, err := b.c.Post("/_portal/signout", url.Values{}, "Origin", "https://evil.example"); err != nil || r.Status != http.StatusSeeOther || r.Location != "/_portal/signout?refused=1" || r.Header.Get("Set-Cookie") != "" {
		t.Fatalf("sign-out from another site: %d %q, Set-Cookie %q, %v", r.Status, r.Location, r.Header.Get("Set-Cookie"), err)
	}
	if r := b.get("/"); r.Status != http.StatusOK {
		t.Fatalf("still signed in after a refused sign-out: %d", r.Status)
	}
	// A portal can also just link to /_portal/signout: a confirmation page
	// carries the token. A post with neither token nor browser headers gets
	// the same page.
	page := b.get("/_portal/signout")
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "sam@acme.example") {
		t.Fatalf("sign-out page: %d\n%s", page.Status, page.Body)
	}
	token := csrfOf(t, page.Body)
	if again := b.post("/_portal/signout", url.Values{}); again.Status != http.StatusOK || csrfOf(t, again.Body) != token {
		t.Fatalf("sign-out without a token: %d\n%s", again.Status, again.Body)
	}
	r = b.post("/_portal/signout", url.Values{"csrf": {token}})
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/signin?signed_out=1" {
		t.Fatalf("sign-out: %d %q", r.Status, r.Location)
	}
	if r := b.get("/_portal/signout"); r.Status != http.StatusSeeOther || r.Location != "/_portal/signin" {
		t.Fatalf("sign-out page when signed out: %d %q", r.Status, r.Location)
	}
	if r := b.get("/"); r.Status != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d", r.Status)
	}

	// The portal's own button: the browser's Origin names this site.
	b.signIn("jane@acme.example", "/")
	r = b.post("/_portal/signout", url.Values{}, "Origin", g.base())
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/signin?signed_out=1" {
		t.Fatalf("sign-out button: %d %q", r.Status, r.Location)
	}
	if r := b.get("/"); r.Status != http.StatusSeeOther {
		t.Fatalf("after the sign-out button: %d", r.Status)
	}
}

// Sessions survive a config reload and a full restart; a reload never trips
// over Badger's directory lock.
func TestSessionsSurviveReloadAndRestart(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()
	b.signIn("jane@acme.example", "/tickets")

	g.title = "Acme Help Center"
	g.start() // a reload: the new config is started before the old one stops
	if r := b.get("/tickets"); r.Status != http.StatusOK {
		t.Fatalf("after reload: %d %q", r.Status, r.Location)
	}
	r := g.browser().get("/_portal/signin")
	if !strings.Contains(r.Body, "Acme Help Center") {
		t.Fatal("the reloaded config is not serving")
	}

	g.stop()
	g.start()
	if r := b.get("/tickets"); r.Status != http.StatusOK {
		t.Fatalf("after restart: %d %q", r.Status, r.Location)
	}
}

// A contact disabled or deleted after sign-in loses access at once.
func TestDisabledContactLosesAccess(t *testing.T) {
	g := newGateway(t)
	g.start()
	jane, sam := g.browser(), g.browser()
	jane.signIn("jane@acme.example", "/")
	sam.signIn("sam@acme.example", "/")

	status, body := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts", "application/json",
		[]byte(`[{"id":"c-1","email":"jane@acme.example","name":"Jane Doe","status":"disabled"}]`))
	if status != http.StatusOK {
		t.Fatalf("disabling: %d %s", status, body)
	}
	if r := jane.get("/"); r.Status != http.StatusSeeOther {
		t.Fatalf("disabled contact: %d", r.Status)
	}
	if status, body := g.adminDo(http.MethodDelete, "/portal/workspaces/acme/contacts/c-2", "", nil); status != http.StatusOK {
		t.Fatalf("deleting: %d %s", status, body)
	}
	if r := sam.get("/"); r.Status != http.StatusSeeOther {
		t.Fatalf("deleted contact: %d", r.Status)
	}
}

// Many contacts sign in at once (run under -race by the test command).
func TestConcurrentSignIns(t *testing.T) {
	g := newGateway(t)
	var cs []string
	for i := range 12 {
		cs = append(cs, fmt.Sprintf(`{"id":"p-%d","email":"p%d@acme.example","name":"P %d"}`, i, i, i))
	}
	g.contacts = "[" + strings.Join(cs, ",") + "]"
	g.start()

	type pending struct {
		b    *browser
		csrf string
	}
	var mu sync.Mutex
	byEmail := map[string]pending{}
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := g.browser()
			email := fmt.Sprintf("p%d@acme.example", i)
			b.get(fmt.Sprintf("/tickets/%d", i))
			csrf := b.submitEmail(email)
			mu.Lock()
			byEmail[email] = pending{b, csrf}
			mu.Unlock()
		}()
	}
	wg.Wait()
	codes := map[string]string{}
	for range 12 {
		m := g.mail.wait(t, 20*time.Second)
		codes[m.To[0]] = m.Code()
	}
	for email, p := range byEmail {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var i int
			fmt.Sscanf(email, "p%d@", &i)
			r := p.b.enterCode(p.csrf, codes[email])
			if r.Status != http.StatusSeeOther || r.Location != fmt.Sprintf("/tickets/%d", i) {
				t.Errorf("%s: %d %q", email, r.Status, r.Location)
				return
			}
			for range 5 {
				r := p.b.get(r.Location)
				if _, h := seen(t, r); h.Get("X-Portal-Contact-Email") != email {
					t.Errorf("%s saw identity %q", email, h.Get("X-Portal-Contact-Email"))
				}
			}
		}()
	}
	wg.Wait()
}

// The contacts file is authoritative for the contacts it brought in: a
// reload with a file that no longer lists sam disables him and ends his
// open session at its next request; jane (still listed) and a contact
// added through the admin API stay signed in.
func TestContactsFileIsAuthoritativeOnReload(t *testing.T) {
	g := newGateway(t)
	g.start()
	if status, body := g.adminDo(http.MethodPut, "/portal/workspaces/acme/contacts", "application/json",
		[]byte(`[{"id":"c-9","email":"ann@acme.example","name":"Ann Admin"}]`)); status != http.StatusOK {
		t.Fatalf("adding ann: %d %s", status, body)
	}
	jane, sam, ann := g.browser(), g.browser(), g.browser()
	jane.signIn("jane@acme.example", "/")
	sam.signIn("sam@acme.example", "/")
	ann.signIn("ann@acme.example", "/")

	g.contacts = `[
 {"id": "c-1", "email": "jane@acme.example", "name": "Jane Doe", "source": "directory", "directory_id": "d-1"},
 {"id": "c-3", "email": "former@acme.example", "name": "Former", "status": "disabled"}
]`
	g.start() // caddy reload
	// The old config's server may still reset a connection or two.
	eventually(t, 5*time.Second, "the reloaded server answering", func() bool {
		_, err := g.browser().c.Get("/_portal/signin")
		return err == nil
	})
	if r := sam.get("/"); r.Status != http.StatusSeeOther || r.Location != "/_portal/signin" {
		t.Fatalf("sam, no longer in the file: %d %q, want 303 to sign in", r.Status, r.Location)
	}
	for who, b := range map[string]*browser{"jane": jane, "ann (admin API)": ann} {
		if r := b.get("/"); r.Status != http.StatusOK {
			t.Fatalf("%s after the reload: %d %q", who, r.Status, r.Location)
		}
	}
	status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/contacts/c-2", "", nil)
	if status != http.StatusOK || !strings.Contains(body, `"status":"disabled"`) {
		t.Fatalf("sam after the reload: %d %s, want disabled", status, body)
	}
	status, body = g.adminDo(http.MethodGet, "/portal/workspaces/acme/sessions?contact_id=c-2", "", nil)
	if status != http.StatusOK || strings.Contains(body, "c-2") {
		t.Fatalf("sam's sessions after the reload: %d %s, want none", status, body)
	}
	if logs := g.logText(); !strings.Contains(logs, `"disabled":1`) {
		t.Fatal("the reload did not log one contact disabled")
	}
}
