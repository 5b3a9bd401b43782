package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// CSRFPattern matches the hidden CSRF field of the portal's forms; its
// first group is the token.
var CSRFPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// Options tune a Client.
type Options struct {
	// FreshConns opens a new connection for every request. A Caddy config
	// reload closes the old server's idle connections, which a pooled
	// client would otherwise reuse and see EOF on. Default: connections
	// are pooled.
	FreshConns bool
	// Timeout bounds each request. Default: 15s.
	Timeout time.Duration
	// Transport, when set, carries the requests (clients can share one,
	// as a benchmark's many browsers do). Default: Go's, or a fresh
	// connection each time with FreshConns.
	Transport http.RoundTripper
}

// Client is a user agent with its own cookies that does not follow
// redirects, so each hop can be checked.
type Client struct {
	// Base is the site's address, like "http://127.0.0.1:8080"; request
	// paths are relative to it.
	Base string
	// Header is sent with every request. Default: the Accept header of a
	// browser opening a page.
	Header http.Header
	// Mailbox is where SignIn waits for the code mail.
	Mailbox *Mailbox

	http *http.Client
}

// NewClient returns a Client for the site at base, with an empty cookie
// jar.
func NewClient(base string, o Options) *Client {
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar:           jar,
		Timeout:       o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if o.FreshConns {
		c.Transport = &http.Transport{DisableKeepAlives: true}
	}
	if o.Transport != nil {
		c.Transport = o.Transport
	}
	return &Client{Base: base, Header: http.Header{"Accept": {"text/html,application/xhtml+xml"}}, http: c}
}

// On returns a Client with c's cookies, headers and connections that talks
// to the site at base, as one browser behind a load balancer would reach
// two servers.
func (c *Client) On(base string) *Client {
	return &Client{Base: base, Header: c.Header.Clone(), Mailbox: c.Mailbox, http: c.http}
}

// Cookie is the value of the named cookie the site has set, "" when it has
// set none.
func (c *Client) Cookie(name string) string {
	u, err := url.Parse(c.Base)
	if err != nil {
		return ""
	}
	for _, ck := range c.http.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// Response is what the site answered.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Location is the Location header, where a redirect points.
	Location string
	// Body is the whole body.
	Body string
	// Header holds all response headers.
	Header http.Header
}

// Do sends a request for path, with form (nil for none) as an urlencoded
// body, and hdr as header name and value pairs on top of c.Header.
func (c *Client) Do(method, path string, form url.Values, hdr ...string) (Response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.Base+path, body)
	if err != nil {
		return Response{}, err
	}
	for k, v := range c.Header {
		req.Header[k] = v
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	// Read into the string itself: one copy of a page, not two.
	var b strings.Builder
	if resp.ContentLength > 0 {
		b.Grow(int(resp.ContentLength))
	}
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if _, err := io.CopyBuffer(&b, resp.Body, *buf); err != nil {
		return Response{}, fmt.Errorf("%s %s: reading the body: %w", method, path, err)
	}
	return Response{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Body: b.String(), Header: resp.Header}, nil
}

// copyBuffers spare each response a new 32 KB buffer of its own (neither
// the body nor the builder offers one to io.Copy).
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Get requests path; hdr are header name and value pairs.
func (c *Client) Get(path string, hdr ...string) (Response, error) {
	return c.Do(http.MethodGet, path, nil, hdr...)
}

// Post submits form to path; hdr are header name and value pairs.
func (c *Client) Post(path string, form url.Values, hdr ...string) (Response, error) {
	return c.Do(http.MethodPost, path, form, hdr...)
}

// CSRF is the CSRF token of the form in a page.
func CSRF(body string) (string, error) {
	m := CSRFPattern.FindStringSubmatch(body)
	if m == nil {
		return "", fmt.Errorf("no csrf token in page:\n%s", body)
	}
	return m[1], nil
}

// SubmitEmail opens the sign-in page and submits email; it returns the
// code page's CSRF token.
func (c *Client) SubmitEmail(email string) (string, error) {
	page, err := c.Get("/_portal/signin")
	if err != nil {
		return "", err
	}
	if page.Status != http.StatusOK {
		return "", fmt.Errorf("sign-in page: %d", page.Status)
	}
	csrf, err := CSRF(page.Body)
	if err != nil {
		return "", err
	}
	r, err := c.Post("/_portal/signin", url.Values{"csrf": {csrf}, "email": {email}})
	if err != nil {
		return "", err
	}
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/code" {
		return "", fmt.Errorf("submitting email: %d %q\n%s", r.Status, r.Location, r.Body)
	}
	code, err := c.Get("/_portal/code")
	if err != nil {
		return "", err
	}
	if code.Status != http.StatusOK {
		return "", fmt.Errorf("code page: %d", code.Status)
	}
	return CSRF(code.Body)
}

// EnterCode posts a code with the code page's CSRF token.
func (c *Client) EnterCode(csrf, code string) (Response, error) {
	return c.Post("/_portal/code", url.Values{"csrf": {csrf}, "code": {code}})
}

// SignIn goes through the whole email-code flow from wanted: wanted
// redirects to the sign-in page, the code mail reaches c.Mailbox for email
// alone, and entering its code redirects back to wanted.
func (c *Client) SignIn(email, wanted string) error {
	if c.Mailbox == nil {
		return errors.New("signing in needs a Mailbox for the code")
	}
	r, err := c.Get(wanted)
	if err != nil {
		return err
	}
	if r.Status != http.StatusSeeOther || r.Location != "/_portal/signin" {
		return fmt.Errorf("GET %s before sign-in: %d %q", wanted, r.Status, r.Location)
	}
	csrf, err := c.SubmitEmail(email)
	if err != nil {
		return err
	}
	m, err := c.Mailbox.Wait(10 * time.Second)
	if err != nil {
		return err
	}
	if len(m.To) != 1 || m.To[0] != email {
		return fmt.Errorf("mail went to %v, want %s", m.To, email)
	}
	if r, err = c.EnterCode(csrf, m.Code()); err != nil {
		return err
	}
	if r.Status != http.StatusSeeOther || r.Location != wanted {
		return fmt.Errorf("entering code: %d %q, want 303 to %s\n%s", r.Status, r.Location, wanted, r.Body)
	}
	return nil
}
