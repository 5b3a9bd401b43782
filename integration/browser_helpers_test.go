package integration

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is where the tests expect Chromium (Debian's chromium
// package).
const chromiumPath = "/usr/bin/chromium"

// stepTimeout bounds one browser step: a navigation, a click and the page
// it loads, a query.
const stepTimeout = 10 * time.Second

// shotsEnv names a folder that keeps the page screenshots of passing runs;
// without it they go to the test's temporary folder.
const shotsEnv = "PORTALGATE_BROWSER_SHOTS"

// chrome is one headless Chromium with one tab, driven through the DevTools
// protocol, with its own fresh profile (cookies and all).
type chrome struct {
	t    *testing.T
	ctx  context.Context
	base string
	// shots is where page screenshots go; made on first use.
	shots string

	mu       sync.Mutex
	problems []string
}

// newChrome starts Chromium for t. Without Chromium the test is skipped,
// unless it runs in CI (env CI set), where that is a failure.
func newChrome(t *testing.T, g *gateway) *chrome {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no Chromium at %s (apt-get install chromium): %v", chromiumPath, err)
		}
		t.Fatalf("no Chromium at %s in CI: %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// This machine's network is closed: Chromium's own background
		// traffic (updates, sync, QUIC probes) would only fail.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 800),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// Cleanups run last-in first-out: the browser closes after the
	// failure screenshot below, and before its profile folder is removed.
	t.Cleanup(func() {
		cancel()
		acancel()
	})

	// The first action starts the browser and ties it to ctx, so it gets
	// no deadline of its own; a watchdog stops a launch that hangs.
	watchdog := time.AfterFunc(30*time.Second, cancel)
	err := chromedp.Do(ctx)
	if !watchdog.Stop() || err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}

	c := &chrome{t: t, ctx: ctx, base: g.base()}
	c.watch()
	t.Cleanup(func() {
		if t.Failed() {
			c.failureShot()
		}
	})
	return c
}

// watch records uncaught script errors and the browser's own error
// messages (a blocked script, a refused form action), which a page can
// show without looking broken.
func (c *chrome) watch() {
	exceptions := chromedp.Events(c.ctx, runtime.ExceptionThrown)
	entries := chromedp.Events(c.ctx, log.EntryAdded)
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			c.problem("script error: %s", ev.ExceptionDetails.Text)
		}
	}()
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			e := ev.Entry
			if e.Level != log.EntryLevelError {
				continue
			}
			// Chromium logs every 4xx answer ("Failed to load resource"),
			// including the pages whose status the tests expect, and the
			// 401 the gate gives /favicon.ico when signed out.
			if e.Source == log.EntrySourceNetwork {
				continue
			}
			c.problem("browser %s error: %s (%s)", e.Source, e.Text, e.URL)
		}
	}()
}

func (c *chrome) problem(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// noProblems fails the test if any page had a script or browser error.
func (c *chrome) noProblems() {
	c.t.Helper()
	// Events arrive through a queue; give the last ones a moment.
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.problems {
		c.t.Errorf("page problem: %s", p)
	}
}

// do runs steps that return nothing, each call within stepTimeout.
func (c *chrome) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that returns a value, within stepTimeout.
func get[T any](c *chrome, what string, a chromedp.Action[T]) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// page is what the browser shows after a navigation.
type page struct {
	// Status is the HTTP status of the document shown (after redirects).
	Status int
	// Path is the path and query in the address bar.
	Path string
}

// open types url into the address bar and waits for the page to load.
func (c *chrome) open(u string) page {
	c.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = c.base + u
	}
	return c.loaded("opening "+u, get(c, "opening "+u, chromedp.NavigateResponse(u)))
}

// act runs steps that make the page navigate (a click on a submit button
// or a link) and waits for the next page to load.
func (c *chrome) act(what string, steps ...chromedp.Action[chromedp.Void]) page {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, stepTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, steps...)
	if err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	return c.loaded(what, resp)
}

func (c *chrome) loaded(what string, resp *network.Response) page {
	c.t.Helper()
	if resp == nil {
		c.t.Fatalf("%s: no page loaded", what)
	}
	return page{Status: int(resp.Status), Path: c.path()}
}

// path is the path and query of the address bar, checking the browser is
// still on the gateway.
func (c *chrome) path() string {
	c.t.Helper()
	loc := get(c, "reading the address bar", chromedp.Location())
	u, err := url.Parse(loc)
	if err != nil || u.Scheme+"://"+u.Host != c.base {
		c.t.Fatalf("the browser left the portal: %q", loc)
	}
	return u.RequestURI()
}

