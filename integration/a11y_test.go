package integration

// Accessibility in a real browser: axe-core (the npm package, injected
// through the DevTools protocol) checks every page a contact can see — the
// sign-in and code pages, each error page, the sign-out page — in light and
// dark mode, in English and in Arabic (right to left), and the test fails
// on any violation. The same run writes the README's screenshots.

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// axeEnv names axe.min.js when it is not where .ci/run installs it.
const axeEnv = "AXE_CORE_JS"

// axeDefault is where .ci/run's `npm install --prefix .cache/npm axe-core@4`
// puts it, from this package's folder.
const axeDefault = "../.cache/npm/node_modules/axe-core/axe.min.js"

// screenshotsDir is the README's screenshots folder.
const screenshotsDir = "../docs/screenshots"

// axeSource reads axe-core; without it the test is skipped, unless it runs
// in CI, where that is a failure.
func axeSource(t *testing.T) string {
	t.Helper()
	file := os.Getenv(axeEnv)
	if file == "" {
		file = axeDefault
	}
	b, err := os.ReadFile(file)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("no axe-core (npm install --prefix .cache/npm axe-core@4): %v", err)
		}
		t.Fatalf("no axe-core in CI: %v", err)
	}
	return string(b)
}

// colorScheme makes the browser report prefers-color-scheme: scheme.
func (c *chrome) colorScheme(scheme string) {
	c.t.Helper()
	c.do("emulating "+scheme+" mode", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
}

type axeViolation struct {
	ID    string `json:"id"`
	Help  string `json:"help"`
	Nodes []struct {
		Target  []any  `json:"target"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// axe runs axe-core on the page shown and fails the test for each
// violation.
func (c *chrome) axe(src, what string) {
	c.t.Helper()
	if !get(c, "looking for axe", chromedp.Evaluate[bool](`typeof axe !== "undefined"`)) {
		get(c, "injecting axe-core", chromedp.Evaluate[bool](src+";true"))
	}
	out := get(c, "running axe on "+what, chromedp.Evaluate[string](
		`axe.run(document, {resultTypes: ["violations"]}).then(r => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
	var vs []axeViolation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		c.t.Fatalf("axe on %s: %v", what, err)
	}
	for _, v := range vs {
		for _, n := range v.Nodes {
			c.t.Errorf("%s: axe %s (%s) at %v: %s", what, v.ID, v.Help, n.Target, n.Summary)
		}
	}
}

// screenshot writes the page as docs/screenshots/name.png for the README.
func (c *chrome) screenshot(name string) {
	c.t.Helper()
	if err := os.MkdirAll(screenshotsDir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	// The viewport, not the full page: a full-page capture of a
	// right-to-left page comes out shifted.
	png := get(c, "screenshot", chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(screenshotsDir, name+".png"), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func TestBrowserAccessibility(t *testing.T) {
	src := axeSource(t)
	g := newGateway(t)
	g.extraWorkspace = "languages en ar"
	g.extraGlobal = "limits {\n\t\t\trequests_per_ip 30\n\t\t}"
	startWithPortal(t, g)
	c := newChrome(t, g)

	modes := []struct{ lang, scheme, shot string }{
		{"en", "light", "light"},
		{"en", "dark", "dark"},
		{"ar", "light", "ar"},
		{"ar", "dark", ""},
	}
	name := func(lang, scheme, page string) string { return page + " (" + lang + ", " + scheme + ")" }
	for i, m := range modes {
		c.colorScheme(m.scheme)
		p := c.open("/_portal/signin?lang=" + m.lang)
		if p.Status != http.StatusOK || !c.has(`html[lang="`+m.lang+`"]`) {
			t.Fatalf("sign-in page in %s: %d, lang %v", m.lang, p.Status, c.has(`html[lang="`+m.lang+`"]`))
		}
		if m.lang == "ar" && !c.has(`html[dir="rtl"]`) {
			t.Fatal("the Arabic page is not right to left")
		}
		c.axe(src, name(m.lang, m.scheme, "sign-in"))
		if m.shot != "" {
			c.screenshot("signin-" + m.shot)
		}
		// Not contacts: no code is sent, and each address has its own
		// resend cooldown, so the code page has no notice.
		c.typeInto("#email", []string{"alex", "kim", "noor", "sami"}[i]+"@acme.example")
		c.act("asking for a code", chromedp.Click(chromedp.CSS(emailButton)))
		c.axe(src, name(m.lang, m.scheme, "code"))
		if m.shot != "" {
			c.screenshot("code-" + m.shot)
		}
		c.typeInto("#code", "ABC-DEFG")
		if p := c.press(codeButton); p.Status != http.StatusUnauthorized || !c.has(`#code[aria-invalid="true"][aria-describedby="code-error"]`) {
			t.Fatalf("a wrong code: %d, error tied to the field: %v", p.Status, c.has(`#code[aria-invalid="true"]`))
		}
		c.axe(src, name(m.lang, m.scheme, "sign-in failed"))
		if p := c.open("/_portal/link/not-a-link"); p.Status != http.StatusBadRequest {
			t.Fatalf("invalid link: %d", p.Status)
		}
		c.axe(src, name(m.lang, m.scheme, "invalid link"))
		if p := c.open("/_portal/nope"); p.Status != http.StatusNotFound {
			t.Fatalf("unknown page: %d", p.Status)
		}
		c.axe(src, name(m.lang, m.scheme, "not found"))
	}

	// A 390-px phone: the card fills the screen.
	c.colorScheme("light")
	c.do("emulating a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	c.open("/_portal/signin?lang=en")
	if w := get(c, "card width", chromedp.Evaluate[float64](`document.querySelector("main").getBoundingClientRect().width`)); w < 389 {
		t.Errorf("on a phone the card is %.0f px wide, want the full 390", w)
	}
	if b := get(c, "card border", chromedp.Evaluate[string](`getComputedStyle(document.querySelector("main")).borderTopWidth`)); b != "0px" {
		t.Errorf("on a phone the card has a %s border", b)
	}
	c.axe(src, "sign-in (phone)")
	c.screenshot("signin-phone")
	c.typeInto("#email", "robin@acme.example")
	c.act("asking for a code", chromedp.Click(chromedp.CSS(emailButton)))
	c.axe(src, "code (phone)")
	c.screenshot("code-phone")
	c.do("back to a desktop window", chromedp.EmulateViewport(1024, 800))

	// Signed in: the sign-out page.
	c.colorScheme("light")
	c.open("/_portal/signin?lang=en")
	c.signInByCode(g, "jane@acme.example", "/tickets/1")
	for _, m := range modes {
		c.colorScheme(m.scheme)
		c.open("/_portal/signout?lang=" + m.lang)
		c.axe(src, name(m.lang, m.scheme, "sign-out"))
		// Where a sign-out from another site lands.
		if p := c.open("/_portal/signout?refused=1&lang=" + m.lang); p.Status != http.StatusForbidden {
			t.Fatalf("refused sign-out page: %d", p.Status)
		}
		c.axe(src, name(m.lang, m.scheme, "sign-out refused"))
	}

	// Too many invalid links from this network: the 429 page.
	for n := 0; ; n++ {
		if c.open("/_portal/link/not-a-link").Status == http.StatusTooManyRequests {
			break
		}
		if n > 40 {
			t.Fatal("no 429 after 40 invalid links")
		}
	}
	for _, m := range modes {
		c.colorScheme(m.scheme)
		if p := c.open("/_portal/link/not-a-link?lang=" + m.lang); p.Status != http.StatusTooManyRequests {
			t.Fatalf("429 page: %d", p.Status)
		}
		c.axe(src, name(m.lang, m.scheme, "too many attempts"))
	}

	// A disabled workspace: "Portal unavailable".
	g.extraWorkspace = "languages en ar\n\t\t\tdisabled"
	startWithPortal(t, g)
	for _, m := range modes {
		c.colorScheme(m.scheme)
		if p := c.open("/_portal/signin?lang=" + m.lang); p.Status != http.StatusServiceUnavailable || !strings.Contains(c.text("h1"), map[string]string{"en": "Portal unavailable", "ar": "البوابة غير متاحة"}[m.lang]) {
			t.Fatalf("unavailable page: %d %q", p.Status, c.text("h1"))
		}
		c.axe(src, name(m.lang, m.scheme, "unavailable"))
	}
	c.noProblems()
}
