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

// Codes go out over connections kept open between messages, and a reload
// or a stop closes those of the old config: none is left behind.
func TestSMTPConnectionsReusedAndClosedAtReload(t *testing.T) {
	g := newGateway(t)
	g.contacts = `[{"id": "p-1", "email": "p1@acme.example"}, {"id": "p-2", "email": "p2@acme.example"},
		{"id": "p-3", "email": "p3@acme.example"}, {"id": "p-4", "email": "p4@acme.example"}]`
	g.start()
	sent := 0
	signIn := func(email string) {
		t.Helper()
		b := g.browser()
		b.get("/tickets/1")
		csrf := b.submitEmail(email)
		m := g.mail.wait(t, 10*time.Second)
		// The mailbox has the message as soon as the server has read it,
		// a moment before the sender has its answer and puts the
		// connection back; the code_sent event is stored after that.
		sent++
		eventually(t, 5*time.Second, "the code_sent event", func() bool {
			return len(g.auditEvents("event=code_sent")) == sent
		})
		if r := b.enterCode(csrf, m.Code()); r.Status != http.StatusSeeOther {
			t.Fatalf("sign-in of %s: %d", email, r.Status)
		}
	}
	open := func() int { _, n := g.mail.Connections(); return n }
	eventually(t, 5*time.Second, "the smtp check at start", func() bool {
		return strings.Contains(g.logText(), "smtp server check passed")
	})
	before, _ := g.mail.Connections() // the check's own connection
	for _, email := range []string{"p1@acme.example", "p2@acme.example", "p3@acme.example"} {
		signIn(email)
	}
	if accepted, _ := g.mail.Connections(); accepted-before != 1 {
		t.Fatalf("three codes one after the other took %d connections, want 1", accepted-before)
	}
	if n := open(); n != 1 {
		t.Fatalf("%d connections open after the codes, want the pooled one", n)
	}

	g.title = "Acme Help" // a changed config
	g.start()
	eventually(t, 5*time.Second, "the old config's connection to close", func() bool { return open() == 0 })
	signIn("p4@acme.example")
	g.stop()
	eventually(t, 5*time.Second, "the connection to close at stop", func() bool { return open() == 0 })
}
