package handlers

import (
	"bytes"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// direct is page name with d as the template renders it, with render's
// own defaults.
func direct(t *testing.T, p *Pages, name string, d pageData) string {
	t.Helper()
	if d.tr == nil {
		d.tr = translator(DefaultLanguage)
	}
	d.look = lookOf(d.tr, d.Brand)
	var b bytes.Buffer
	if err := p.html[name].ExecuteTemplate(&b, "layout", d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// rendered is page name with d as render writes it.
func rendered(t *testing.T, p *Pages, name string, d pageData) string {
	t.Helper()
	w := httptest.NewRecorder()
	if err := p.render(w, 200, name, d); err != nil {
		t.Fatal(err)
	}
	return w.Body.String()
}

// slotValues are values each slot is given in turn: ones a skeleton takes
// and ones it must leave to the template (markup, quotes, a plus, a
// marker of its own, space where the slot has none).
var slotValues = []string{
	"", "x", "jane@acme.example", "j***@acme.example", "AbC-_9z", "Zoë.Ñandú@acme.example",
	"<b>x</b>", `a"b'c&d`, "ab--cd", "expression", "jane+tag@acme.example", "pgSkelQ0x", "a b", "javascript:alert(1)", "é",
}

// pageVariants are the pages in the states a sign-in shows them in.
func pageVariants() map[string][]pageData {
	brand := &Brand{Accent: "#ffcc00", SupportURL: "https://help.acme.example", Footer: "Acme Inc."}
	langs := []languageChoice{{Tag: "en", Name: "English"}, {Tag: "de", Name: "Deutsch", Current: true}}
	return map[string][]pageData{
		pageSignIn: {
			{WorkspaceTitle: "Acme", AuthPath: "/_portal", Heading: "Sign in"},
			{WorkspaceTitle: "Acme <Support>", AuthPath: "/_portal", Brand: brand, Languages: langs, Error: "Sign-in failed",
				SSO: []ssoButton{{Name: "google", Label: "Google"}}, DirectoryMatch: true},
		},
		pageCode: {
			{WorkspaceTitle: "Acme", AuthPath: "/_portal", CodeTTL: "10 minutes"},
			{WorkspaceTitle: "Acme", AuthPath: "/_portal", CodeTTL: "10 minutes", Personal: true, Wait: 25, MailDelayed: true},
			{WorkspaceTitle: "Acme", AuthPath: "/_portal", CodeTTL: "1 minute", ChangeEmail: true, Error: "Sign-in failed", Brand: brand, Languages: langs},
		},
		pageMessage: {
			{WorkspaceTitle: "Acme", AuthPath: "/_portal", Heading: "Invalid portal link", Message: "Use a fresh link.", ActionURL: "/_portal/signin", ActionLabel: "Sign in"},
			{WorkspaceTitle: "Acme", AuthPath: "/_portal", Heading: "Signed in", Form: &formButton{Action: "/_portal/signout", Label: "Sign out", Then: "/"}},
		},
		pageSignOut: {
			{WorkspaceTitle: "Acme", AuthPath: "/_portal", Heading: "Sign out"},
		},
	}
}

// fill gives every slot of d the value v.
func fill(d pageData, v string) pageData {
	for _, s := range pageSlots {
		*s.field(&d) = v
	}
	return d
}

// TestSkeletonsMatchTemplates renders every page in every language and
// state with every slot value, each time after a page of the same shape
// with other values, and compares it with what the template renders.
func TestSkeletonsMatchTemplates(t *testing.T) {
	p, err := LoadPages("")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range p.pageSkeletons {
		if !s.usable {
			t.Errorf("%s: the embedded template does not keep a skeleton", name)
		}
	}
	for name, variants := range pageVariants() {
		for _, tag := range Languages {
			for _, base := range variants {
				base.tr = translator(tag)
				for i, v := range slotValues {
					// The page before had other values in the same shape.
					before := fill(base, slotValues[(i+3)%len(slotValues)])
					if v == "" {
						before = base
					}
					if got, want := rendered(t, p, name, before), direct(t, p, name, before); got != want {
						t.Fatalf("%s %s %q: skeleton\n%s\ntemplate\n%s", name, tag, before.CSRF, got, want)
					}
					d := fill(base, v)
					if got, want := rendered(t, p, name, d), direct(t, p, name, d); got != want {
						t.Fatalf("%s %s %q: skeleton\n%s\ntemplate\n%s", name, tag, v, got, want)
					}
				}
			}
		}
	}
	// The pages a sign-in renders most come from skeletons.
	for _, name := range []string{pageSignIn, pageCode} {
		kept := 0
		for _, sk := range p.pageSkeletons[name].m {
			if sk != nil {
				kept++
			}
		}
		if kept == 0 {
			t.Errorf("%s: no skeleton kept", name)
		}
	}
}

// TestSkeletonsMatchOperatorTemplates: templates that put the slots where
// a skeleton cannot keep them (in a script, a URL, a style, an unquoted
// attribute, a comparison, a function, a message id or count, a with)
// render as the template renders them, for every value.
func TestSkeletonsMatchOperatorTemplates(t *testing.T) {
	layout := `{{define "layout"}}<title>{{.WorkspaceTitle}}</title>{{template "content" .}}{{end}}`
	contents := map[string]struct {
		body   string
		usable bool // the parse trees allow a skeleton
		kept   bool // pages with filled slots come from skeletons
	}{
		"script":   {`{{define "content"}}<script>var c = "{{.CSRF}}", e = {{.EmailInput}};</script>{{end}}`, true, false},
		"url":      {`{{define "content"}}<a href="/x?e={{.EmailInput}}&c={{.CSRF}}">x</a><a href="{{.MaskedEmail}}">y</a>{{end}}`, true, false},
		"style":    {`{{define "content"}}<p style="content: '{{.EmailInput}}'">x</p><style>p{color:{{.CSRF}}}</style>{{end}}`, true, false},
		"unquoted": {`{{define "content"}}<input value={{.EmailInput}} data-c={{.CSRF}}>{{end}}`, true, true},
		"attrname": {`{{define "content"}}<input {{.CSRF}}="1">{{end}}`, true, false},
		"compare":  {`{{define "content"}}{{if eq .EmailInput "jane@acme.example"}}Jane{{else}}other{{end}}{{end}}`, false, false},
		"len":      {`{{define "content"}}{{len .CSRF}} {{.CSRF}}{{end}}`, false, false},
		"printf":   {`{{define "content"}}{{printf "%.3s" .MaskedEmail}}{{end}}`, false, false},
		"slice":    {`{{define "content"}}{{if .CSRF}}{{slice .CSRF 0 1}}{{end}}{{end}}`, false, false},
		"id":       {`{{define "content"}}{{.T .EmailInput}}{{end}}`, false, false},
		"count":    {`{{define "content"}}{{.T "duration_seconds" "Count" .CSRF}}{{end}}`, false, false},
		"with":     {`{{define "content"}}{{with .EmailInput}}[{{.}}]{{end}}{{end}}`, false, false},
		"variable": {`{{define "content"}}{{$e := .EmailInput}}{{$e}}{{end}}`, false, false},
		"pipe":     {`{{define "content"}}{{.CSRF | print}}{{end}}`, false, false},
		"call":     {`{{define "content"}}{{template "x" .CSRF}}{{end}}{{define "x"}}{{.}}{{end}}`, false, false},
		"dollar":   {`{{define "content"}}{{range .SSO}}{{$.CSRF}}{{end}}{{if $.EmailInput}}{{$.EmailInput}}{{end}}{{end}}`, true, true},
		"message":  {`{{define "content"}}{{.H "signed_in_as" "Workspace" .WorkspaceTitle "Email" .EmailInput}}{{.T "code_sent" "Email" .MaskedEmail "Workspace" .WorkspaceTitle "TTL" .CodeTTL}}{{end}}`, true, true},
		"marker":   {`{{define "content"}}pgSkelQ0x {{.CSRF}}{{end}}`, true, false},
		// A template called in a style or a URL: html/template escapes a
		// copy of it that it does not list.
		"derived css": {`{{define "content"}}<style>p{color:{{template "v" .}}}</style>{{end}}{{define "v"}}{{.CSRF}}{{end}}`, true, false},
		"derived url": {`{{define "content"}}<a href="{{template "v" .}}">x</a>{{end}}{{define "v"}}{{.EmailInput}}{{end}}`, true, false},
	}
	for name, c := range contents {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "layout.html"), []byte(layout), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, pageSignIn), []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := LoadPages(dir)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.pageSkeletons[pageSignIn].usable; got != c.usable {
				t.Errorf("usable = %v, want %v", got, c.usable)
			}
			base := pageData{tr: translator(DefaultLanguage), WorkspaceTitle: "Acme", AuthPath: "/_portal", CodeTTL: "10 minutes",
				SSO: []ssoButton{{Name: "google", Label: "Google"}}}
			for _, first := range slotValues {
				for _, v := range slotValues {
					before, d := fill(base, first), fill(base, v)
					_ = rendered(t, p, pageSignIn, before)
					if got, want := rendered(t, p, pageSignIn, d), direct(t, p, pageSignIn, d); got != want {
						t.Fatalf("after %q, %q: skeleton\n%s\ntemplate\n%s", first, v, got, want)
					}
				}
			}
			kept := false
			for k, sk := range p.pageSkeletons[pageSignIn].m {
				if sk != nil && k.filled != 0 {
					kept = true
				}
			}
			if kept != c.kept {
				t.Errorf("a skeleton with filled slots kept: %v, want %v", kept, c.kept)
			}
		})
	}
}

