package handlers

import (
	"embed"
	"fmt"
	"html"
	htmltemplate "html/template"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// Languages: every sentence a contact sees comes from the message catalogs
// in locales/ (active.<lang>.toml, go-i18n's format with CLDR plural forms),
// never from Go code. A workspace offers some of the shipped languages
// (Workspace.Languages, first is the default); each request's language is
// negotiated once (langFor) and its translator rides along in every page's
// and email's data, so templates say {{.T "signin_heading"}}.

//go:embed locales/active.*.toml
var localeFiles embed.FS

// DefaultLanguage is the catalog every other one is checked against.
var DefaultLanguage = language.English

// catalog is the parsed message catalogs.
var catalog = loadCatalog()

// Languages are the shipped catalogs' languages, English first.
var Languages []language.Tag

func loadCatalog() *i18n.Bundle {
	b := i18n.NewBundle(DefaultLanguage)
	b.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	names, _ := fs.Glob(localeFiles, "locales/active.*.toml")
	for _, name := range names {
		buf, err := localeFiles.ReadFile(name)
		if err != nil {
			panic(err)
		}
		if _, err := b.ParseMessageFileBytes(buf, path.Base(name)); err != nil {
			panic(fmt.Sprintf("message catalog %s: %v", name, err))
		}
	}
	Languages = append(Languages, DefaultLanguage)
	for _, t := range b.LanguageTags() {
		if t != DefaultLanguage {
			Languages = append(Languages, t)
		}
	}
	return b
}

// LanguageSupported reports whether a catalog ships for the tag, and its
// canonical form.
func LanguageSupported(s string) (language.Tag, bool) {
	t, err := language.Parse(s)
	if err != nil {
		return language.Und, false
	}
	for _, l := range Languages {
		if l == t {
			return l, true
		}
	}
	return language.Und, false
}

// tr is one language's translator, as pages and emails see it.
type tr struct {
	loc *i18n.Localizer
	tag language.Tag
	// plain keeps the messages asked for without values, each rendered
	// once: a page asks for a dozen, and go-i18n runs a template for each.
	plain sync.Map // message id → string
	// split keeps the messages asked for with values, each rendered once
	// with a marker for every value and cut there (splitMessage): a call
	// then joins the cuts with its values, where go-i18n would run the
	// message's template again (about 10 µs; a sign-in asks for a dozen).
	mu    sync.RWMutex
	split map[splitKey]*splitMessage
}

// maxSplitNames is the most values a kept message takes; one with more
// is rendered by go-i18n on every call.
const maxSplitNames = 4

// maxSplit bounds the messages a translator keeps. The keys are catalog
// ids, value names and plural counts (durations and waits), so a real
// portal keeps a few hundred.
const maxSplit = 4096

// splitKey names a message with values: its id, the names of its values
// in the order given, and the Count value, which picks the plural form.
type splitKey struct {
	id    string
	names [maxSplitNames]string
	count string
}

// splitMessage is a message's text around its values: parts[i] comes
// before the value of pairs[2*at[i]+1], and the last part after them all.
type splitMessage struct {
	parts []string
	at    []int
}

var translators = map[language.Tag]*tr{}

func init() {
	for _, t := range Languages {
		translators[t] = &tr{loc: i18n.NewLocalizer(catalog, t.String()), tag: t}
	}
}

// translator is the translator of a shipped language (English for any
// other).
func translator(t language.Tag) *tr {
	if x, ok := translators[t]; ok {
		return x
	}
	return translators[DefaultLanguage]
}

// T is the message id in the translator's language, with pairs of
// template names and values ("Workspace", "Acme"); a "Count" pair also
// picks the plural form.
func (t *tr) T(id string, pairs ...any) string {
	if len(pairs) == 0 {
		if s, ok := t.plain.Load(id); ok {
			return s.(string)
		}
		s, known := t.localize(id, nil)
		if known {
			// Only catalog ids: the map stays as small as the catalog.
			t.plain.Store(id, s)
		}
		return s
	}
	if m := t.splitFor(id, pairs); m != nil {
		return m.join(pairs)
	}
	s, _ := t.localize(id, pairs)
	return s
}

// splitFor returns message id cut at its values, rendering it on first
// use; nil when it cannot be: pairs that are not name and value, more
// than maxSplitNames values, an id outside the catalog, a message that
// does more with a value than print it, or a full memo.
func (t *tr) splitFor(id string, pairs []any) *splitMessage {
	if len(pairs)%2 != 0 || len(pairs) > 2*maxSplitNames {
		return nil
	}
	k := splitKey{id: id}
	for i := 0; i < len(pairs); i += 2 {
		name, ok := pairs[i].(string)
		if !ok || name == "" || slices.Contains(k.names[:i/2], name) {
			return nil
		}
		k.names[i/2] = name
		if name == "Count" {
			k.count = printed(pairs[i+1])
		}
	}
	t.mu.RLock()
	m, ok := t.split[k]
	t.mu.RUnlock()
	if ok {
		return m
	}
	m = t.splitMessage(id, pairs)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.split == nil {
		t.split = map[splitKey]*splitMessage{}
	}
	if len(t.split) < maxSplit {
		t.split[k] = m
	}
	return m
}

// splitMessage renders message id through go-i18n with a marker in place
// of each value, twice with markers of different lengths, and cuts the
// text at them. Only a message that prints each value as it is gives the
// same cuts both times; any other gets nil, and go-i18n renders it on
// every call.
func (t *tr) splitMessage(id string, pairs []any) *splitMessage {
	count := countOf(pairs)
	cut := func(width int) *splitMessage {
		marked := make([]any, len(pairs))
		copy(marked, pairs)
		for i := 1; i < len(pairs); i += 2 {
			marked[i] = strings.Repeat("\x00", width) + strconv.Itoa(i/2) + strings.Repeat("\x00", width)
		}
		s, known := t.localizeCounted(id, marked, count)
		if !known {
			return nil
		}
		m := &splitMessage{}
		for {
			start := strings.Index(s, "\x00")
			if start < 0 {
				m.parts = append(m.parts, s)
				return m
			}
			rest := s[start+width:]
			end := strings.Index(rest, "\x00")
			if end < 0 || !strings.HasPrefix(rest[end:], strings.Repeat("\x00", width)) {
				return nil
			}
			n, err := strconv.Atoi(rest[:end])
			if err != nil || n < 0 || n >= len(pairs)/2 {
				return nil
			}
			m.parts = append(m.parts, s[:start])
			m.at = append(m.at, n)
			s = rest[end+width:]
		}
	}
	a, b := cut(1), cut(2)
	if a == nil || b == nil || !slices.Equal(a.parts, b.parts) || !slices.Equal(a.at, b.at) {
		return nil
	}
	return a
}

// join is the message with the values of pairs, printed as text/template
// prints them.
func (m *splitMessage) join(pairs []any) string {
	if len(m.at) == 0 {
		return m.parts[0]
	}
	var vals [maxSplitNames]string
	n := 0
	for _, i := range m.at {
		vals[i] = printed(pairs[2*i+1])
	}
	for i, p := range m.parts {
		n += len(p)
		if i < len(m.at) {
			n += len(vals[m.at[i]])
		}
	}
	var b strings.Builder
	b.Grow(n)
	for i, p := range m.parts {
		b.WriteString(p)
		if i < len(m.at) {
			b.WriteString(vals[m.at[i]])
		}
	}
	return b.String()
}

// printed is a value as a template prints it.
func printed(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	}
	return fmt.Sprint(v)
}

