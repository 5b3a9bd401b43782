package handlers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// The tests below run the real flows against a real Badger store, with one
// fake clock shared by the portal and the store, and a Sender that records
// what the outbox worker hands it.

// mailWait bounds every wait for the outbox worker; generous, because the
// race detector and concurrent builds slow everything down.
const mailWait = 30 * time.Second

// recordingSender is a mail.Sender that keeps every message.
type recordingSender struct {
	mu   sync.Mutex
	msgs []mail.Message
}

func (s *recordingSender) Send(_ context.Context, m mail.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	return nil
}

func (s *recordingSender) all() []mail.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mail.Message(nil), s.msgs...)
}

func (s *recordingSender) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// waitFor polls until cond holds, failing the test at the deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(mailWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testPortal is a started Portal with two workspaces, acme and other.
type testPortal struct {
	clock  *storagetest.Clock
	store  *badgerstore.Store
	portal *Portal
	mail   *recordingSender
	acme   *Gate
	other  *Gate
}

// Contacts every test portal starts with.
var (
	jane     = storage.Contact{ID: "c-1", Email: "jane@acme.example", Name: "Jane Doe"}
	bob      = storage.Contact{ID: "c-2", Email: "bob@acme.example", Name: "Bob Roe", Status: storage.StatusDisabled}
	otherOne = storage.Contact{ID: "o-1", Email: "olga@other.example", Name: "Olga Other"}
	// otherJane has jane's id in the other workspace: ids are only unique
	// within one.
	otherJane = storage.Contact{ID: "c-1", Email: "jane@other.example", Name: "Jane Other"}
)

func testWorkspace(name, base string) *Workspace {
	u, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	return &Workspace{
		Name:           name,
		Title:          strings.ToUpper(name[:1]) + name[1:] + " Support",
		URL:            u,
		AuthPath:       "/_portal",
		CodeTTL:        10 * time.Minute,
		ResendCooldown: 30 * time.Second,
		SessionTTL:     12 * time.Hour,
		SessionIdle:    2 * time.Hour,
		LinkTTL:        72 * time.Hour,
		LinkMaxTTL:     30 * 24 * time.Hour,
	}
}

// newTestPortal opens a Badger store in a temporary directory, loads the
// contacts and starts a portal on it. configure, when given, may change the
// portal (limits, workspaces) before Start.
func newTestPortal(t testing.TB, configure func(*Portal)) *testPortal {
	t.Helper()
	clock := storagetest.NewClock()
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("closing store: %v", err)
		}
	})
	pages, err := LoadPages("")
	if err != nil {
		t.Fatal(err)
	}
	acme := testWorkspace("acme", "https://support.acme.example")
	other := testWorkspace("other", "https://help.other.example")
	rec := &recordingSender{}
	p := &Portal{
		Workspaces: map[string]*Workspace{"acme": acme, "other": other},
		Sender:     rec,
		Pages:      pages,
		Now:        clock.Now,
	}
	if configure != nil {
		configure(p)
	}
	ctx := context.Background()
	for ws, cs := range map[string][]storage.Contact{"acme": {jane, bob}, "other": {otherOne, otherJane}} {
		for i := range cs {
			if err := cs[i].Normalize(); err != nil {
				t.Fatal(err)
			}
		}
		if err := store.PutContacts(ctx, ws, cs); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Start(context.Background(), store); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &testPortal{
		clock:  clock,
		store:  store,
		portal: p,
		mail:   rec,
		acme:   NewGate(p, acme),
		other:  NewGate(p, other),
	}
}

// waitMail waits until the recorder holds n messages and returns the nth.
func (tp *testPortal) waitMail(t testing.TB, n int) mail.Message {
	t.Helper()
	waitFor(t, "code email", func() bool { return tp.mail.count() >= n })
	return tp.mail.all()[n-1]
}

// settle waits until the outbox is empty: every queued message has been
// handed to the recorder (a message leaves the outbox only after Deliver).
func (tp *testPortal) settle(t testing.TB) {
	t.Helper()
	waitFor(t, "an empty outbox", func() bool {
		n, err := tp.store.OutboxLen(context.Background())
		return err == nil && n == 0
	})
}

