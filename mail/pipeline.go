package mail

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// A pipelined transaction (RFC 2920): where the server offers PIPELINING,
// MAIL FROM, RCPT TO and DATA go out in one write and their replies are
// read after it, then the message and its end: two round trips a message,
// where go-mail's one command at a time takes four. Each round trip is a
// wait for the server; on a relay across the internet that is most of a
// code's way to the contact.

// replyError is a pipelined transaction's failure: the step it came at
// (MAIL, RCPT, DATA, content, end) and the server's reply code, 0 when
// none came.
type replyError struct {
	step string
	code int
	err  error
}

func (e *replyError) Error() string { return fmt.Sprintf("smtp %s: %v", e.step, e.err) }
func (e *replyError) Unwrap() error { return e.err }

// replyCode is the code of a reply error, 0 for a network error.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// sendPipelined sends msg on c in one pipelined transaction, within
// timeout. The envelope's replies are all read, so that after a refusal
// of the sender or the recipient the session can go on (rejected).
func sendPipelined(c *smtp.Client, msg *gomail.Msg, timeout time.Duration) error {
	from, err := msg.GetSender(false)
	if err != nil {
		return &replyError{step: "MAIL", code: 550, err: err}
	}
	rcpts, err := msg.GetRecipients()
	if err != nil {
		return &replyError{step: "RCPT", code: 550, err: err}
	}
	for _, a := range append([]string{from}, rcpts...) {
		if strings.ContainsAny(a, "\r\n") {
			return &replyError{step: "MAIL", code: 550, err: errors.New("address holds a line break")}
		}
	}
	if err := c.UpdateDeadline(timeout); err != nil {
		return &replyError{step: "MAIL", err: err}
	}
	// The parameters go-mail's MAIL FROM adds.
	params := ""
	if ok, _ := c.Extension("8BITMIME"); ok {
		params += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		params += " SMTPUTF8"
	}
	w := c.Text.W
	fmt.Fprintf(w, "MAIL FROM:%s%s\r\n", from, params)
	for _, r := range rcpts {
		fmt.Fprintf(w, "RCPT TO:%s\r\n", r)
	}
	w.WriteString("DATA\r\n")
	if err := w.Flush(); err != nil {
		return &replyError{step: "MAIL", err: err}
	}
	// Every reply is read, even after a refusal, so that the session
	// stays in step; a network error ends the reading, as the session is
	// gone. envelope is the first refusal of the sender or a recipient.
	var envelope *replyError
	for i := range 1 + len(rcpts) {
		step, want := "MAIL", 250
		if i > 0 {
			step, want = "RCPT", 25
		}
		if _, _, err := c.Text.ReadResponse(want); err != nil {
			if replyCode(err) == 0 {
				return &replyError{step: step, err: err}
			}
			if envelope == nil {
				envelope = &replyError{step: step, code: replyCode(err), err: err}
			}
		}
	}
	_, _, err = c.Text.ReadResponse(354)
	switch {
	case err != nil && replyCode(err) == 0:
		return &replyError{step: "DATA", err: err}
	case envelope != nil && err == nil:
		// DATA taken after a refusal: the session is in no state to go
		// on, and send discards it.
		return &replyError{step: "DATA", code: 354, err: fmt.Errorf("server took DATA after %w", envelope)}
	case envelope != nil:
		return envelope
	case err != nil:
		return &replyError{step: "DATA", code: replyCode(err), err: err}
	}
	dw := c.Text.DotWriter()
	if _, err := msg.WriteTo(dw); err != nil {
		_ = dw.Close()
		return &replyError{step: "content", code: replyCode(err), err: err}
	}
	if err := dw.Close(); err != nil {
		return &replyError{step: "content", code: replyCode(err), err: err}
	}
	if _, _, err := c.Text.ReadResponse(250); err != nil {
		return &replyError{step: "end", code: replyCode(err), err: err}
	}
	return nil
}
