package handlers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdesk/portalgate/mail"
)

// failingSender refuses every message with a temporary error.
type failingSender struct{}

func (failingSender) Send(context.Context, mail.Message) error {
	return errors.New("451 try again later")
}

// TestMailDelayedOnCodePage: while delivery fails the code page says that
// mail is delayed; each failed attempt is counted for its workspace as it
// happens and the message's age shows in OldestQueued.
func TestMailDelayedOnCodePage(t *testing.T) {
	w := &mail.Watched{Sender: failingSender{}}
	if w.Failing() {
		t.Fatal("a sender that has sent nothing is failing")
	}
	reg := prometheus.NewRegistry()
	var m *Metrics
	tp := newTestPortal(t, func(p *Portal) {
		p.Sender, p.MailFailing = w, w.Failing
		var err error
		if m, err = NewMetrics(reg, p); err != nil {
			t.Fatal(err)
		}
		p.Metrics = m
	})
	if got := counterValue(t, reg, "portalgate_mail_attempt_failures_total", "other"); got != 0 {
		t.Errorf("attempt failures of workspace other = %v at start, want 0", got)
	}
	b := tp.browser(t, tp.acme)
	b.requestCode("/", jane.Email)
	waitFor(t, "a failed attempt", func() bool { return counterValue(t, reg, "portalgate_mail_attempt_failures_total", "acme") >= 1 })
	if res := b.get("/_portal/code"); !strings.Contains(res.body, "Our email is delayed") || strings.Contains(res.body, "we have emailed") {
		t.Errorf("while delivery fails the code page says:\n%s", res.body)
	}
	tp.clock.Advance(90 * time.Second)
	if got := tp.portal.OldestQueued(); got < 90 {
		t.Errorf("OldestQueued = %v, want the message's age, at least 90 s", got)
	}
	tp.clock.Advance(backlogForget + time.Minute)
	if got := tp.portal.OldestQueued(); got != 0 {
		t.Errorf("OldestQueued = %v for a message no attempt here has seen for longer than %s, want 0", got, backlogForget)
	}
}

// counterValue reads the counter name{workspace=ws} from reg; -1 when the
// series does not exist.
func counterValue(t testing.TB, reg *prometheus.Registry, name, ws string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "workspace" && l.GetValue() == ws {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}
