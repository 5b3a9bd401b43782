package integration

import (
	"net/http"
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
		return status == http.StatusOK && strings.Contains(body, "portalgate_codes_sent_total")
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
