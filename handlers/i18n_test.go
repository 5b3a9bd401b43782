package handlers

import (
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// readCatalogs is every shipped catalog as key → message (a string, or a
// table of plural forms).
func readCatalogs(t *testing.T) map[string]map[string]any {
	t.Helper()
	names, err := fs.Glob(localeFiles, "locales/active.*.toml")
	if err != nil || len(names) == 0 {
		t.Fatalf("no catalogs: %v", err)
	}
	out := map[string]map[string]any{}
	for _, name := range names {
		b, _ := localeFiles.ReadFile(name)
		m := map[string]any{}
		if err := toml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lang := strings.TrimSuffix(strings.TrimPrefix(path.Base(name), "active."), ".toml")
		out[lang] = m
	}
	return out
}

var placeholder = regexp.MustCompile(`\{\{\s*\.(\w+)\s*\}\}`)

func placeholders(v any) []string {
	var s string
	switch m := v.(type) {
	case string:
		s = m
	case map[string]any:
		s, _ = m["other"].(string)
	}
	var out []string
	for _, p := range placeholder.FindAllStringSubmatch(s, -1) {
		if !slices.Contains(out, p[1]) {
			out = append(out, p[1])
		}
	}
	slices.Sort(out)
	return out
}

// shippedLanguages must each have a catalog.
var shippedLanguages = []string{"en", "de", "fr", "es", "pt-BR", "nl", "ja", "ar"}

// Every catalog has exactly English's keys, the same placeholders, the
// same kind of message (plural or not) and an "other" form for plurals.
func TestCatalogsComplete(t *testing.T) {
	cats := readCatalogs(t)
	en := cats["en"]
	for lang, cat := range cats {
		for k, v := range en {
			tv, ok := cat[k]
			if !ok {
				t.Errorf("active.%s.toml lacks %q", lang, k)
				continue
			}
			_, plural := v.(map[string]any)
			tm, tplural := tv.(map[string]any)
			if plural != tplural {
				t.Errorf("active.%s.toml %q: plural %v, English %v", lang, k, tplural, plural)
				continue
			}
			if tplural && tm["other"] == nil {
				t.Errorf("active.%s.toml %q has no other form", lang, k)
			}
			if got, want := placeholders(tv), placeholders(v); !slices.Equal(got, want) {
				t.Errorf("active.%s.toml %q: placeholders %v, English %v", lang, k, got, want)
			}
		}
		for k := range cat {
			if _, ok := en[k]; !ok {
				t.Errorf("active.%s.toml has %q, which English has not", lang, k)
			}
		}
	}
	for _, want := range shippedLanguages {
		if _, ok := cats[want]; !ok {
			t.Errorf("no catalog for %s", want)
		}
	}
}

// pageSet drives the real flows of a workspace speaking lang and returns
// every page and email a contact can see, by name.
func pageSet(t *testing.T, lang language.Tag) map[string]string {
	t.Helper()
	tp := newTestPortal(t, func(p *Portal) {
		p.Workspaces["acme"].Languages = []language.Tag{lang}
		p.Workspaces["other"].Languages = []language.Tag{lang}
		p.Workspaces["other"].Disabled = true
	})
	pages := map[string]string{}
	b := tp.browser(t, tp.acme)
	pages["signin"] = b.get("/_portal/signin").body
	token := csrf(t, b.get("/_portal/signin"))
	pages["signin invalid email"] = b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {"nope"}}).body
	b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {jane.Email}})
	code := b.get("/_portal/code")
	pages["code"] = code.body
	ctoken := csrf(t, code)
	pages["resend too soon"] = b.post("/_portal/resend", url.Values{"csrf": {ctoken}}).body
	pages["code malformed"] = b.submitCode(ctoken, "x").body
	pages["code wrong"] = b.submitCode(ctoken, wrongCode(mailCode(t, tp.waitMail(t, 1)))).body
	m := tp.waitMail(t, 1)
	pages["mail subject"], pages["mail text"], pages["mail html"] = m.Subject, m.Text, m.HTML
	b2 := tp.browser(t, tp.acme)
	pages["code held"] = func() string {
		tok := csrf(t, b2.get("/_portal/signin"))
		b2.post("/_portal/signin", url.Values{"csrf": {tok}, "email": {jane.Email}})
		return b2.get("/_portal/code").body
	}()
	pages["expired flow"] = tp.browser(t, tp.acme).post("/_portal/code", url.Values{"code": {"x"}}).body
	pages["invalid link"] = tp.browser(t, tp.acme).get("/_portal/link/nope").body
	pages["not found"] = tp.browser(t, tp.acme).get("/_portal/nope").body
	pages["method"] = tp.browser(t, tp.acme).do(http.MethodPut, "/_portal/code", url.Values{}, nil).body
	pages["sso unknown"] = tp.browser(t, tp.acme).get("/_portal/sso/nope").body
	pages["unavailable"] = tp.browser(t, tp.other).get("/").body
	s := tp.browser(t, tp.acme)
	tp.clock.Advance(time.Minute) // past the resend cooldown
	tp.signIn(s, "/")
	pages["signout"] = s.get("/_portal/signout").body
	pages["signin, signed in"] = s.get("/_portal/signin").body
	pages["signed out"] = tp.browser(t, tp.acme).get("/_portal/signin?signed_out=3").body
	pages["too many"] = func() string {
		c := tp.browser(t, tp.acme)
		c.ip = "192.0.2.99"
		var last string
		for range tp.portal.Limits.RequestsPerIP + 1 {
			last = c.get("/_portal/link/nope").body
		}
		return last
	}()
	return pages
}