// wantNoMail checks that nothing was queued or sent. The requests enqueue
// synchronously, so an empty outbox right after them is conclusive.
func (tp *testPortal) wantNoMail(t testing.TB) {
	t.Helper()
	n, err := tp.store.OutboxLen(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 || tp.mail.count() != 0 {
		t.Fatalf("mail queued or sent: outbox %d, sent %d", n, tp.mail.count())
	}
}

// alignToWindow moves the clock to the start of the next rate-limit window,
// so a test's hits never straddle two fixed windows.
func (tp *testPortal) alignToWindow(window time.Duration) {
	now := tp.clock.Now()
	tp.clock.Advance(now.Truncate(window).Add(window).Sub(now))
}

var codeInMail = regexp.MustCompile(`(?m)^\s+([` + codeAlphabet + `]{3}-[` + codeAlphabet + `]{4})\s*$`)

// mailCode is the code in a code email, as printed ("ABC-DEFG").
func mailCode(t testing.TB, m mail.Message) string {
	t.Helper()
	sub := codeInMail.FindStringSubmatch(m.Text)
	if sub == nil {
		t.Fatalf("no code in email:\n%s", m.Text)
	}
	if !strings.Contains(m.HTML, sub[1]) {
		t.Errorf("HTML part lacks the code %s", sub[1])
	}
	return sub[1]
}

// browser keeps cookies across requests to one gate, like a browser would,
// and lets them lapse at their Max-Age by the fake clock.
type browser struct {
	t     testing.TB
	gate  *Gate
	tls   bool
	ip    string
	jar   map[string]string
	clock *storagetest.Clock
	// expires holds the end of each cookie's Max-Age, when there is one.
	expires map[string]time.Time
	// setCookies is every Set-Cookie the browser received.
	setCookies []*http.Cookie
	// noFollow keeps the redirect of a refused form (see send).
	noFollow bool
}

func (tp *testPortal) browser(t testing.TB, g *Gate) *browser {
	return &browser{t: t, gate: g, ip: "192.0.2.10", jar: map[string]string{}, clock: tp.clock, expires: map[string]time.Time{}}
}

// response is one answer of the gate.
type response struct {
	status  int
	header  http.Header
	body    string
	cookies []*http.Cookie
	// passed is set when the request reached the portal behind the gate,
	// with the headers and placeholders it carried there.
	passed   bool
	identity http.Header
}

func (r *response) location() string { return r.header.Get("Location") }

// serve is what module/handler.go does: a signed-in request goes to next
// with the contact's identity, every other one the gate answers itself.
func serve(g *Gate, w http.ResponseWriter, r *http.Request, next http.Handler) error {
	c, ok, err := g.Authenticate(w, r)
	if !ok {
		return err
	}
	SetIdentity(r, c, g.ws.Name)
	next.ServeHTTP(w, r)
	return nil
}

// csrfFor is the CSRF token the gate's forms carry for a flow id.
func csrfFor(g *Gate, flowID string) string {
	return (&request{keys: g.portal.state.Load().keys[g.ws.Name]}).csrfToken(flowID)
}

// do sends one request through the gate. form, when not nil, is POSTed as
// application/x-www-form-urlencoded.
func (b *browser) do(method, target string, form url.Values, header http.Header) *response {
	b.t.Helper()
	scheme := "http"
	if b.tls {
		scheme = "https"
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, scheme+"://"+b.gate.ws.URL.Host+target, body)
	if b.tls != (r.TLS != nil) {
		b.t.Fatalf("request TLS = %v, want %v", r.TLS != nil, b.tls)
	}
	r.RemoteAddr = net.JoinHostPort(b.ip, "41234")
	r.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, vs := range header {
		r.Header[k] = vs
	}
	for name, value := range b.jar {
		if exp, ok := b.expires[name]; ok && b.clock != nil && !b.clock.Now().Before(exp) {
			delete(b.jar, name)
			continue
		}
		r.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	return b.send(r)
}

func (b *browser) send(r *http.Request) *response {
	b.t.Helper()
	out := &response{}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out.passed = true
		out.identity = http.Header{}
		for _, h := range identityHeaders {
			if v, ok := r.Header[h]; ok {
				out.identity[h] = v
			}
		}
		_, _ = io.WriteString(w, "the portal")
	})
	w := httptest.NewRecorder()
	if err := serve(b.gate, w, r, next); err != nil {
		b.t.Fatalf("%s %s: ServeHTTP returned %v", r.Method, r.URL, err)
	}
	res := w.Result()
	out.status, out.header, out.body = res.StatusCode, res.Header, w.Body.String()
	out.cookies = res.Cookies()
	for _, c := range out.cookies {
		b.setCookies = append(b.setCookies, c)
		if c.MaxAge < 0 || c.Value == "" {
			delete(b.jar, c.Name)
			continue
		}
		b.jar[c.Name] = c.Value
		delete(b.expires, c.Name)
		if c.MaxAge > 0 && b.clock != nil && b.expires != nil {
			b.expires[c.Name] = b.clock.Now().Add(time.Duration(c.MaxAge) * time.Second)
		}
	}
	// A refused form redirects to its page with the refusal
	// (Post/Redirect/Get); a browser follows, and so does this one, so
	// the answer is the page the contact sees, with its status.
	if out.status == http.StatusSeeOther && r.Method == http.MethodPost && !b.noFollow {
		// A sign-out that is refused or needs confirming lands on the
		// confirmation page.
		if loc := out.location(); strings.HasSuffix(loc, "/signout") || strings.HasSuffix(loc, "/signout?refused=1") {
			return b.get(loc)
		}
		for _, c := range out.cookies {
			if strings.HasSuffix(c.Name, cookieNotice) && c.Value != "" {
				return b.get(out.location())
			}
		}
	}
	return out
}

