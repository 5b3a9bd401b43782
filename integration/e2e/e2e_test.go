package e2e

import (
	"net/smtp"
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
