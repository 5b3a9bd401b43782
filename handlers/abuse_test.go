package handlers

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kdesk/portalgate/storage"
)

// auditEvents lists the acme workspace's stored events of one kind.
func (tp *testPortal) auditEvents(t testing.TB, event string) []storage.AuditEvent {
	t.Helper()
	evs, _, err := tp.store.Audit(context.Background(), storage.AuditQuery{Workspace: "acme", Event: event, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// addContacts puts n more active contacts into acme: c-extra-0@acme.example …
func (tp *testPortal) addContacts(t testing.TB, n int) []storage.Contact {
	t.Helper()
	cs := make([]storage.Contact, n)
	for i := range cs {
		cs[i] = storage.Contact{ID: fmt.Sprintf("x-%d", i), Email: fmt.Sprintf("c-extra-%d@acme.example", i), Name: "Extra"}
		if err := cs[i].Normalize(); err != nil {
			t.Fatal(err)
		}
	}
	if err := tp.store.PutContacts(context.Background(), "acme", cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestStrangersSpendNoWorkspaceBudget: sign-in requests for addresses
// that are no contact, from many clients, spend none of the workspace's
// send budget; a real contact still gets a code afterwards.
func TestStrangersSpendNoWorkspaceBudget(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{SendsPerWorkspace: 10} })
	tp.alignToWindow(DefaultLimits.Window)
	for i := range 60 {
		b := tp.browser(t, tp.acme)
		b.ip = fmt.Sprintf("203.0.113.%d", i+1)
		b.requestCode("/", fmt.Sprintf("stranger-%d@elsewhere.example", i))
	}
	tp.settle(t)
	tp.wantNoMail(t)
	b := tp.browser(t, tp.acme)
	b.ip = "198.51.100.1"
	token := b.requestCode("/tickets/7", jane.Email)
	wantRedirect(t, "jane's code", b.submitCode(token, mailCode(t, tp.waitMail(t, 1))), "/tickets/7")
}

// TestSendsPerIPCountsTheIPv6Network: 35 addresses of one IPv6 /64 asking
// codes for 35 contacts get at most SendsPerIP codes between them.
func TestSendsPerIPCountsTheIPv6Network(t *testing.T) {
	const perIP = 5
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{SendsPerIP: perIP} })
	tp.alignToWindow(DefaultLimits.Window)
	cs := tp.addContacts(t, 35)
	for i, c := range cs {
		b := tp.browser(t, tp.acme)
		b.ip = fmt.Sprintf("2001:db8:1:2::%x", i+1)
		b.requestCode("/", c.Email)
	}
	tp.settle(t)
	if n := tp.mail.count(); n != perIP {
		t.Fatalf("%d codes sent to one /64, want %d", n, perIP)
	}
	// Another /64 is not affected.
	b := tp.browser(t, tp.acme)
	b.ip = "2001:db8:1:3::1"
	b.requestCode("/", jane.Email)
	tp.waitMail(t, perIP+1)
}

// TestCooldownChargesNothing: a resend refused by the cooldown, and a link
// re-opened within it, cost no request budget.
func TestCooldownChargesNothing(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{RequestsPerIP: 3} })
	tp.alignToWindow(DefaultLimits.Window)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email) // request 1
	for range 10 {
		res := b.post("/_portal/resend", url.Values{"csrf": {token}})
		wantStatus(t, "resend within the cooldown", res, http.StatusTooManyRequests)
		wantBody(t, "resend within the cooldown", res, "Please wait")
		if ra := res.header.Get("Retry-After"); ra == "" {
			t.Fatal("no Retry-After on the cooldown answer")
		}
	}
	tp.clock.Advance(31 * time.Second)
	wantStatus(t, "resend after the cooldown", b.post("/_portal/resend", url.Values{"csrf": {token}}), http.StatusOK) // request 2
	tp.waitMail(t, 2)
}

