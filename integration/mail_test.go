package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// A down SMTP server never blocks a request; the code arrives once it is
// back, and then signs the contact in.
func TestSMTPDownThenUp(t *testing.T) {
	g := newGateway(t)
	g.start()
	addr := g.mail.Addr
	g.mail.Close()

	b := g.browser()
	b.get("/tickets/7")
	start := time.Now()
	csrf := b.submitEmail("sam@acme.example")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("sign-in pages took %s with SMTP down", d)
	}
	time.Sleep(500 * time.Millisecond) // let the first attempt fail
	g.mail = startMailbox(t, addr)
	m := g.mail.wait(t, 20*time.Second)
	if r := b.enterCode(csrf, m.Code()); r.Status != http.StatusSeeOther || r.Location != "/tickets/7" {
		t.Fatalf("code delivered late: %d %q", r.Status, r.Location)
	}
}

// Mail queued while SMTP is down is still delivered after Caddy restarts.
func TestQueuedMailSurvivesRestart(t *testing.T) {
	g := newGateway(t)
	g.start()
	addr := g.mail.Addr
	g.mail.Close()

	b := g.browser()
	b.get("/requests/new")
	csrf := b.submitEmail("jane@acme.example")
	eventually(t, 5*time.Second, "a failed first attempt", func() bool {
		return strings.Contains(strings.Join(g.auditEvents(""), ","), "code_requested")
	})
	time.Sleep(500 * time.Millisecond)
	g.stop()

	g.mail = startMailbox(t, addr)
	g.start()
	m := g.mail.wait(t, 20*time.Second)
	if r := b.enterCode(csrf, m.Code()); r.Status != http.StatusSeeOther || r.Location != "/requests/new" {
		t.Fatalf("code after restart: %d %q", r.Status, r.Location)
	}
}

// A permanent SMTP failure (5xx) is not retried; it is audited.
func TestPermanentMailFailureIsAudited(t *testing.T) {
	g := newGateway(t)
	g.mail.Reject(550)
	g.start()
	b := g.browser()
	b.submitEmail("sam@acme.example")
	eventually(t, 10*time.Second, "a mail_failed audit event", func() bool {
		return len(g.auditEvents("event=mail_failed")) == 1
	})
	if n := g.mail.Count(); n != 0 {
		t.Fatalf("%d messages accepted", n)
	}
}