// text is the visible text of the first element matching the CSS selector.
func (c *chrome) text(sel string) string {
	c.t.Helper()
	return strings.TrimSpace(get(c, "reading "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// has reports whether an element matches the CSS selector now.
func (c *chrome) has(sel string) bool {
	c.t.Helper()
	return get(c, "looking for "+sel, chromedp.Evaluate[bool](fmt.Sprintf("document.querySelector(%q) !== null", sel)))
}

// expect checks that the browser shows path with status and a heading.
func (c *chrome) expect(p page, status int, path, heading string) {
	c.t.Helper()
	if p.Status != status || p.Path != path {
		c.t.Fatalf("browser shows %s (%d), want %s (%d); heading %q", p.Path, p.Status, path, status, c.text("h1"))
	}
	if h := c.text("h1"); h != heading {
		c.t.Fatalf("page %s has heading %q, want %q", p.Path, h, heading)
	}
}

// typeInto empties a field (the sign-in form keeps the address typed
// before), clicks into it and types text key by key.
func (c *chrome) typeInto(sel, text string) {
	c.t.Helper()
	get(c, "emptying "+sel, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q).value = ""; true`, sel)))
	c.do("typing into "+sel, chromedp.Click(chromedp.CSS(sel)), chromedp.SendKeys(chromedp.CSS(sel), text))
}

// press clicks a button that submits a form and waits for the next page.
func (c *chrome) press(sel string) page {
	c.t.Helper()
	return c.act("pressing "+sel, chromedp.Click(chromedp.CSS(sel)))
}

// Form buttons on the sign-in pages.
const (
	emailButton  = `form[action="/_portal/signin"] button[type=submit]`
	codeButton   = `form[action="/_portal/code"] button[type=submit]`
	resendButton = `#resend`
)

// submitEmail types email on the sign-in page and asks for a code; the
// browser ends on the code page.
func (c *chrome) submitEmail(email string) {
	c.t.Helper()
	c.typeInto("#email", email)
	c.expect(c.press(emailButton), http.StatusOK, "/_portal/code", "Enter your sign-in code")
}

// asTyped is a code the way people type it from an email: lower case,
// with the dash.
func asTyped(code string) string {
	if len(code) != 7 {
		return code
	}
	return strings.ToLower(code[:3] + "-" + code[3:])
}

// codeFor waits for the code mailed to email.
func codeFor(t *testing.T, g *gateway, email string) string {
	t.Helper()
	m := g.mail.wait(t, 10*time.Second)
	if len(m.To) != 1 || m.To[0] != email {
		t.Fatalf("mail went to %v, want %s", m.To, email)
	}
	code := m.Code()
	if len(code) != 7 {
		t.Fatalf("no code in the mail:\n%s", m.Data)
	}
	return code
}

// signInByCode goes through the whole emailed-code journey from wanted.
func (c *chrome) signInByCode(g *gateway, email, wanted string) {
	c.t.Helper()
	c.expect(c.open(wanted), http.StatusOK, "/_portal/signin", "Sign in")
	c.submitEmail(email)
	c.typeInto("#code", asTyped(codeFor(c.t, g, email)))
	c.expect(c.press(codeButton), http.StatusOK, wanted, portalHeading(wanted))
}

// shot saves a full-page screenshot of what the browser shows as name.png.
func (c *chrome) shot(name string) string {
	c.t.Helper()
	if c.shots == "" {
		c.shots = os.Getenv(shotsEnv)
		if c.shots == "" {
			c.shots = c.t.TempDir()
		} else if err := os.MkdirAll(c.shots, 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
	png := get(c, "screenshot", chromedp.FullScreenshot(100))
	file := filepath.Join(c.shots, name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return file
}

// failureShot keeps what the browser showed when the test failed, in
// artifacts/<TestName>.png (gitignored).
func (c *chrome) failureShot() {
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Logf("no failure screenshot: %v", err)
		return
	}
	name := regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(c.t.Name(), "_")
	file := filepath.Join("artifacts", name+".png")
	if err := os.MkdirAll("artifacts", 0o755); err == nil {
		err = os.WriteFile(file, png, 0o644)
	}
	if err != nil {
		c.t.Logf("saving failure screenshot: %v", err)
		return
	}
	abs, _ := filepath.Abs(file)
	c.t.Logf("failure screenshot: %s", abs)
}

// portal is the support portal behind the gate, as a browser sees it: HTML
// pages that show who is signed in and carry a sign-out button.
type portal struct {
	*httptest.Server
	mu   sync.Mutex
	hits []string
}

var portalPage = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{{.Heading}} · Acme portal</title></head>
<body>
<header>
<p>Signed in as <strong id="who">{{.Email}}</strong> (<span id="name">{{.Name}}</span>, {{.ID}})</p>
<form id="signout" method="post" action="/_portal/signout">
<button type="submit">Sign out</button>
</form>
</header>
<main>
<h1>{{.Heading}}</h1>
<p id="where">{{.Where}}</p>
</main>
</body>
</html>
`))

var ticketPath = regexp.MustCompile(`^/tickets/(\d+)$`)

// portalHeading is the heading the portal shows at path (with query).
func portalHeading(path string) string {
	p, _, _ := strings.Cut(path, "?")
	if m := ticketPath.FindStringSubmatch(p); m != nil {
		return "Ticket #" + m[1]
	}
	if p == "/" {
		return "Dashboard"
	}
	return "Page " + p
}

func startPortal(t *testing.T) *portal {
	p := &portal{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			http.NotFound(w, r)
			return
		}
		p.mu.Lock()
		p.hits = append(p.hits, r.Method+" "+r.URL.RequestURI())
		p.mu.Unlock()
		email := r.Header.Get("X-Portal-Contact-Email")
		if email == "" {
			http.Error(w, "reached the portal without an identity", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = portalPage.Execute(w, map[string]string{
			"Heading": portalHeading(r.URL.Path),
			"Email":   email,
			"Name":    r.Header.Get("X-Portal-Contact-Name"),
			"ID":      r.Header.Get("X-Portal-Contact-Id"),
			"Where":   r.URL.RequestURI(),
		})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *portal) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.hits...)
}

// startWithPortal starts g with the HTML portal in place of the harness's
// JSON upstream.
func startWithPortal(t *testing.T, g *gateway) *portal {
	t.Helper()
	p := startPortal(t)
	cf := g.caddyfile()
	from := "reverse_proxy " + strings.TrimPrefix(g.up.URL, "http://")
	if !strings.Contains(cf, from) {
		t.Fatalf("no %q in the harness Caddyfile:\n%s", from, cf)
	}
	g.load(strings.Replace(cf, from, "reverse_proxy "+strings.TrimPrefix(p.URL, "http://"), 1))
	return p
}