var (
	scriptOrStyle = regexp.MustCompile(`(?s)<(script|style)\b.*?</(script|style)>`)
	tag           = regexp.MustCompile(`(?s)<[^>]*>`)
	pseudoText    = regexp.MustCompile(`⟦\w+⟧`)
)

// A page renders no sentence that is not in the catalog: in a pseudo
// language whose every message is ⟦its key⟧, nothing of the text of a
// page or email is left once the keys and the contact's own data are
// taken out.
func TestPagesFromCatalog(t *testing.T) {
	pseudo := language.MustParse("en-XA")
	b := i18n.NewBundle(pseudo)
	for k, v := range readCatalogs(t)["en"] {
		m := &i18n.Message{ID: k, Other: "⟦" + k + "⟧"}
		if _, plural := v.(map[string]any); plural {
			m.One = m.Other
		}
		b.MustAddMessages(pseudo, m)
	}
	translators[pseudo] = &tr{loc: i18n.NewLocalizer(b, pseudo.String()), tag: pseudo}
	Languages = append(Languages, pseudo)
	t.Cleanup(func() {
		delete(translators, pseudo)
		Languages = Languages[:len(Languages)-1]
	})
	for name, body := range pageSet(t, pseudo) {
		text := html.UnescapeString(tag.ReplaceAllString(scriptOrStyle.ReplaceAllString(body, " "), " "))
		text = pseudoText.ReplaceAllString(text, " ")
		for _, data := range []string{"Acme Support", "Other Support", jane.Email, maskEmail(jane.Email)} {
			text = strings.ReplaceAll(text, data, " ")
		}
		text = regexp.MustCompile(`[A-Z0-9]{3}-[A-Z0-9]{4}`).ReplaceAllString(text, " ")
		if left := strings.Trim(text, " \n\t·.:!?,;()-–—"); left != "" {
			t.Errorf("%s: text not from the catalog: %q", name, left)
		}
	}
}

// No page in a language other than English shows a sentence of the
// English catalog (a template or Go string left untranslated).
func TestPagesTranslated(t *testing.T) {
	cats := readCatalogs(t)
	var english []string
	for k, v := range cats["en"] {
		var forms []string
		switch m := v.(type) {
		case string:
			forms = []string{m}
		case map[string]any:
			for _, f := range m {
				forms = append(forms, f.(string))
			}
		}
		for _, f := range forms {
			for _, frag := range regexp.MustCompile(`\{\{[^}]*\}\}|<[^>]*>`).Split(f, -1) {
				if frag = strings.TrimSpace(frag); len(frag) >= 14 && strings.Count(frag, " ") >= 2 {
					english = append(english, html.EscapeString(frag), frag)
				}
			}
		}
		_ = k
	}
	for _, lang := range Languages {
		if lang == DefaultLanguage {
			continue
		}
		t.Run(lang.String(), func(t *testing.T) {
			for name, body := range pageSet(t, lang) {
				if !strings.Contains(body, `lang="`+lang.String()+`"`) && strings.Contains(name, "html") == false && !strings.HasPrefix(name, "mail") {
					t.Errorf("%s: no lang=%q", name, lang)
				}
				for _, e := range english {
					if strings.Contains(body, e) {
						t.Errorf("%s in %s shows English %q", name, lang, e)
					}
				}
			}
		})
	}
}

