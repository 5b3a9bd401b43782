package e2e

import (
	"net/smtp"
	"strings"
	"testing"
	"time"
)

func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p < 20000 || p >= 32000 || seen[p] {
			t.Fatalf("port %d (seen before: %v)", p, seen[p])
		}
		seen[p] = true
	}
}

// The mailbox keeps what it accepts, finds the code in it, and refuses
// recipients when told to.
func TestMailbox(t *testing.T) {
	mb, err := StartMailbox("")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	msg := []byte("Subject: Your code\r\n\r\nYour sign-in code is K7M-QR42.\r\n")
	if err := smtp.SendMail(mb.Addr, nil, "support@acme.example", []string{"jane@acme.example"}, msg); err != nil {
		t.Fatal(err)
	}
	m, err := mb.Wait(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "support@acme.example" || len(m.To) != 1 || m.To[0] != "jane@acme.example" || m.Code() != "K7MQR42" {
		t.Fatalf("got from %q to %v, code %q", m.From, m.To, m.Code())
	}
	mb.Reject(550)
	if err := smtp.SendMail(mb.Addr, nil, "support@acme.example", []string{"sam@acme.example"}, msg); err == nil {
		t.Fatal("a rejecting mailbox accepted mail")
	}
	if _, err := mb.Wait(100 * time.Millisecond); err == nil || mb.Count() != 1 {
		t.Fatalf("after a rejection: %v, %d kept", err, mb.Count())
	}
}

func TestCSRF(t *testing.T) {
	if tok, err := CSRF(`<input type="hidden" name="csrf" value="abc123">`); err != nil || tok != "abc123" {
		t.Fatalf("%q %v", tok, err)
	}
	if _, err := CSRF("<p>no form</p>"); err == nil {
		t.Fatal("a page without a form gave a token")
	}
}

// TestMailCodeIsThePatternsFirstMatch: Code, which runs CodePattern only
// around dashes, finds what the pattern finds in the whole message.
func TestMailCodeIsThePatternsFirstMatch(t *testing.T) {
	for _, data := range []string{
		"", "-", "ABC-DEFG", "Content-Type: text/plain\r\n\r\n    ABC-DEFG\r\n", "x-ABC-DEFG", "XABC-DEFG", "ABC-DEFGX",
		"ABC-DEF", "AB-CDEFG", "ABC--DEFG", "MIME-Version: 1.0\r\nMessage-ID: <a-b@c>\r\n\r\nK7M-QR42 and Z9Z-Z9Z9",
		"abc-defg ABC-DEFG", "ABO-DEFG ABC-D2FG", "--ABC-DEFG--", "é-ABC-DEFG-é", "ABC-DEFG",
	} {
		want := strings.ReplaceAll(CodePattern.FindString(data), "-", "")
		if got := (Mail{Data: data}).Code(); got != want {
			t.Errorf("Code(%q) = %q, the pattern finds %q", data, got, want)
		}
	}
}
