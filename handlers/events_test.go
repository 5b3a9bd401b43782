package handlers

import (
	"bytes"
	"errors"
	"testing"
)

func TestCheckEventName(t *testing.T) {
	for _, name := range AuditEventNames {
		if err := CheckEventName(name); err != nil {
			t.Errorf("CheckEventName(%s) = %v", name, err)
		}
	}
	for name, want := range map[string]string{
		"sso_fail":       "unknown event sso_fail, did you mean sso_failure?",
		"link_creatd":    "unknown event link_creatd, did you mean link_created?",
		"code_acepted":   "unknown event code_acepted, did you mean code_accepted?",
		"session_revokd": "unknown event session_revokd, did you mean session_revoked?",
	} {
		var ie *InputError
		if err := CheckEventName(name); !errors.As(err, &ie) || ie.Msg != want {
			t.Errorf("CheckEventName(%s) = %v, want %q", name, err, want)
		}
	}
	if err := CheckEventName("zzz"); err == nil || !bytes.Contains([]byte(err.Error()), []byte("known: ")) {
		t.Errorf("CheckEventName(zzz) = %v, want the list of known events", err)
	}
}

func TestSecretID(t *testing.T) {
	a, b := SecretID([]byte("secret one, long enough to be real")), SecretID([]byte("secret two, long enough to be real"))
	if len(a) != 8 || a == b || a != SecretID([]byte("secret one, long enough to be real")) {
		t.Fatalf("SecretID: %q, %q", a, b)
	}
}