// The page language is negotiated among the workspace's languages from
// Accept-Language, a ?lang= choice is remembered, and the code email
// speaks the language of the page the contact asked on.
func TestLanguageNegotiation(t *testing.T) {
	de, ar := language.German, language.Arabic
	tp := newTestPortal(t, func(p *Portal) {
		p.Workspaces["acme"].Languages = []language.Tag{language.English, de, ar}
	})
	h := http.Header{"Accept-Language": {"de-CH,de;q=0.9,en;q=0.5"}}
	b := tp.browser(t, tp.acme)
	page := b.do(http.MethodGet, "/_portal/signin", nil, h)
	wantBody(t, "Swiss German browser", page, `<html lang="de" dir="ltr">`)
	wantBody(t, "language switch", page, `href="?lang=ar"`)
	wantBody(t, "Swiss German browser", page, "Code per E-Mail senden")
	wantBody(t, "unknown language", tp.browser(t, tp.acme).do(http.MethodGet, "/_portal/signin", nil, http.Header{"Accept-Language": {"ko"}}), `<html lang="en" dir="ltr">`)

	page = b.do(http.MethodGet, "/_portal/signin?lang=ar", nil, h)
	wantBody(t, "chosen Arabic", page, `<html lang="ar" dir="rtl">`)
	if b.cookie(cookieLang) != "ar" {
		t.Fatalf("language cookie %q, want ar", b.cookie(cookieLang))
	}
	page = b.do(http.MethodGet, "/_portal/signin", nil, h)
	wantBody(t, "remembered Arabic", page, `<html lang="ar" dir="rtl">`)
	wantRedirect(t, "email", b.post("/_portal/signin", url.Values{"csrf": {csrf(t, page)}, "email": {jane.Email}}), "/_portal/code")
	m := tp.waitMail(t, 1)
	if !strings.Contains(m.Subject, "رمز الدخول") || !strings.Contains(m.Text, "10 دقائق") || !strings.Contains(m.HTML, `lang="ar" dir="rtl"`) {
		t.Fatalf("code email not in Arabic:\n%s\n%s\n%s", m.Subject, m.Text, m.HTML)
	}
	// When it was asked for, written the language's way.
	if when := tp.clock.Now().UTC().Format("2006/01/02 15:04 UTC"); !strings.Contains(m.Text, when) {
		t.Errorf("Arabic code email without the time %q:\n%s", when, m.Text)
	}
	b.do(http.MethodGet, "/_portal/signin?lang=de", nil, h)
	tp.clock.Advance(time.Minute) // past the resend cooldown
	page = b.do(http.MethodGet, "/_portal/signin", nil, h)
	wantRedirect(t, "email", b.post("/_portal/signin", url.Values{"csrf": {csrf(t, page)}, "email": {jane.Email}}), "/_portal/code")
	m = tp.waitMail(t, 2)
	if when := tp.clock.Now().UTC().Format("02.01.2006, 15:04 UTC"); !strings.Contains(m.Text, when) || !strings.Contains(m.Text, "Der Code wurde am "+when) {
		t.Errorf("German code email without the time %q:\n%s", when, m.Text)
	}
	// An API answer speaks the browser's language too.
	api := tp.browser(t, tp.acme).do(http.MethodGet, "/tickets", nil, http.Header{"Accept": {"application/json"}, "Accept-Language": {"de"}})
	wantBody(t, "API message", api, "Melden Sie sich zuerst bei Acme Support an.")
}