// localize renders message id with pairs of template names and values;
// known is false when the catalog has no such id.
func (t *tr) localize(id string, pairs []any) (s string, known bool) {
	return t.localizeCounted(id, pairs, countOf(pairs))
}

// countOf is the value of pairs' "Count" (the last, as in the template's
// data), which picks the plural form; nil without one.
func countOf(pairs []any) (count any) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] == "Count" {
			count = pairs[i+1]
		}
	}
	return count
}

// localizeCounted is localize with the plural form picked by count, which
// need not be the "Count" value the message prints.
func (t *tr) localizeCounted(id string, pairs []any, count any) (s string, known bool) {
	data := map[string]any{}
	for i := 0; i+1 < len(pairs); i += 2 {
		k, _ := pairs[i].(string)
		data[k] = pairs[i+1]
	}
	s, err := t.loc.Localize(&i18n.LocalizeConfig{MessageID: id, TemplateData: data, PluralCount: count})
	if err != nil && s == "" {
		// Every catalog has every key (TestCatalogsComplete); an override
		// template naming an unknown one shows the id, not a blank.
		return id, false
	}
	return s, err == nil
}

// H is T for messages that carry markup (<strong>): the values are
// escaped, the catalog's own text is trusted.
func (t *tr) H(id string, pairs ...any) htmltemplate.HTML {
	esc := make([]any, len(pairs))
	for i, v := range pairs {
		if s, ok := v.(string); ok && i%2 == 1 {
			v = html.EscapeString(s)
		}
		esc[i] = v
	}
	return htmltemplate.HTML(t.T(id, esc...))
}