// TestInvalidLinksLimited: 600 invalid link opens from one client are
// refused past RequestsPerIP and leave a handful of audit records, each
// with its count.
func TestInvalidLinksLimited(t *testing.T) {
	tp := newTestPortal(t, nil)
	tp.alignToWindow(DefaultLimits.Window)
	b := tp.browser(t, tp.acme)
	limited := 0
	for i := range 600 {
		res := b.get(fmt.Sprintf("/_portal/link/not-a-token-%d", i))
		switch res.status {
		case http.StatusBadRequest:
			wantBody(t, "invalid link", res, "Invalid portal link")
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("link %d: status %d", i, res.status)
		}
	}
	if want := 600 - DefaultLimits.RequestsPerIP; limited != want {
		t.Errorf("%d opens refused with 429, want %d", limited, want)
	}
	evs := tp.auditEvents(t, EventLinkInvalid)
	if len(evs) > 3 {
		t.Fatalf("%d link_invalid records for 600 opens from one client", len(evs))
	}
	counts := []int{}
	for _, e := range evs {
		counts = append(counts, e.Count)
	}
	slices.Sort(counts)
	if !slices.Equal(counts, []int{1, 10, 100}) {
		t.Fatalf("link_invalid counts %v, want [1 10 100]", counts)
	}
	// Another client is not refused.
	other := tp.browser(t, tp.acme)
	other.ip = "198.51.100.99"
	wantStatus(t, "another client", other.get("/_portal/link/x"), http.StatusBadRequest)
}

// TestWrongCodeAnswersSameForEveryone: wrong codes, the fifth included,
// and the right code after that read the same for an active contact, a
// disabled one and an address that is no contact.
func TestWrongCodeAnswersSameForEveryone(t *testing.T) {
	tp := newTestPortal(t, nil)
	answers := map[string][]string{}
	for i, email := range []string{jane.Email, bob.Email, "nobody@acme.example"} {
		b := tp.browser(t, tp.acme)
		b.ip = fmt.Sprintf("198.51.100.%d", i+1)
		token := b.requestCode("/", email)
		for range MaxCodeTries + 1 {
			res := b.submitCode(token, "ABC-2345")
			body := strings.ReplaceAll(csrfField.ReplaceAllString(res.body, ""), email, "EMAIL") // the typed address, shown in full
			answers[email] = append(answers[email], fmt.Sprintf("%d %s", res.status, body))
		}
	}
	for i := range MaxCodeTries + 1 {
		if answers[jane.Email][i] != answers["nobody@acme.example"][i] || answers[jane.Email][i] != answers[bob.Email][i] {
			t.Fatalf("try %d differs:\n%s\n---\n%s", i+1, answers[jane.Email][i], answers["nobody@acme.example"][i])
		}
	}
	if !strings.Contains(answers[jane.Email][MaxCodeTries-1], "no longer works") {
		t.Fatalf("the fifth wrong try does not say the code died:\n%s", answers[jane.Email][MaxCodeTries-1])
	}
}

// TestAnonymousPageLoadsStoreNothing: 2,000 pages loaded without signing
// in, with 2 KB paths, store no record at all (before, each stored a flow
// of about 2.2 KB: some 4.4 MB); the wanted path still comes back after
// sign-in.
func TestAnonymousPageLoadsStoreNothing(t *testing.T) {
	tp := newTestPortal(t, nil)
	before, err := tp.store.Records() // config_loaded is audited at start
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		b := tp.browser(t, tp.acme)
		path := fmt.Sprintf("/tickets/%d?q=%s", i, strings.Repeat("x", 2000))
		wantRedirect(t, "GET", b.get(path), "/_portal/signin")
		wantStatus(t, "sign-in page", b.get("/_portal/signin"), http.StatusOK)
	}
	recs, err := tp.store.Records()
	if err != nil {
		t.Fatal(err)
	}
	if recs["flows"] != 0 || recs["audit"] != before["audit"] {
		t.Fatalf("anonymous page loads left %d flows and %d audit records", recs["flows"], recs["audit"]-before["audit"])
	}
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "signed in", tp.signIn(b, "/tickets/42?tab=history"), "/tickets/42?tab=history")
}