// TestSkeletonKeyCoversEveryField changes each field of a page and a mail
// that is not a slot, the translator or the look, one at a time, and
// expects another key: a field left out of the key would let one page be
// served for another.
func TestSkeletonKeyCoversEveryField(t *testing.T) {
	t.Run("page", func(t *testing.T) {
		keyChanges(t, reflect.TypeFor[pageData](), func(v reflect.Value) string {
			d := v.Interface().(pageData)
			return pageKey(&d).rest
		}, pageSlots[0].name, pageSlots[1].name, pageSlots[2].name, pageSlots[3].name)
	})
	t.Run("mail", func(t *testing.T) {
		keyChanges(t, reflect.TypeFor[mailData](), func(v reflect.Value) string {
			d := v.Interface().(mailData)
			return mailKey(&d).rest
		}, mailSlots[0].name, mailSlots[1].name, mailSlots[2].name)
	})
}

func keyChanges(t *testing.T, typ reflect.Type, key func(reflect.Value) string, slots ...string) {
	t.Helper()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Anonymous || strings.Contains(strings.Join(slots, ","), f.Name) || f.Name == "Brand" {
			// The translator and the look (derived from the translator
			// and the brand) are in the key as pointers; the brand too.
			continue
		}
		for _, leaf := range leaves(f.Type) {
			a, b := reflect.New(typ).Elem(), reflect.New(typ).Elem()
			setLeaves(a.Field(i), nil, 1)
			setLeaves(b.Field(i), leaf, 2)
			if key(a) == key(b) {
				t.Errorf("%s.%s%v: the key does not change with it", typ.Name(), f.Name, leaf)
			}
		}
	}
}

