// Package integration runs portalgate end to end: a real Caddy with the
// plugin loaded (in this process), real Badger on disk, real SMTP over TCP
// to a server the test starts, and a real upstream portal.
package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/kdesk/portalgate"
)

// freePort returns a free loopback port below Linux's ephemeral range
// (32768 and up), so that no outgoing connection of the tests can take it
// between the check and Caddy's listen.
func freePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

// mailbox is an SMTP server that keeps what it receives.
type mailbox struct {
	addr string
	srv  *smtp.Server
	mu   sync.Mutex
	msgs []receivedMail
	got  chan receivedMail
	// reject, when set, answers RCPT with this SMTP code.
	reject int
}

type receivedMail struct {
	From string
	To   []string
	Data string
}

var codePattern = regexp.MustCompile(`\b[2-9A-HJKMNP-Z]{3}-[2-9A-HJKMNP-Z]{4}\b`)

// Code is the sign-in code in the message.
func (m receivedMail) Code() string {
	return strings.ReplaceAll(codePattern.FindString(m.Data), "-", "")
}

// startMailbox starts an SMTP server on addr ("" for a free port).
func startMailbox(t testing.TB, addr string) *mailbox {
	t.Helper()
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	mb := &mailbox{addr: addr, got: make(chan receivedMail, 100)}
	mb.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{mb: mb}, nil }))
	mb.srv.Domain = "localhost"
	mb.srv.AllowInsecureAuth = true
	mb.srv.ReadTimeout = 10 * time.Second
	mb.srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = mb.srv.Serve(l) }()
	t.Cleanup(func() { mb.srv.Close() })
	return mb
}

func (mb *mailbox) close() { mb.srv.Close() }

// wait returns the next message, failing the test after timeout.
func (mb *mailbox) wait(t testing.TB, timeout time.Duration) receivedMail {
	t.Helper()
	select {
	case m := <-mb.got:
		return m
	case <-time.After(timeout):
		t.Fatalf("no mail arrived within %s", timeout)
		return receivedMail{}
	}
}

// none checks that no message arrives within d.
func (mb *mailbox) none(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case m := <-mb.got:
		t.Fatalf("unexpected mail to %v", m.To)
	case <-time.After(d):
	}
}

func (mb *mailbox) count() int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return len(mb.msgs)
}

type smtpSession struct {
	mb  *mailbox
	cur receivedMail
}

func (s *smtpSession) Reset()        { s.cur = receivedMail{} }
func (s *smtpSession) Logout() error { return nil }
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.From = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.mb.reject != 0 {
		return &smtp.SMTPError{Code: s.mb.reject, Message: "rejected by test"}
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = string(b)
	s.mb.mu.Lock()
	s.mb.msgs = append(s.mb.msgs, s.cur)
	s.mb.mu.Unlock()
	s.mb.got <- s.cur
	return nil
}

// upstream is the portal behind the gate: it answers with what it saw.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func startUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"path":    r.URL.RequestURI(),
			"method":  r.Method,
			"headers": r.Header,
		})
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// gateway is one Caddy configuration under test.
type gateway struct {
	t         testing.TB
	dir       string
	httpPort  int
	adminPort int
	mail      *mailbox
	up        *upstream
	// extraWorkspace is added inside each workspace block.
	extraWorkspace string
	// extraGlobal is added inside the portal block.
	extraGlobal string
	title       string
	contacts    string
	running     bool
}

const defaultContacts = `[
 {"id": "c-1", "email": "jane@acme.example", "name": "Jane Doe", "source": "directory", "directory_id": "d-1"},
 {"id": "c-2", "email": "sam@acme.example", "name": "Sam Roe"},
 {"id": "c-3", "email": "former@acme.example", "name": "Former", "status": "disabled"}
]`

func newGateway(t testing.TB) *gateway {
	t.Helper()
	g := &gateway{
		t:         t,
		dir:       t.TempDir(),
		httpPort:  freePort(t),
		adminPort: freePort(t),
		up:        startUpstream(t),
		title:     "Acme Support",
		contacts:  defaultContacts,
	}
	g.mail = startMailbox(t, "")
	t.Cleanup(g.stop)
	return g
}

// logText is everything Caddy has logged so far.
func (g *gateway) logText() string {
	b, _ := os.ReadFile(g.dir + "/caddy.log")
	return string(b)
}

func (g *gateway) base() string { return fmt.Sprintf("http://127.0.0.1:%d", g.httpPort) }

func (g *gateway) admin() string { return fmt.Sprintf("http://127.0.0.1:%d", g.adminPort) }

