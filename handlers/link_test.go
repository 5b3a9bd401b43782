package handlers

import (
	"context"
	"encoding/base64"
	"encoding/hex"
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
	l, err := tp.portal.MintLink(context.Background(), ws, LinkRequest{ContactID: contactID, ReturnTo: returnTo, TTL: ttl, CreatedBy: "test"})
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
			l, err := tp.portal.MintLink(ctx, "acme", LinkRequest{ContactID: tc.contact, ReturnTo: tc.returnTo, TTL: tc.ttl})
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("MintLink = %+v, %v; want an *InputError", l, err)
			}
			if l != (Link{}) {
				t.Fatalf("MintLink returned %+v with its error", l)
			}
		})
	}
	for _, req := range []LinkRequest{
		{},
		{Email: "nobody@acme.example"},
		{Email: bob.Email},
		{Email: otherOne.Email},
		{ContactID: jane.ID, Email: jane.Email},
	} {
		if l, err := tp.portal.MintLink(ctx, "acme", req); !errors.As(err, new(*InputError)) || l != (Link{}) {
			t.Errorf("MintLink(%+v) = %+v, %v; want an *InputError", req, l, err)
		}
	}
	if ls, err := tp.store.Links(ctx, "acme", ""); err != nil || len(ls) != 0 {
		t.Fatalf("refused MintLinks stored %d links (%v)", len(ls), err)
	}
	if _, err := tp.portal.MintLink(ctx, "nope", LinkRequest{ContactID: jane.ID}); !errors.Is(err, ErrUnknownWorkspace) {
		t.Fatalf("unknown workspace: %v", err)
	}
	l, err := tp.portal.MintLink(ctx, "acme", LinkRequest{ContactID: jane.ID, TTL: 30 * 24 * time.Hour})
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
	// Tokens with a valid MAC for acme but a stored link that must be
	// refused (an unsafe return path, a disabled contact, no link at all):
	// only reachable by storing and sealing them here.
	key := tp.portal.state.Load().keys["acme"].link
	unsafe := tp.storeLink(f, "acme", jane.ID, "//evil.com")
	bobTok := tp.storeLink(f, "acme", bob.ID, "/")
	unstored := sealLink(key, "acme", "00112233445566778899aabbccddeeff")
	// A live acme token would send mail, so it is only a seed with its
	// last MAC bit flipped.
	raw, _ := base64.RawURLEncoding.DecodeString(live)
	raw[len(raw)-1] ^= 1
	for _, s := range []string{
		"", "x", "%", "%zz", "%2F", "..", "../signin", expired, foreign, unsafe, bobTok, unstored,
		base64.RawURLEncoding.EncodeToString(raw),
		strings.Repeat("A", 1025), strings.Repeat("A", 200),
		base64.RawURLEncoding.EncodeToString([]byte{linkVersion}),
		base64.RawURLEncoding.EncodeToString(append([]byte{linkVersion}, make([]byte, linkTokLen-1)...)),
		base64.RawURLEncoding.EncodeToString(append([]byte{1}, make([]byte, 40)...)),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		if id, err := openLinkToken(key, "acme", tok); err == nil {
			// Only the tokens sealed above may open; the page refuses them.
			if tok != unsafe && tok != bobTok && tok != unstored && tok != expired {
				t.Fatalf("openLinkToken(%q) = %s: a token nobody made was accepted", tok, id)
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

// storeLink stores a link directly, past MintLink's checks, and returns its
// token.
func (tp *testPortal) storeLink(t testing.TB, ws, contactID, returnTo string) string {
	t.Helper()
	now := tp.clock.Now()
	l := storage.PortalLink{ID: hex.EncodeToString([]byte(NewID())[:16]), Workspace: ws, ContactID: contactID,
		ReturnTo: returnTo, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := tp.store.PutLink(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	return sealLink(tp.portal.state.Load().keys[ws].link, ws, l.ID)
}

// TestLinkRevoked checks that a revoked link, alone or with all of its
// contact's links, gives the invalid-link page at once and sends nothing,
// while an open of a live link is counted on the stored link.
func TestLinkRevoked(t *testing.T) {
	tp := newTestPortal(t, nil)
	ctx := context.Background()
	one, _ := tp.mint(t, "acme", jane.ID, "/a", 0)
	tp.clock.Advance(time.Second)
	l, err := tp.portal.MintLink(ctx, "acme", LinkRequest{Email: strings.ToUpper(jane.Email), ReturnTo: "/b", CreatedBy: "198.51.100.7:4444"})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := tp.store.Links(ctx, "acme", jane.ID)
	if err != nil || len(ls) != 2 || ls[0].ID != l.ID || ls[0].ContactID != jane.ID || ls[0].ReturnTo != "/b" || ls[0].CreatedBy != "198.51.100.7:4444" {
		t.Fatalf("Links = %+v, %v; want the link made by email first", ls, err)
	}
	if err := tp.store.DeleteLink(ctx, "acme", l.ID); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(l.URL)
	wantInvalidLink(t, "revoked link", tp.browser(t, tp.acme).get(u.Path))
	tp.wantNoMail(t)

	wantRedirect(t, "live link", tp.browser(t, tp.acme).get(one), "/_portal/code")
	tp.waitMail(t, 1)
	ls, err = tp.store.Links(ctx, "acme", jane.ID)
	if err != nil || len(ls) != 1 || ls[0].Opens != 1 || !ls[0].LastOpenedAt.Equal(tp.clock.Now()) {
		t.Fatalf("after one open: %+v, %v", ls, err)
	}
	if n, err := tp.store.DeleteContactLinks(ctx, "acme", jane.ID); err != nil || n != 1 {
		t.Fatalf("DeleteContactLinks = %d, %v", n, err)
	}
	wantInvalidLink(t, "link of a contact whose links were revoked", tp.browser(t, tp.acme).get(one))
	created := tp.auditEvents(t, EventLinkCreated)
	if len(created) != 2 || created[0].Actor != "198.51.100.7:4444" || created[0].ContactID != jane.ID || !strings.Contains(created[0].Reason, l.ID) {
		t.Fatalf("link_created events: %+v", created)
	}
}

// TestLinkTokenCarriesOnlyID checks the token's shape: short, of a fixed
// length, and holding neither the contact nor the return path.
func TestLinkTokenCarriesOnlyID(t *testing.T) {
	tp := newTestPortal(t, nil)
	long := "/tickets/" + strings.Repeat("9", 300) + "?tab=history"
	_, tok := tp.mint(t, "acme", jane.ID, long, 0)
	if len(tok) != 44 {
		t.Fatalf("token of %d characters, want 44", len(tok))
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{jane.ID, "tickets", "999"} {
		if strings.Contains(string(raw), s) || strings.Contains(tok, s) {
			t.Fatalf("token holds %q", s)
		}
	}
	ls, err := tp.store.Links(context.Background(), "acme", jane.ID)
	if err != nil || len(ls) != 1 || !strings.Contains(hex.EncodeToString(raw), ls[0].ID) {
		t.Fatalf("the token does not carry the stored link's id: %+v, %v", ls, err)
	}
}