// TestStateChangingPostsCheckOrigin: every auth form refuses a post that
// the browser says came from another site, before anything changes.
func TestStateChangingPostsCheckOrigin(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	token := b.requestCode("/", jane.Email)
	code := mailCode(t, tp.waitMail(t, 1))
	cross := http.Header{"Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
	for _, path := range []string{"/_portal/signin", "/_portal/code", "/_portal/resend"} {
		res := b.do(http.MethodPost, path, url.Values{"csrf": {token}, "email": {jane.Email}, "code": {code}}, cross)
		wantStatus(t, "cross-site POST "+path, res, http.StatusForbidden)
	}
	wantRedirect(t, "same-site code", b.submitCode(token, code), "/")
}

// TestCookiesSecureBehindTLSProxy: with an https workspace url, cookies
// are Secure and __Host- even when the request reached the gate over
// plain HTTP (a TLS-terminating proxy in front), and auth pages send HSTS.
func TestCookiesSecureBehindTLSProxy(t *testing.T) {
	tp := newTestPortal(t, nil)
	b := tp.browser(t, tp.acme)
	res := b.get("/tickets/1")
	wantRedirect(t, "GET", res, "/_portal/signin")
	page := b.get("/_portal/signin")
	if page.header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS on the sign-in page of an https workspace")
	}
	for _, c := range append(res.cookies, page.cookies...) {
		if !c.Secure || !strings.HasPrefix(c.Name, "__Host-") {
			t.Errorf("cookie %s: Secure=%v", c.Name, c.Secure)
		}
	}
	wantRedirect(t, "signed in", tp.signIn(b, "/tickets/2"), "/tickets/2")
}

// TestAuditLogMasksEmails: the audit log shows contact emails masked by
// default (the stored trail keeps them whole), never the address of a
// code_not_sent, and whole ones with LogFullEmails.
func TestAuditLogMasksEmails(t *testing.T) {
	for _, full := range []bool{false, true} {
		core, logs := observer.New(zap.InfoLevel)
		tp := newTestPortal(t, func(p *Portal) { p.AuditLog, p.LogFullEmails = zap.New(core), full })
		tp.browser(t, tp.acme).requestCode("/", jane.Email)
		tp.browser(t, tp.acme).requestCode("/", "nobody@acme.example")
		tp.settle(t)
		for _, e := range logs.All() {
			email, _ := e.ContextMap()["email"].(string)
			switch {
			case e.Message == EventCodeNotSent && email != "":
				t.Errorf("code_not_sent logged the address %q", email)
			case !full && strings.Contains(email, "jane@"), !full && strings.Contains(email, "nobody@"):
				t.Errorf("%s logged %q unmasked", e.Message, email)
			case full && e.Message == EventCodeSent && email != jane.Email:
				t.Errorf("with full emails, code_sent logged %q", email)
			}
		}
		if len(logs.FilterMessage(EventCodeSent).All()) != 1 {
			t.Fatal("no code_sent in the audit log")
		}
		if evs := tp.auditEvents(t, EventCodeSent); len(evs) != 1 || evs[0].Email != jane.Email {
			t.Fatalf("stored code_sent %+v, want jane's whole address", evs)
		}
	}
}

// TestNewFlowsCountedWithinTheCooldown: email forms for an address whose
// resend cooldown runs queue nothing but store a flow each, and each still
// counts against the client's new-flow limit: one client cannot store
// flows without bound by asking for the same address.
func TestNewFlowsCountedWithinTheCooldown(t *testing.T) {
	tp := newTestPortal(t, func(p *Portal) { p.Limits = Limits{RequestsPerIP: 3} })
	tp.alignToWindow(DefaultLimits.Window)
	for range 3 {
		// The first queues jane's code; the next two are held by the cooldown.
		tp.browser(t, tp.acme).requestCode("/", jane.Email)
	}
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "GET", b.get("/"), "/_portal/signin")
	token := csrf(t, b.get("/_portal/signin"))
	res := b.post("/_portal/signin", url.Values{"csrf": {token}, "email": {jane.Email}})
	wantStatus(t, "a fourth new flow from one client within the cooldown", res, http.StatusTooManyRequests)
	tp.settle(t)
	if n := tp.mail.count(); n != 1 {
		t.Fatalf("%d codes sent, want 1", n)
	}
	refused := tp.auditEvents(t, EventRateLimited)
	if len(refused) != 1 || !strings.Contains(refused[0].Reason, newFlows) {
		t.Fatalf("refusals audited: %+v, want one of %q", refused, newFlows)
	}
}
