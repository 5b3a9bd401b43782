package handlers

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// mint makes a personalized link and returns its path and token.
func (tp *testPortal) mint(t testing.TB, ws, contactID, returnTo string, ttl time.Duration) (path, token string) {
	t.Helper()
	l, err := tp.portal.MintLink(context.Background(), ws, contactID, returnTo, ttl)
	if err != nil {
		t.Fatalf("MintLink(%s, %s, %q, %s): %v", ws, contactID, returnTo, ttl, err)
	}
	u, err := url.Parse(l.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := tp.portal.Workspaces[ws].URL
	if u.Scheme != want.Scheme || u.Host != want.Host || !strings.HasPrefix(u.Path, "/_portal/link/") {
		t.Fatalf("link %s is not under %s/_portal/link/", l.URL, want)
	}
	return u.Path, strings.TrimPrefix(u.Path, "/_portal/link/")
}

// wantInvalidLink checks the "Invalid portal link" answer.
func wantInvalidLink(t testing.TB, what string, res *response) {
	t.Helper()
	wantStatus(t, what, res, http.StatusBadRequest)
	wantBody(t, what, res, "Invalid portal link")
	if res.passed {
		t.Fatalf("%s: reached the portal", what)
	}
}

// TestLinkSignIn checks the whole personalized-link flow: the code is sent
// at once, to the link's contact, and leads to the link's return path.
func TestLinkSignIn(t *testing.T) {
	tp := newTestPortal(t, nil)
	path, _ := tp.mint(t, "acme", jane.ID, "/tickets/42?tab=history", 0)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "open link", b.get(path), "/_portal/code")
	m := tp.waitMail(t, 1)
	if m.To != jane.Email {
		t.Fatalf("code sent to %q, want %q", m.To, jane.Email)
	}
	page := b.get("/_portal/code")
	wantStatus(t, "code page", page, http.StatusOK)
	wantBody(t, "code page", page, maskEmail(jane.Email))
	res := b.submitCode(csrf(t, page), mailCode(t, m))
	wantRedirect(t, "right code", res, "/tickets/42?tab=history")
	res = b.get("/tickets/42?tab=history")
	if !res.passed || res.identity.Get(HeaderContactID) != jane.ID {
		t.Fatalf("after link sign-in: passed %v, contact %q", res.passed, res.identity.Get(HeaderContactID))
	}
}

// TestLinkExpiry checks that a link works until its ttl and gives the
// invalid-link page, sending nothing, from then on.
func TestLinkExpiry(t *testing.T) {
	tp := newTestPortal(t, nil)
	short, _ := tp.mint(t, "acme", jane.ID, "/a", time.Hour)
	long, _ := tp.mint(t, "acme", jane.ID, "/b", time.Hour+time.Second)
	def, _ := tp.mint(t, "acme", jane.ID, "/c", 0) // link_ttl, 72h

	tp.clock.Advance(time.Hour)
	wantInvalidLink(t, "link at its expiry", tp.browser(t, tp.acme).get(short))
	tp.wantNoMail(t)
	wantRedirect(t, "link a second before its expiry", tp.browser(t, tp.acme).get(long), "/_portal/code")
	tp.waitMail(t, 1)

	tp.clock.Advance(71 * time.Hour)
	wantInvalidLink(t, "default link after link_ttl", tp.browser(t, tp.acme).get(def))
	tp.settle(t)
	if n := tp.mail.count(); n != 1 {
		t.Fatalf("%d emails, want 1", n)
	}
}

// TestLinkTampered flips each bit of every byte of a token in turn: every
// change gives the invalid-link page and sends nothing. So do truncations
// and additions.
func TestLinkTampered(t *testing.T) {
	// Hundreds of invalid links from one client: lift the per-client limit
	// on them, which TestInvalidLinksLimited covers.
	tp := newTestPortal(t, func(p *Portal) { p.Limits.RequestsPerIP = 1 << 20 })
	_, tok := tp.mint(t, "acme", jane.ID, "/tickets/42", 0)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	b := tp.browser(t, tp.acme)
	open := func(what string, bad []byte) {
		t.Helper()
		wantInvalidLink(t, what, b.get("/_portal/link/"+base64.RawURLEncoding.EncodeToString(bad)))
	}
	for i := range raw {
		for bit := range 8 {
			bad := append([]byte(nil), raw...)
			bad[i] ^= 1 << bit
			open("byte "+strconv.Itoa(i)+" bit "+strconv.Itoa(bit), bad)
		}
	}
	for n := range len(raw) {
		open("first "+strconv.Itoa(n)+" bytes", raw[:n])
	}
	open("extra byte", append(append([]byte(nil), raw...), 0))
	for _, s := range []string{"", "x", tok + "A", tok[:len(tok)-1], tok + "=", "%25" + tok, tok + "/x", strings.ToUpper(tok)} {
		if s == tok {
			continue
		}
		wantInvalidLink(t, "token "+s, b.get("/_portal/link/"+s))
	}
	tp.wantNoMail(t)

	// The untouched token still works, so the refusals above were real.
	wantRedirect(t, "untouched token", b.get("/_portal/link/"+tok), "/_portal/code")
	tp.waitMail(t, 1)
}

