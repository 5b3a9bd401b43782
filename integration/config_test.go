package integration

import (
	"strings"
	"testing"
	"time"
)

// TestConfigWarnsAtStart: a workspace no portal_auth serves, and a
// workspace url whose host no site serves, load (they are not errors) and
// are named in a warning at start; the workspace the site serves is not.
func TestConfigWarnsAtStart(t *testing.T) {
	g := newGateway(t)
	g.extraGlobal = `workspace other {
			url https://elsewhere.example
		}`
	g.start()
	var log string
	eventually(t, 5*time.Second, "the warnings at start", func() bool {
		log = g.logText()
		return strings.Contains(log, "emailed links and SSO callbacks would go elsewhere")
	})
	var unused, foreign []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "is not used by any portal_auth") {
			unused = append(unused, l)
		}
		if strings.Contains(l, "names a host that no site of this config serves") {
			foreign = append(foreign, l)
		}
	}
	if len(unused) != 1 || !strings.Contains(unused[0], `"workspace":"other"`) {
		t.Errorf("unused-workspace warnings: %q, want one for workspace other", unused)
	}
	if len(foreign) != 1 || !strings.Contains(foreign[0], `"workspace":"other"`) || !strings.Contains(foreign[0], `"host":"elsewhere.example"`) {
		t.Errorf("url-host warnings: %q, want one for workspace other's elsewhere.example", foreign)
	}
	if strings.Contains(log, "mail log:") {
		t.Error("warned about mail log, but the config uses mail smtp")
	}
}