// leaves are the paths to the scalar fields under typ.
func leaves(typ reflect.Type) [][]int {
	switch typ.Kind() {
	case reflect.Pointer, reflect.Slice:
		return leaves(typ.Elem())
	case reflect.Struct:
		var out [][]int
		for i := range typ.NumField() {
			for _, l := range leaves(typ.Field(i).Type) {
				out = append(out, append([]int{i}, l...))
			}
		}
		return out
	}
	return [][]int{{}}
}

// setLeaves gives every scalar under v a value from n, except the leaf at
// path, which gets n+1 when path is not nil.
func setLeaves(v reflect.Value, path []int, n int) {
	var set func(v reflect.Value, path []int, on bool)
	set = func(v reflect.Value, path []int, on bool) {
		k := 1
		if on && path != nil && len(path) == 0 {
			k = n
		}
		switch v.Kind() {
		case reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
			set(v.Elem(), path, on)
		case reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
			set(v.Index(0), path, on)
		case reflect.Struct:
			for i := range v.NumField() {
				if on && len(path) > 0 && path[0] == i {
					set(v.Field(i), path[1:], true)
				} else {
					set(v.Field(i), nil, false)
				}
			}
		case reflect.String:
			v.SetString(strings.Repeat("v", k))
		case reflect.Bool:
			v.SetBool(k > 1)
		case reflect.Int:
			v.SetInt(int64(k))
		}
	}
	set(v, path, true)
}

// TestMailSkeletonsMatchTemplates: the code mail, text and HTML, in every
// language, as the templates render it.
func TestMailSkeletonsMatchTemplates(t *testing.T) {
	p, err := LoadPages("")
	if err != nil {
		t.Fatal(err)
	}
	if !p.mailSkeleton.usable || !p.textSkeleton.usable {
		t.Fatal("the embedded code mail does not keep a skeleton")
	}
	for _, tag := range Languages {
		tr := translator(tag)
		for i, browser := range []string{tr.T("mail_browser", "Browser", "Firefox", "OS", "Windows"), tr.T("mail_unknown_browser"), "<x>", ""} {
			for j, code := range []string{"ABC-D234", "XYZ-9876", "<b>", ""} {
				d := mailData{tr: tr, Brand: &Brand{Accent: "#ffcc00", Footer: "Acme"}, WorkspaceTitle: "Acme", Code: code,
					CodeTTL: tr.Duration(600e9), RequestedAt: "1 December 2026, 16:0" + string(rune('0'+i+j)) + " UTC", Browser: browser}
				text, html, err := p.codeMail(d)
				if err != nil {
					t.Fatal(err)
				}
				d.look = lookOf(d.tr, d.Brand)
				var wt, wh bytes.Buffer
				if err := p.text.Execute(&wt, d); err != nil {
					t.Fatal(err)
				}
				if err := p.mail.Execute(&wh, d); err != nil {
					t.Fatal(err)
				}
				if text != wt.String() || html != wh.String() {
					t.Fatalf("%s %q %q: skeleton\n%s\n%s\ntemplate\n%s\n%s", tag, browser, code, text, html, wt.String(), wh.String())
				}
			}
		}
	}
	kept := 0
	for _, sk := range p.mailSkeleton.m {
		if sk != nil {
			kept++
		}
	}
	if kept == 0 {
		t.Error("no mail skeleton kept")
	}
}