func (g *gateway) caddyfile() string {
	host, port, _ := net.SplitHostPort(g.mail.addr)
	contacts := g.dir + "/contacts.json"
	if err := os.WriteFile(contacts, []byte(g.contacts), 0o600); err != nil {
		g.t.Fatal(err)
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	persist_config off
	auto_https off
	storage file_system %[2]s/caddy
	log {
		output file %[2]s/caddy.log
		level DEBUG
	}
	portal {
		storage_dir %[2]s/portal
		mail smtp {
			host %[3]s
			port %[4]s
			from "Acme Support <support@acme.example>"
			tls none
		}
		%[8]s
		workspace acme {
			title "%[7]s"
			url http://127.0.0.1:%[5]d
			contacts_file %[9]s
			code_ttl 10m
			resend_cooldown 30s
			session_ttl 12h
			%[6]s
		}
	}
}

http://127.0.0.1:%[5]d {
	portal_auth acme
	reverse_proxy %[10]s {
		# The placeholders portal_auth sets, for the tests to see.
		header_up X-Auth-User-Id {http.auth.user.id}
		header_up X-Auth-User-Email {http.auth.user.email}
	}
}
`, g.adminPort, g.dir, host, port, g.httpPort, g.extraWorkspace, g.title, g.extraGlobal, contacts, strings.TrimPrefix(g.up.URL, "http://"))
}

// start loads the configuration into this process's Caddy.
func (g *gateway) start() {
	g.t.Helper()
	g.load(g.caddyfile())
}

func (g *gateway) load(cf string) {
	g.t.Helper()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile.Format([]byte(cf)), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		g.t.Fatalf("adapting Caddyfile: %v\n%s", err, cf)
	}
	for _, w := range warnings {
		g.t.Logf("adapt warning: %s", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		g.t.Fatalf("loading config: %v", err)
	}
	g.running = true
	g.waitUp()
}

func (g *gateway) waitUp() {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.httpPort))
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatal("caddy did not start listening")
}

// stop stops Caddy, as at a process exit.
func (g *gateway) stop() {
	if g.running {
		if err := caddy.Stop(); err != nil {
			g.t.Errorf("stopping caddy: %v", err)
		}
		g.running = false
	}
}

// browser is a user agent with its own cookies that does not follow
// redirects, so each hop can be checked.
type browser struct {
	t      testing.TB
	g      *gateway
	client *http.Client
	// headers are sent with every request.
	headers http.Header
}

func (g *gateway) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{
		t: g.t,
		g: g,
		client: &http.Client{
			Jar:     jar,
			Timeout: 15 * time.Second,
			// A fresh connection per request: a reload closes the old
			// server's idle connections, which a pooled client would
			// otherwise reuse and see EOF on.
			Transport:     &http.Transport{DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		headers: http.Header{"Accept": {"text/html,application/xhtml+xml"}},
	}
}

type response struct {
	Status   int
	Location string
	Body     string
	Header   http.Header
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) response {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.g.base()+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range b.headers {
		req.Header[k] = v
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	bs, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Body: string(bs), Header: resp.Header}
}

func (b *browser) get(path string, hdr ...string) response {
	return b.do(http.MethodGet, path, nil, hdr...)
}

func (b *browser) post(path string, form url.Values, hdr ...string) response {
	return b.do(http.MethodPost, path, form, hdr...)
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t testing.TB, body string) string {
	t.Helper()
	m := csrfPattern.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no csrf token in page:\n%s", body)
	}
	return m[1]
}

// submitEmail opens the sign-in page and submits email; it returns the
// code page's CSRF token.
func (b *browser) submitEmail(email string) string {
	b.t.Helper()
	page := b.get("/_portal/signin")
	if page.Status != http.StatusOK {
		b.t.Fatalf("sign-in page: %d", page.Status)
	}
	r := b.post("/_portal/signin", url.Values{"csrf": {csrfOf(b.t, page.Body)}, "email": {email}})
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/code" {
		b.t.Fatalf("submitting email: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	code := b.get("/_portal/code")
	if code.Status != http.StatusOK {
		b.t.Fatalf("code page: %d", code.Status)
	}
	return csrfOf(b.t, code.Body)
}

// enterCode posts a code with the code page's CSRF token.
func (b *browser) enterCode(csrf, code string) response {
	b.t.Helper()
	return b.post("/_portal/code", url.Values{"csrf": {csrf}, "code": {code}})
}

// signIn goes through the whole email-code flow from wanted.
func (b *browser) signIn(email, wanted string) {
	b.t.Helper()
	r := b.get(wanted)
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/signin" {
		b.t.Fatalf("GET %s before sign-in: %d %q", wanted, r.Status, r.Location)
	}
	csrf := b.submitEmail(email)
	m := b.g.mail.wait(b.t, 10*time.Second)
	if len(m.To) != 1 || m.To[0] != email {
		b.t.Fatalf("mail went to %v, want %s", m.To, email)
	}
	r = b.enterCode(csrf, m.Code())
	if r.Status != http.StatusSeeOther || r.Location != wanted {
		b.t.Fatalf("entering code: %d %q, want 303 to %s\n%s", r.Status, r.Location, wanted, r.Body)
	}
}

// seen decodes what the upstream answered.
func seen(t testing.TB, r response) (path string, headers http.Header) {
	t.Helper()
	var v struct {
		Path    string      `json:"path"`
		Headers http.Header `json:"headers"`
	}
	if err := json.Unmarshal([]byte(r.Body), &v); err != nil {
		t.Fatalf("upstream answer (%d) is not JSON: %v\n%s", r.Status, err, r.Body)
	}
	return v.Path, v.Headers
}

// adminDo calls the admin API.
func (g *gateway) adminDo(method, path, contentType string, body []byte) (int, string) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.admin()+path, bytes.NewReader(body))
	if err != nil {
		g.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// auditEvents returns the audit trail's event names, newest first.
func (g *gateway) auditEvents(query string) []string {
	g.t.Helper()
	status, body := g.adminDo(http.MethodGet, "/portal/workspaces/acme/audit?"+query, "", nil)
	if status != http.StatusOK {
		g.t.Fatalf("audit: %d %s", status, body)
	}
	var v struct {
		Events []struct {
			Event string `json:"event"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		g.t.Fatal(err)
	}
	out := make([]string, len(v.Events))
	for i, e := range v.Events {
		out[i] = e.Event
	}
	return out
}

// eventually retries cond until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