// TestLinkForeignWorkspace checks that a link works only on the workspace
// it was made for, even where the other workspace has a contact with the
// same id.
func TestLinkForeignWorkspace(t *testing.T) {
	tp := newTestPortal(t, nil)
	acmePath, _ := tp.mint(t, "acme", jane.ID, "/", 0)
	otherPath, _ := tp.mint(t, "other", otherJane.ID, "/", 0)
	olgaPath, _ := tp.mint(t, "other", otherOne.ID, "/", 0)
	wantInvalidLink(t, "acme link on other", tp.browser(t, tp.other).get(acmePath))
	wantInvalidLink(t, "other link on acme", tp.browser(t, tp.acme).get(otherPath))
	wantInvalidLink(t, "other link of a contact acme lacks, on acme", tp.browser(t, tp.acme).get(olgaPath))
	tp.wantNoMail(t)
}

// TestLinkContactDisabled checks that a link stops working when its
// contact is disabled or deleted after it was made.
func TestLinkContactDisabled(t *testing.T) {
	tp := newTestPortal(t, nil)
	ctx := context.Background()
	path, _ := tp.mint(t, "acme", jane.ID, "/", 0)
	c := jane
	c.Status = storage.StatusDisabled
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := tp.store.PutContacts(ctx, "acme", []storage.Contact{c}); err != nil {
		t.Fatal(err)
	}
	wantInvalidLink(t, "link of a disabled contact", tp.browser(t, tp.acme).get(path))

	c.Status = storage.StatusActive
	if err := tp.store.PutContacts(ctx, "acme", []storage.Contact{c}); err != nil {
		t.Fatal(err)
	}
	path2, _ := tp.mint(t, "acme", jane.ID, "/", 0)
	if _, err := tp.store.DeleteContact(ctx, "acme", jane.ID); err != nil {
		t.Fatal(err)
	}
	wantInvalidLink(t, "link of a deleted contact", tp.browser(t, tp.acme).get(path2))
	tp.wantNoMail(t)
}

// TestMintLinkRefuses checks MintLink's InputErrors.
func TestMintLinkRefuses(t *testing.T) {
	tp := newTestPortal(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name, contact, returnTo string
		ttl                     time.Duration
	}{
		{"unknown contact", "c-404", "/", 0},
		{"disabled contact", bob.ID, "/", 0},
		{"other workspace's contact", otherOne.ID, "/", 0},
		{"scheme-relative return_to", jane.ID, "//evil.com", 0},
		{"absolute return_to", jane.ID, "https://evil.com/", 0},
		{"backslash return_to", jane.ID, "/\\evil.com", 0},
		{"return_to under the auth path", jane.ID, "/_portal/signin", 0},
		{"return_to the auth path", jane.ID, "/_portal", 0},
		{"return_to the auth path with a query", jane.ID, "/_portal?x=1", 0},
		{"return_to into the auth path by dots", jane.ID, "/x/../_portal/code", 0},
		{"ttl over link_max_ttl", jane.ID, "/", 30*24*time.Hour + time.Second},
		{"ttl under a minute", jane.ID, "/", time.Second},
		{"negative ttl", jane.ID, "/", -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := tp.portal.MintLink(ctx, "acme", tc.contact, tc.returnTo, tc.ttl)
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("MintLink = %+v, %v; want an *InputError", l, err)
			}
			if l != (Link{}) {
				t.Fatalf("MintLink returned %+v with its error", l)
			}
		})
	}
	if _, err := tp.portal.MintLink(ctx, "nope", jane.ID, "/", 0); !errors.Is(err, ErrUnknownWorkspace) {
		t.Fatalf("unknown workspace: %v", err)
	}
	l, err := tp.portal.MintLink(ctx, "acme", jane.ID, "/", 30*24*time.Hour)
	if err != nil {
		t.Fatalf("ttl of exactly link_max_ttl: %v", err)
	}
	if want := tp.clock.Now().Add(30 * 24 * time.Hour); !l.ExpiresAt.Equal(want) {
		t.Fatalf("ExpiresAt %s, want %s", l.ExpiresAt, want)
	}
	tp.wantNoMail(t)
}