// TestSkeletonLeavesMessagesThatDoMore: a message that does more with a
// value than print it (here: counts its letters) keeps its page out of
// skeletons.
func TestSkeletonLeavesMessagesThatDoMore(t *testing.T) {
	b := i18n.NewBundle(language.English)
	b.MustAddMessages(language.English,
		&i18n.Message{ID: "signed_in_as", Other: `Signed in as {{.Email}} ({{len .Email}} letters)`})
	x := &tr{loc: i18n.NewLocalizer(b, "en"), tag: language.English}
	p, err := LoadPages("")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"joe@acme.example", "jane@acme.example", "annabel@acme.example"} {
		d := pageData{tr: x, WorkspaceTitle: "Acme", AuthPath: "/_portal", SignedInAs: v, CSRF: "tok"}
		if got, want := rendered(t, p, pageSignIn, d), direct(t, p, pageSignIn, d); got != want {
			t.Fatalf("%q: skeleton\n%s\ntemplate\n%s", v, got, want)
		}
	}
	for _, sk := range p.pageSkeletons[pageSignIn].m {
		if sk != nil {
			t.Error("a skeleton was kept")
		}
	}
}

// FuzzSkeletonMatchesTemplate: whatever a contact types or a token
// holds, a page from a skeleton is the page the template renders.
func FuzzSkeletonMatchesTemplate(f *testing.F) {
	for _, v := range slotValues {
		f.Add(v, "j***@acme.example", uint8(0))
	}
	f.Add("jane@acme.example", "<script>", uint8(1))
	f.Add("a\u2028b", "x\x00y", uint8(2))
	p, err := LoadPages("")
	if err != nil {
		f.Fatal(err)
	}
	pages := []string{pageSignIn, pageCode, pageMessage, pageSignOut}
	f.Fuzz(func(t *testing.T, a, b string, which uint8) {
		name := pages[int(which)%len(pages)]
		variants := pageVariants()[name]
		d := variants[int(which/4)%len(variants)]
		d.tr = translator(Languages[int(which)%len(Languages)])
		d.CSRF, d.EmailInput, d.MaskedEmail, d.SignedInAs = a, b, a, b
		// Twice: the first may build the skeleton, the second uses it.
		for range 2 {
			if got, want := rendered(t, p, name, d), direct(t, p, name, d); got != want {
				t.Fatalf("%s with %q, %q: skeleton\n%s\ntemplate\n%s", name, a, b, got, want)
			}
		}
	})
}

// TestSkeletonsPastTheBoundRenderOnce: once a template keeps
// maxSkeletons shapes, a page of a new shape is rendered once, through the
// template, not built first.
func TestSkeletonsPastTheBoundRenderOnce(t *testing.T) {
	p, err := LoadPages("")
	if err != nil {
		t.Fatal(err)
	}
	s := p.pageSkeletons[pageSignIn]
	exec := s.exec
	calls := 0
	s.exec = func(w io.Writer, d pageData) error { calls++; return exec(w, d) }
	base := pageData{tr: translator(DefaultLanguage), WorkspaceTitle: "Acme", AuthPath: "/_portal", CSRF: "tok"}
	for i := range maxSkeletons {
		d := base
		d.Error = fmt.Sprintf("error %d", i)
		_ = rendered(t, p, pageSignIn, d)
	}
	if len(s.m) != maxSkeletons {
		t.Fatalf("%d shapes kept, want %d", len(s.m), maxSkeletons)
	}
	d := base
	d.Error = "one more"
	calls = 0
	if got, want := rendered(t, p, pageSignIn, d), direct(t, p, pageSignIn, d); got != want {
		t.Fatalf("past the bound: skeleton\n%s\ntemplate\n%s", got, want)
	}
	if calls != 1 || len(s.m) != maxSkeletons {
		t.Fatalf("past the bound: %d renders, %d shapes; want 1 and %d", calls, len(s.m), maxSkeletons)
	}
}
