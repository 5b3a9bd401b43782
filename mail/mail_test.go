package mail_test

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kdesk/portalgate/handlers"
	"github.com/kdesk/portalgate/mail"
)

// TestLogMailerPrintsTheCodeOnItsOwnLine: the log mailer logs a short
// "code for <to>: <code>" entry, then the whole message.
func TestLogMailerPrintsTheCodeOnItsOwnLine(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	code := handlers.FormatCode(handlers.NewCode())
	m := mail.Message{To: "jane@acme.example", Subject: "Your sign-in code", Text: "Your code:\n\n    " + code + "\n\nIt expires in 10 minutes."}
	if err := (mail.Log{Logger: zap.New(core)}).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d log entries, want 2: %v", len(entries), entries)
	}
	if want := "code for jane@acme.example: " + code; entries[0].Message != want {
		t.Errorf("first entry %q, want %q", entries[0].Message, want)
	}
	if got := entries[1].ContextMap()["text"]; got != m.Text {
		t.Errorf("the full message is not logged: %v", entries[1].ContextMap())
	}

	logs.TakeAll()
	_ = (mail.Log{Logger: zap.New(core)}).Send(context.Background(), mail.Message{To: "x@acme.example", Text: "no code here"})
	if n := logs.Len(); n != 1 {
		t.Errorf("a message without a code logged %d entries, want the message only", n)
	}
}

// TestCodePatternMatchesCodes: the pattern the log mailer (and the tests)
// find codes with matches every code the portal formats, and only those.
func TestCodePatternMatchesCodes(t *testing.T) {
	for range 1000 {
		c := handlers.FormatCode(handlers.NewCode())
		if got := mail.CodePattern.FindString("code: " + c + "."); got != c {
			t.Fatalf("CodePattern finds %q in a mail with %q", got, c)
		}
	}
	for _, s := range []string{"ABC-DEF0", "AB1-DEFG", "ABCD-EFGH", "abc-defg"} {
		if mail.CodePattern.MatchString(s) {
			t.Errorf("CodePattern matches %q", s)
		}
	}
}
