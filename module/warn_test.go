package module

import "testing"

func TestHostServed(t *testing.T) {
	hosts := []string{"Support.Acme.example", "*.globex.example", "127.0.0.1", "[::1]"}
	for host, want := range map[string]bool{
		"support.acme.example":   true,
		"support.acme.example.":  true,
		"help.globex.example":    true,
		"a.b.globex.example":     false,
		"127.0.0.1":              true,
		"::1":                    true,
		"elsewhere.example":      false,
		"support.acme.example.x": false,
	} {
		if got := hostServed(host, hosts); got != want {
			t.Errorf("hostServed(%q) = %v, want %v", host, got, want)
		}
	}
	if !hostServed("elsewhere.example", []string{"{env.SITE}"}) {
		t.Error("a placeholder host could be any host")
	}
}