func (b *browser) get(target string) *response { return b.do(http.MethodGet, target, nil, nil) }

func (b *browser) post(target string, form url.Values) *response {
	return b.do(http.MethodPost, target, form, nil)
}

// cookie returns the value of the browser's cookie named base, with the
// __Host- prefix on HTTPS.
func (b *browser) cookie(base string) string {
	if b.tls || b.gate.httpsURL {
		base = "__Host-" + base
	}
	return b.jar[base]
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the form on a page.
func csrf(t testing.TB, res *response) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(res.body)
	if m == nil {
		t.Fatalf("no CSRF token on the page (status %d):\n%s", res.status, res.body)
	}
	return m[1]
}

func wantStatus(t testing.TB, what string, res *response, status int) {
	t.Helper()
	if res.status != status {
		t.Fatalf("%s: status %d, want %d; Location %q; body:\n%s", what, res.status, status, res.location(), res.body)
	}
}

func wantRedirect(t testing.TB, what string, res *response, to string) {
	t.Helper()
	wantStatus(t, what, res, http.StatusSeeOther)
	if got := res.location(); got != to {
		t.Fatalf("%s: Location %q, want %q", what, got, to)
	}
}

func wantBody(t testing.TB, what string, res *response, s string) {
	t.Helper()
	if !strings.Contains(res.body, s) {
		t.Fatalf("%s: page lacks %q (status %d):\n%s", what, s, res.status, res.body)
	}
}

// requestCode visits path, is sent to sign in, and asks for a code for
// email. It returns the code page's CSRF token.
func (b *browser) requestCode(path, email string) string {
	b.t.Helper()
	wantRedirect(b.t, "GET "+path, b.get(path), "/_portal/signin")
	page := b.get("/_portal/signin")
	wantStatus(b.t, "sign-in page", page, http.StatusOK)
	token := csrf(b.t, page)
	wantRedirect(b.t, "POST email", b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {email}}), "/_portal/code")
	codePage := b.get("/_portal/code")
	wantStatus(b.t, "code page", codePage, http.StatusOK)
	return csrf(b.t, codePage)
}

func (b *browser) submitCode(token, code string) *response {
	return b.post("/_portal/code", url.Values{"csrf": {token}, "code": {code}})
}

// signIn runs the whole emailed-code sign-in for jane from path and returns
// the answer to the right code.
func (tp *testPortal) signIn(b *browser, path string) *response {
	b.t.Helper()
	n := tp.mail.count()
	token := b.requestCode(path, jane.Email)
	code := mailCode(b.t, tp.waitMail(b.t, n+1))
	return b.submitCode(token, code)
}

