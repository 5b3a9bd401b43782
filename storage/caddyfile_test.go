package storage

import "testing"

func TestSuggest(t *testing.T) {
	valid := []string{"code_ttl", "resend_cooldown", "session_ttl", "session_idle", "tls", "host", "db", "dir"}
	for _, tc := range []struct{ word, want string }{
		{"resend_cooldwn", "resend_cooldown"}, // deletion
		{"resend_coolDown", "resend_cooldown"},
		{"code_tll", "code_ttl"},        // transposition counts once
		{"sesion_idel", "session_idle"}, // two edits
		{"tsl", "tls"},
		{"hots", "host"},
		{"colour", ""},          // nothing near
		{"session_timeout", ""}, // too far
		{"db", "db"},
		{"d", ""}, // too short to guess
		{"x", ""},
	} {
		if got := Suggest(tc.word, valid); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"abc", "abc", 0},
		{"abc", "acb", 1}, {"kitten", "sitting", 3}, {"ca", "abc", 3},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