// Lang is the page's BCP 47 language, for <html lang>.
func (t *tr) Lang() string { return t.tag.String() }

// Dir is the writing direction of the language: "rtl" or "ltr".
func (t *tr) Dir() string {
	b, _ := t.tag.Base()
	switch b.String() {
	case "ar", "he", "fa", "ur":
		return "rtl"
	}
	return "ltr"
}

// Duration says d in words: "45 seconds", "1 minute", "10 minutes".
func (t *tr) Duration(d time.Duration) string {
	if d < time.Minute {
		return t.T("duration_seconds", "Count", waitSeconds(d))
	}
	return t.T("duration_minutes", "Count", int((d+time.Minute-1)/time.Minute))
}

// LanguageName is a language's name in that language itself, for the
// language switch.
func LanguageName(tag language.Tag) string {
	n := display.Self.Name(tag)
	if n == "" {
		return tag.String()
	}
	return n
}

// langParam and cookieLang carry a contact's choice of language.
const (
	langParam  = "lang"
	cookieLang = "portal_lang"
)

// langFor negotiates a request's language among the workspace's: a
// ?lang= choice (remembered in a cookie when w is given), then the remembered one, then
// the browser's Accept-Language, then the workspace's first language.
func (g *Gate) langFor(w http.ResponseWriter, r *http.Request, secure bool) *tr {
	langs := g.ws.Languages
	if len(langs) == 0 {
		return translator(DefaultLanguage)
	}
	pick := func(s string) (language.Tag, bool) {
		if s == "" || len(s) > 35 {
			return language.Und, false
		}
		t, err := language.Parse(s)
		if err != nil {
			return language.Und, false
		}
		for _, l := range langs {
			if l == t {
				return l, true
			}
		}
		return language.Und, false
	}
	if r.URL.RawQuery != "" {
		if t, ok := pick(r.URL.Query().Get(langParam)); ok {
			if w != nil {
				setCookie(w, secure, cookieLang, t.String(), 365*24*time.Hour)
			}
			return translator(t)
		}
	}
	if t, ok := pick(cookieValue(r, secure, cookieLang)); ok {
		return translator(t)
	}
	if al := r.Header.Get("Accept-Language"); al != "" && len(langs) > 1 {
		tags, _, err := language.ParseAcceptLanguage(al)
		if err == nil && len(tags) > 0 {
			_, i, conf := g.matcher.Match(tags...)
			if conf != language.No {
				return translator(langs[i])
			}
		}
	}
	return translator(langs[0])
}

// languageChoice is one entry of the sign-in pages' language switch.
type languageChoice struct {
	Tag     string
	Name    string
	Current bool
}

// languageChoices is the language switch of a workspace with more than
// one language.
func (g *Gate) languageChoices(cur *tr) []languageChoice {
	if len(g.ws.Languages) < 2 {
		return nil
	}
	out := make([]languageChoice, len(g.ws.Languages))
	for i, l := range g.ws.Languages {
		out[i] = languageChoice{Tag: l.String(), Name: LanguageName(l), Current: l == cur.tag}
	}
	return out
}