// TestSignInWithCode is the happy path the other tests build on: the kept
// path is restored and the portal sees the contact, never the client's
// copies of the identity headers.
func TestSignInWithCode(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	res := tp.signIn(b, "/tickets/42?tab=history")
	wantRedirect(t, "right code", res, "/tickets/42?tab=history")
	if b.cookie(cookieSession) == "" {
		t.Fatal("no session cookie after sign-in")
	}
	if b.cookie(cookieFlow) != "" {
		t.Error("flow cookie kept after sign-in")
	}
	if m := tp.mail.all()[0]; m.To != jane.Email || !strings.Contains(m.Subject, "Acme Support") {
		t.Errorf("email to %q, subject %q", m.To, m.Subject)
	}

	forged := http.Header{HeaderContactID: {"c-999"}, HeaderWorkspace: {"evil"}}
	page := b.do(http.MethodGet, "/tickets/42", nil, forged)
	wantStatus(t, "signed-in page", page, http.StatusOK)
	if !page.passed {
		t.Fatal("signed-in request did not reach the portal")
	}
	want := map[string]string{
		HeaderContactID:    jane.ID,
		HeaderContactEmail: jane.Email,
		HeaderContactName:  jane.Name,
		HeaderWorkspace:    "acme",
	}
	for h, v := range want {
		if got := page.identity.Values(h); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", h, got, v)
		}
	}

	anon := tp.browser(t, tp.acme)
	res = anon.do(http.MethodGet, "/tickets/42", nil, http.Header{HeaderContactID: {jane.ID}})
	wantRedirect(t, "anonymous page with forged headers", res, "/_portal/signin")
	if res.passed {
		t.Fatal("anonymous request reached the portal")
	}
	res = anon.do(http.MethodGet, "/api/tickets", nil, http.Header{"Accept": {"application/json"}})
	wantStatus(t, "anonymous API call", res, http.StatusUnauthorized)
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("API 401 Content-Type %q", ct)
	}
}

// TestRequestsDuringStart: a request can come as soon as the portal has
// its runtime, before Start has returned (a reload's new server may
// answer first). Here it comes while Start writes the config_loaded
// event, and finds the outbox there to wake: before, the outbox was set
// after the runtime, and such a request panicked on a nil outbox.
func TestRequestsDuringStart(t *testing.T) {
	clock := storagetest.NewClock()
	badger, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = badger.Close() })
	c := jane
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := badger.PutContacts(context.Background(), "acme", []storage.Contact{c}); err != nil {
		t.Fatal(err)
	}
	pages, err := LoadPages("")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingSender{}
	acme := testWorkspace("acme", "https://support.acme.example")
	p := &Portal{Workspaces: map[string]*Workspace{"acme": acme}, Sender: rec, Pages: pages, Now: clock.Now}
	store := &heldConfigEvent{Store: badger, hold: make(chan struct{})}
	done := make(chan string, 1)
	go func() {
		defer close(store.hold)
		for p.state.Load() == nil {
			time.Sleep(20 * time.Microsecond)
		}
		b := &browser{t: t, gate: NewGate(p, acme), ip: "192.0.2.10", jar: map[string]string{}, clock: clock, expires: map[string]time.Time{}}
		page := b.get("/_portal/signin")
		r := b.post("/_portal/signin", url.Values{"csrf": {csrf(t, page)}, "email": {"jane@acme.example"}})
		done <- fmt.Sprintf("%d %s", r.status, r.location())
	}()
	if err := p.Start(context.Background(), store); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	if got := <-done; got != "303 /_portal/code" {
		t.Fatalf("the email form during Start: %s, want 303 to /_portal/code", got)
	}
	waitFor(t, "the code mail", func() bool { return rec.count() == 1 })
	if m := rec.all()[0]; m.To != "jane@acme.example" {
		t.Fatalf("the code went to %q", m.To)
	}
}

// heldConfigEvent holds the config_loaded event back until hold closes
// (or 10 s pass): Start is then inside its runtime's first write.
type heldConfigEvent struct {
	storage.Store
	hold chan struct{}
}

func (s *heldConfigEvent) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	if e.Event == EventConfigLoaded {
		select {
		case <-s.hold:
		case <-time.After(10 * time.Second):
		}
	}
	return s.Store.AppendAudit(ctx, e)
}
