package integration

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMetricsOnCaddysEndpoint(t *testing.T) {
	g := newGateway(t)
	g.start()
	b := g.browser()
	b.signIn("jane@acme.example", "/tickets")
	b.get("/tickets")
	g.browser().get("/api", "Accept", "application/json")

	var body string
	eventually(t, 5*time.Second, "portalgate metrics", func() bool {
		var status int
		status, body = g.adminDo(http.MethodGet, "/metrics", "", nil)
		// Every series exists from the start at 0: wait for the worker to
		// have counted the code it sent and emptied the outbox.
		return status == http.StatusOK && strings.Contains(body, `portalgate_codes_sent_total{workspace="acme"} 1`) &&
			strings.Contains(body, "portalgate_mail_queue_depth 0")
	})
	for _, want := range []string{
		`portalgate_signins_total{method="code",outcome="success",workspace="acme"} 1`,
		`portalgate_codes_sent_total{workspace="acme"} 1`,
		`portalgate_gate_decisions_total{decision="pass",workspace="acme"} 1`,
		`portalgate_gate_decisions_total{decision="signin_redirect",workspace="acme"} 1`,
		`portalgate_gate_decisions_total{decision="api_unauthorized",workspace="acme"} 1`,
		`portalgate_mail_queue_depth 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "portalgate") {
				t.Log(l)
			}
		}
	}
}

// metric returns the value of the series written exactly as series (name
// and labels) in the metrics endpoint's text, and whether it is there.
func (g *gateway) metric(series string) (float64, bool) {
	g.t.Helper()
	status, body := g.adminDo(http.MethodGet, "/metrics", "", nil)
	if status != http.StatusOK {
		g.t.Fatalf("metrics: %d %s", status, body)
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestMetricsFromStartAndMailAttemptFailures: every series of the
// workspace is on the endpoint at 0 before anything happens; while the
// SMTP server refuses for a while, each failed attempt is counted as it
// happens, the oldest queued message ages, and the code page says that
// mail is delayed; once mail goes out again all of that clears.
func TestMetricsFromStartAndMailAttemptFailures(t *testing.T) {
	g := newGateway(t)
	g.start()
	// The outbox adapts how many codes go out at once; it starts at 4.
	if v, ok := g.metric("portalgate_mail_concurrency"); !ok || v != 4 {
		t.Errorf("at start portalgate_mail_concurrency = %v (present: %v), want 4", v, ok)
	}
	for _, series := range []string{
		`portalgate_signins_total{method="code",outcome="success",workspace="acme"}`,
		`portalgate_signins_total{method="code",outcome="failure",workspace="acme"}`,
		`portalgate_signins_total{method="link",outcome="success",workspace="acme"}`,
		`portalgate_codes_sent_total{workspace="acme"}`,
		`portalgate_mail_failures_total{workspace="acme"}`,
		`portalgate_mail_attempt_failures_total{workspace="acme"}`,
		`portalgate_rate_limited_total{workspace="acme"}`,
		`portalgate_gate_decisions_total{decision="pass",workspace="acme"}`,
		`portalgate_gate_decisions_total{decision="unavailable",workspace="acme"}`,
		`portalgate_mail_queue_depth`,
		`portalgate_mail_oldest_queued_seconds`,
	} {
		if v, ok := g.metric(series); !ok || v != 0 {
			t.Errorf("at start %s = %v (present: %v), want 0", series, v, ok)
		}
	}
	eventually(t, 5*time.Second, "the smtp check at start", func() bool {
		return strings.Contains(g.logText(), "smtp server check passed")
	})

	g.mail.Reject(451) // temporary: the outbox retries
	b := g.browser()
	b.submitEmail("jane@acme.example")
	eventually(t, 10*time.Second, "a counted attempt failure", func() bool {
		v, _ := g.metric(`portalgate_mail_attempt_failures_total{workspace="acme"}`)
		return v >= 1
	})
	if page := b.get("/_portal/code"); !strings.Contains(page.Body, "Our email is delayed") {
		t.Errorf("while delivery fails the code page does not say so:\n%s", page.Body)
	}
	eventually(t, 10*time.Second, "the oldest queued message aging", func() bool {
		v, _ := g.metric(`portalgate_mail_oldest_queued_seconds`)
		return v >= 1
	})
	if v, _ := g.metric(`portalgate_mail_failures_total{workspace="acme"}`); v != 0 {
		t.Errorf("mail_failures_total = %v while the message is still retried, want 0", v)
	}

	g.mail.Reject(0)
	if m := g.mail.wait(t, 20*time.Second); m.Code() == "" {
		t.Fatalf("the retried mail has no code:\n%s", m.Data)
	}
	eventually(t, 5*time.Second, "the backlog cleared", func() bool {
		v, ok := g.metric(`portalgate_mail_oldest_queued_seconds`)
		return ok && v == 0
	})
	if page := b.get("/_portal/code"); strings.Contains(page.Body, "Our email is delayed") {
		t.Errorf("mail goes out again, but the code page still says it is delayed")
	}
}
