package module

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/handlers"
)

// SCIMConfig is a workspace's directory sync: a SCIM 2.0 service
// provider at {auth_path}/scim/v2/ that the customer's directory (Entra
// ID, Okta, …) pushes users and groups to. Without it those paths do not
// exist.
type SCIMConfig struct {
	// Tokens are the bearer tokens the directory may send, each at least
	// 32 characters once placeholders such as {env.ACME_SCIM_TOKEN} are
	// replaced; several while one is rotated. They are compared in
	// constant time and never logged. Required.
	Tokens []string `json:"tokens,omitempty"`
	// Groups, when set, are the display names of the directory groups
	// whose members alone are active contacts: a user in none of them is
	// disabled. Default: none (every active user is an active contact).
	Groups []string `json:"groups,omitempty"`
	// RequestsPerMinute caps the requests of one token per minute.
	// Default: 600.
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
}

// Check reports the first value of the scim block that cannot work.
func (sc *SCIMConfig) Check(repl *caddy.Replacer) error {
	const block = "scim"
	if len(sc.Tokens) == 0 {
		return &OptionError{Block: block, Option: "token", Msg: "is required (at least 32 characters, such as {env.SCIM_TOKEN})"}
	}
	for i, t := range sc.Tokens {
		if err := required(repl, block, "token", t); err != nil {
			return err
		}
		if v, ok := value(repl, t); ok && len(v) < 32 {
			msg := "must be at least 32 characters"
			if len(sc.Tokens) > 1 {
				msg += fmt.Sprintf(" (token %d)", i+1)
			}
			return &OptionError{Block: block, Option: "token", Msg: msg}
		}
	}
	for _, g := range sc.Groups {
		if g == "" {
			return &OptionError{Block: block, Option: "groups", Msg: "must not name an empty group"}
		}
	}
	if sc.RequestsPerMinute != 0 {
		return checkWholeNumber(block, "requests_per_minute", sc.RequestsPerMinute)
	}
	return nil
}

// resolve builds the handlers' SCIM config; sc.Check has passed.
func (sc *SCIMConfig) resolve(repl *caddy.Replacer) *handlers.SCIM {
	s := &handlers.SCIM{Groups: sc.Groups, RequestsPerMinute: sc.RequestsPerMinute}
	if s.RequestsPerMinute == 0 {
		s.RequestsPerMinute = 600
	}
	for _, t := range sc.Tokens {
		s.Tokens = append(s.Tokens, []byte(repl.ReplaceKnown(t, "")))
	}
	return s
}
