package handlers

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"sync"
	texttemplate "text/template"
	"text/template/parse"
)

//go:embed templates/*
var embedded embed.FS

// Page names. Each is a file in templates/ that defines "content" and is
// rendered inside layout.html.
const (
	pageSignIn  = "signin.html"
	pageCode    = "code.html"
	pageMessage = "message.html"
	pageSignOut = "signout.html"
)

// Pages holds the parsed HTML pages and email templates.
type Pages struct {
	html map[string]*htmltemplate.Template
	mail *htmltemplate.Template
	text *texttemplate.Template

	// The templates' skeletons (skeleton.go), by page.
	pageSkeletons              map[string]*skeletons[pageData]
	mailSkeleton, textSkeleton *skeletons[mailData]
}

// LoadPages parses the embedded templates; a file of the same name in dir,
// when dir is not empty, replaces the embedded one.
func LoadPages(dir string) (*Pages, error) {
	read := func(name string) ([]byte, error) {
		if dir != "" {
			b, err := os.ReadFile(dir + "/" + name)
			if err == nil {
				return b, nil
			}
			if !os.IsNotExist(err) {
				return nil, err
			}
		}
		return fs.ReadFile(embedded, "templates/"+name)
	}
	layout, err := read("layout.html")
	if err != nil {
		return nil, fmt.Errorf("template layout.html: %w", err)
	}
	p := &Pages{html: map[string]*htmltemplate.Template{}, pageSkeletons: map[string]*skeletons[pageData]{}}
	for _, name := range []string{pageSignIn, pageCode, pageMessage, pageSignOut} {
		body, err := read(name)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		t, err := htmltemplate.New(name).Parse(string(layout))
		if err == nil {
			_, err = t.Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		p.html[name] = t
		p.pageSkeletons[name] = newSkeletons(pageSlots, htmlTrees(t), func(w io.Writer, d pageData) error {
			return t.ExecuteTemplate(w, "layout", d)
		}, pageKey)
	}
	b, err := read("code_email.html")
	if err != nil {
		return nil, fmt.Errorf("template code_email.html: %w", err)
	}
	if p.mail, err = htmltemplate.New("code_email.html").Parse(string(b)); err != nil {
		return nil, fmt.Errorf("template code_email.html: %w", err)
	}
	if b, err = read("code_email.txt"); err != nil {
		return nil, fmt.Errorf("template code_email.txt: %w", err)
	}
	if p.text, err = texttemplate.New("code_email.txt").Parse(string(b)); err != nil {
		return nil, fmt.Errorf("template code_email.txt: %w", err)
	}
	p.mailSkeleton = newSkeletons(mailSlots, htmlTrees(p.mail), func(w io.Writer, d mailData) error { return p.mail.Execute(w, d) }, mailKey)
	textTrees := func() []*parse.Tree {
		var trees []*parse.Tree
		for _, t := range p.text.Templates() {
			trees = append(trees, t.Tree)
		}
		return trees
	}
	p.textSkeleton = newSkeletons(mailSlots, textTrees, func(w io.Writer, d mailData) error { return p.text.Execute(w, d) }, mailKey)
	return p, nil
}

// htmlTrees are the parse trees of t and the templates it defines, as
// they are when called.
func htmlTrees(t *htmltemplate.Template) func() []*parse.Tree {
	return func() []*parse.Tree {
		var trees []*parse.Tree
		for _, x := range t.Templates() {
			trees = append(trees, x.Tree)
		}
		return trees
	}
}

// pageData is what every page template sees.
type pageData struct {
	// The translator: {{.T "key"}}, {{.H "key"}} (markup).
	*tr
	// {{.Lang}}, {{.Dir}}, {{.Accent}}, {{.AccentOnDark}}, {{.LogoSrc}}:
	// filled by render.
	look
	// Languages is the language switch (sign-in and code pages of a
	// workspace with more than one language).
	Languages []languageChoice
	// Brand is the workspace's look (nil: none): .Brand.LogoURL,
	// .Brand.Accent, .Brand.SupportLink, .Brand.Footer.
	Brand *Brand

	WorkspaceTitle string
	AuthPath       string
	Heading        string
	CSRF           string
	Error          string
	Notice         string

	// sign-in page
	EmailInput     string
	SSO            []ssoButton
	DirectoryMatch bool

	// sign-in page: the signed-in contact's email (SignedInAs, below)
	// offers Continue and Sign out.

	// code page: MaskedEmail is the address in full on the shared link
	// (the contact's own input), masked for a personalized link
	// (Personal); ChangeEmail offers to go back and change it.
	Personal    bool
	ChangeEmail bool
	MaskedEmail string
	CodeTTL     string
	Wait        int
	MailDelayed bool

	// sign-out page (and sign-in page, when signed in)
	SignedInAs string

	// message page; MessageHTML, when set, is shown instead of Message,
	// and Form is a POST button.
	MessageHTML htmltemplate.HTML
	Form        *formButton
	Message     string
	Next        string
	ActionURL   string
	ActionLabel string
}

// formButton is a one-button POST form: Then is its "then" field.
type formButton struct {
	Action, Label, Then string
}

type ssoButton struct {
	Name  string
	Label string
}

// render writes a page with status. Pages are never cached: they carry
// CSRF tokens and per-contact state.
func (p *Pages) render(w http.ResponseWriter, status int, name string, d pageData) error {
	if d.tr == nil {
		d.tr = translator(DefaultLanguage)
	}
	d.look = lookOf(d.tr, d.Brand)
	buf := renderBuffer()
	defer putRenderBuffer(buf)
	if err := p.pageSkeletons[name].execute(buf, d); err != nil {
		return fmt.Errorf("rendering %s: %w", name, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	// A brand's logo is the only image: a data: URL or the operator's host.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"+d.Brand.imgSrc())
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// mailData is what the code email templates see.
type mailData struct {
	*tr
	look           // filled by codeMail
	Brand          *Brand
	WorkspaceTitle string
	Code           string
	CodeTTL        string
	// RequestedAt is when the code was asked for (UTC), Browser from which
	// browser ("Firefox on Windows").
	RequestedAt string
	Browser     string
}

func (p *Pages) codeMail(d mailData) (text, html string, err error) {
	if d.tr == nil {
		d.tr = translator(DefaultLanguage)
	}
	d.look = lookOf(d.tr, d.Brand)
	tb, hb := renderBuffer(), renderBuffer()
	defer putRenderBuffer(tb)
	defer putRenderBuffer(hb)
	if err := p.textSkeleton.execute(tb, d); err != nil {
		return "", "", fmt.Errorf("rendering code email: %w", err)
	}
	if err := p.mailSkeleton.execute(hb, d); err != nil {
		return "", "", fmt.Errorf("rendering code email: %w", err)
	}
	return tb.String(), hb.String(), nil
}

// renderBuffers hold pages and emails while they render: a page is 6 to
// 8 KB, which a fresh buffer would reach by growing four times.
var renderBuffers = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 16<<10)) }}

// renderBuffer is an empty buffer from renderBuffers.
func renderBuffer() *bytes.Buffer {
	b := renderBuffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

// putRenderBuffer returns b to renderBuffers, unless a large override
// template grew it past 256 KB.
func putRenderBuffer(b *bytes.Buffer) {
	if b.Cap() <= 256<<10 {
		renderBuffers.Put(b)
	}
}