// TestPlainMessagesRenderedOnce checks the translator's memo of messages
// without values: the same text as rendering afresh, values still
// applied when given, and ids outside the catalog never kept.
func TestPlainMessagesRenderedOnce(t *testing.T) {
	for _, tag := range Languages {
		x := &tr{loc: translator(tag).loc, tag: tag}
		fresh, _ := x.localize("code_heading", nil)
		if a, b := x.T("code_heading"), x.T("code_heading"); a != fresh || b != fresh || fresh == "" {
			t.Fatalf("%s: T(code_heading) = %q then %q, want %q twice", tag, a, b, fresh)
		}
		if got, want := x.T("too_many_next", "Wait", "7 s"), "7 s"; !strings.Contains(got, want) {
			t.Fatalf("%s: T(too_many_next, Wait) = %q, want it to contain %q", tag, got, want)
		}
		for i := range 3 {
			id := fmt.Sprintf("no_such_message_%d", i)
			if got := x.T(id); got != id {
				t.Fatalf("%s: T(%s) = %q, want the id", tag, id, got)
			}
			if _, kept := x.plain.Load(id); kept {
				t.Fatalf("%s: an id outside the catalog was kept", tag)
			}
		}
	}
}

// TestSplitMessagesMatchGoI18n checks every catalog message with values,
// in every language, joined from its cuts against go-i18n rendering it
// afresh: values with markup, quotes and non-ASCII text, and counts that
// pick each plural form.
func TestSplitMessagesMatchGoI18n(t *testing.T) {
	en := readCatalogs(t)["en"]
	samples := []string{"Acme <Support> & \"Co\"", "j•@acme.example", "", "{{.Email}}"}
	counts := []int{0, 1, 2, 3, 5, 11, 21, 102}
	checked := 0
	for _, tag := range Languages {
		x := &tr{loc: translator(tag).loc, tag: tag}
		for id, v := range en {
			names := placeholders(v)
			if len(names) == 0 {
				continue
			}
			for i := range samples {
				for _, n := range counts {
					var pairs []any
					for j, name := range names {
						if name == "Count" || name == "Seconds" {
							pairs = append(pairs, name, n)
						} else {
							pairs = append(pairs, name, samples[(i+j)%len(samples)])
						}
					}
					want, _ := x.localize(id, pairs)
					if got := x.T(id, pairs...); got != want {
						t.Fatalf("%s %s %v: T = %q, go-i18n %q", tag, id, pairs, got, want)
					}
					checked++
				}
			}
			if len(names) == 1 && x.splitFor(id, []any{names[0], 1}) == nil {
				t.Errorf("%s %s: not kept as cuts", tag, id)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no message with values in the catalog")
	}
}

// TestSplitMessagesOnlyPrinting checks that a message doing more with a
// value than print it is rendered afresh each call, never joined from
// cuts that would freeze one value's result.
func TestSplitMessagesOnlyPrinting(t *testing.T) {
	b := i18n.NewBundle(language.English)
	b.MustAddMessages(language.English,
		&i18n.Message{ID: "length", Other: "{{len .X}} letters"},
		&i18n.Message{ID: "quoted", Other: `{{printf "%q" .X}}`},
		&i18n.Message{ID: "twice", Other: "{{.X}} and {{.X}}, {{.Y}}"})
	x := &tr{loc: i18n.NewLocalizer(b, "en"), tag: language.English}
	for _, c := range []struct {
		id    string
		pairs []any
		want  string
	}{
		{"length", []any{"X", "abc"}, "3 letters"},
		{"length", []any{"X", "abcdef"}, "6 letters"},
		{"quoted", []any{"X", "a"}, `"a"`},
		{"quoted", []any{"X", "b\n"}, `"b\n"`},
		{"twice", []any{"X", "a", "Y", 7}, "a and a, 7"},
		{"twice", []any{"Y", 8, "X", "<b>"}, "<b> and <b>, 8"},
	} {
		if got := x.T(c.id, c.pairs...); got != c.want {
			t.Errorf("T(%s, %v) = %q, want %q", c.id, c.pairs, got, c.want)
		}
	}
	if x.splitFor("length", []any{"X", "z"}) != nil || x.splitFor("quoted", []any{"X", "z"}) != nil {
		t.Error("a message that transforms its value was kept as cuts")
	}
	if x.splitFor("twice", []any{"X", "z", "Y", 1}) == nil {
		t.Error("a message that only prints its values was not kept as cuts")
	}
}

func BenchmarkMessageWithValues(b *testing.B) {
	x := translator(DefaultLanguage)
	b.ReportAllocs()
	for b.Loop() {
		_ = x.T("code_sent", "Email", "j•@acme.example", "Workspace", "Acme", "TTL", "10 minutes")
	}
}