// TestLinkOpenedTwice checks that a link fetched twice within the resend
// cooldown (a mail scanner, then the contact) sends one email, and that its
// code works in the second browser.
func TestLinkOpenedTwice(t *testing.T) {
	tp := newTestPortal(t, nil)
	path, _ := tp.mint(t, "acme", jane.ID, "/tickets/5", 0)
	scanner := tp.browser(t, tp.acme)
	scanner.ip = "203.0.113.9"
	wantRedirect(t, "scanner", scanner.get(path), "/_portal/code")
	m := tp.waitMail(t, 1)

	tp.clock.Advance(5 * time.Second)
	contact := tp.browser(t, tp.acme)
	wantRedirect(t, "contact", contact.get(path), "/_portal/code")
	tp.settle(t)
	if n := tp.mail.count(); n != 1 {
		t.Fatalf("%d emails for a link opened twice within the cooldown, want 1", n)
	}
	page := contact.get("/_portal/code")
	wantBody(t, "code page", page, "wait 25 s")
	wantRedirect(t, "code", contact.submitCode(csrf(t, page), mailCode(t, m)), "/tickets/5")
}

// FuzzLinkToken gives random tokens to the link page of acme and to
// openLinkToken: no panic, no error, no 5xx, always the invalid-link page,
// and never any mail. The seeds include well-formed tokens that acme must
// refuse: another workspace's and an expired one.
func FuzzLinkToken(f *testing.F) {
	tp := newTestPortal(f, nil)
	_, expired := tp.mint(f, "acme", jane.ID, "/tickets/1", time.Minute)
	_, foreign := tp.mint(f, "other", otherOne.ID, "/tickets/1", 0)
	_, live := tp.mint(f, "acme", jane.ID, "/", 0)
	tp.clock.Advance(time.Minute)
	// A token with a valid MAC for acme but a return path that is not safe:
	// only reachable by sealing it here.
	key := tp.portal.state.Load().keys["acme"].link
	unsafe := sealLink(key, "acme", linkClaims{ContactID: jane.ID, ReturnTo: "//evil.com", ExpiresAt: tp.clock.Now().Add(time.Hour)})
	bobTok := sealLink(key, "acme", linkClaims{ContactID: bob.ID, ReturnTo: "/", ExpiresAt: tp.clock.Now().Add(time.Hour)})
	// A live acme token would send mail, so it is only a seed with its
	// last MAC bit flipped.
	raw, _ := base64.RawURLEncoding.DecodeString(live)
	raw[len(raw)-1] ^= 1
	for _, s := range []string{
		"", "x", "%", "%zz", "%2F", "..", "../signin", expired, foreign, unsafe, bobTok,
		base64.RawURLEncoding.EncodeToString(raw),
		strings.Repeat("A", 1025), strings.Repeat("A", 200),
		base64.RawURLEncoding.EncodeToString([]byte{linkVersion}),
		base64.RawURLEncoding.EncodeToString(append([]byte{linkVersion}, make([]byte, 40)...)),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		now := tp.clock.Now()
		if c, err := openLinkToken(key, "acme", tok, now); err == nil {
			// Only the tokens sealed above may open; the page refuses them.
			if !sameToken(tok, unsafe) && !sameToken(tok, bobTok) {
				t.Fatalf("openLinkToken(%q) = %+v: a token nobody made was accepted", tok, c)
			}
		}
		r := httptest.NewRequest(http.MethodGet, "http://support.acme.example/", nil)
		r.URL.Path = "/_portal/link/" + tok
		r.URL.RawPath = ""
		r.Header.Set("Accept", "text/html")
		b := &browser{t: t, gate: tp.acme, jar: map[string]string{}}
		res := b.send(r)
		if res.status != http.StatusBadRequest || !strings.Contains(res.body, "Invalid portal link") {
			t.Fatalf("GET link %q: status %d:\n%s", tok, res.status, res.body)
		}
		for _, c := range res.cookies {
			if c.Value != "" {
				t.Fatalf("GET link %q set cookie %s", tok, c.Name)
			}
		}
		n, err := tp.store.OutboxLen(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 || tp.mail.count() != 0 {
			t.Fatalf("GET link %q queued or sent mail", tok)
		}
	})
}

// sameToken reports whether two tokens decode to the same bytes (the
// decoder ignores the unused low bits of the last character).
func sameToken(a, b string) bool {
	x, err1 := base64.RawURLEncoding.DecodeString(a)
	y, err2 := base64.RawURLEncoding.DecodeString(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
