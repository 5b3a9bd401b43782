package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A Caddy on Badger killed with SIGKILL while it delivers code mail to a
// slow SMTP server: after the restart every contact signs in with the
// first mail it received (a redelivery carries the same code), and what
// the dead process had claimed goes out within seconds of the restart, not
// after its 2-minute lease.
func TestCrashMidDeliveryKeepsFirstCodes(t *testing.T) {
	const n = 6 // more than the 4 outbox workers: 2 are claimed but not yet handed out
	g := newGateway(t)
	var contacts []string
	for i := range n {
		contacts = append(contacts, fmt.Sprintf(`{"id": "c-%d", "email": "p%d@acme.example", "name": "P %d"}`, i, i, i))
	}
	g.contacts = "[" + strings.Join(contacts, ",\n") + "]"
	cf := g.caddyfile()
	in := runInstance(t, g, cf, "badger")

	// Each message is in the mailbox, and the sender still waits for the
	// answer to DATA, when the process dies.
	g.mail.Hold(time.Minute)
	browsers := make([]*browser, n)
	csrfs := make([]string, n)
	for i := range n {
		browsers[i] = g.browser()
		if r := browsers[i].get("/tickets/1"); r.Status != http.StatusSeeOther {
			t.Fatalf("before sign-in: %d", r.Status)
		}
		csrfs[i] = browsers[i].submitEmail(fmt.Sprintf("p%d@acme.example", i))
	}
	first := map[string]string{}
	for len(first) < 4 {
		m := g.mail.wait(t, 15*time.Second)
		first[m.To[0]] = m.Code()
	}
	time.Sleep(200 * time.Millisecond) // the other claim lands
	in.kill()

	g.mail.Hold(0)
	restarted := time.Now()
	runInstance(t, g, cf, "badger, restarted")
	again := map[string]int{}
	for len(first) < n || len(again) < 4 {
		m := g.mail.wait(t, 10*time.Second)
		to := m.To[0]
		code, seen := first[to]
		switch {
		case !seen:
			first[to] = m.Code()
		case m.Code() != code:
			t.Errorf("the mail to %s after the restart carries %s, the first one %s", to, m.Code(), code)
		default:
			again[to]++
		}
	}
	if d := time.Since(restarted); d > 15*time.Second {
		t.Errorf("the mail held by the dead process arrived %s after the restart", d)
	}
	t.Logf("all %d contacts had their mail %s after the restart (%d delivered twice, with the same code)",
		n, time.Since(restarted).Round(time.Millisecond), len(again))
	g.mail.none(t, time.Second)

	for i, b := range browsers {
		to := fmt.Sprintf("p%d@acme.example", i)
		r := b.enterCode(csrfs[i], first[to])
		if r.Status != http.StatusSeeOther || r.Location != "/tickets/1" {
			t.Errorf("%s with the first code it received: %d %q", to, r.Status, r.Location)
			continue
		}
		if r := b.get("/tickets/1"); r.Status != http.StatusOK {
			t.Errorf("%s signed in: %d", to, r.Status)
		}
	}
}
