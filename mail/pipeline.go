package mail

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
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

// A chunked transaction (RFC 3030): where the server offers CHUNKING
// too, the message goes as one BDAT LAST chunk in the same write as MAIL
// FROM and RCPT TO, and the three replies are read after it: one round
// trip a message. The chunk is the message as rendered, without the dot
// stuffing DATA needs, so it is rendered first, to know its size.
//
// The content then leaves before the server has answered MAIL. A
// reused connection the server had dropped answers nothing, or 421, and
// the message is sent again once on a fresh connection (notStarted), as
// with DATA: a server that took the message and vanished before any
// reply would get it twice, the same code twice, which at-least-once
// delivery allows. No reply in time is not that: the server may still
// be taking the message, so the outbox tries it again later.

// envelope is a transaction's MAIL FROM and RCPT TO, checked.
type envelope struct {
	from   string
	rcpts  []string
	params string
}

func envelopeOf(c *smtp.Client, msg *gomail.Msg) (envelope, error) {
	from, err := msg.GetSender(false)
	if err != nil {
		return envelope{}, &replyError{step: "MAIL", code: 550, err: err}
	}
	rcpts, err := msg.GetRecipients()
	if err != nil {
		return envelope{}, &replyError{step: "RCPT", code: 550, err: err}
	}
	for _, a := range append([]string{from}, rcpts...) {
		if strings.ContainsAny(a, "\r\n") {
			return envelope{}, &replyError{step: "MAIL", code: 550, err: errors.New("address holds a line break")}
		}
	}
	// The parameters go-mail's MAIL FROM adds.
	params := ""
	if ok, _ := c.Extension("8BITMIME"); ok {
		params += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		params += " SMTPUTF8"
	}
	return envelope{from: from, rcpts: rcpts, params: params}, nil
}

// write puts MAIL FROM and RCPT TO into w, for one write with what
// follows them.
func (e envelope) write(w io.Writer) {
	fmt.Fprintf(w, "MAIL FROM:%s%s\r\n", e.from, e.params)
	for _, r := range e.rcpts {
		fmt.Fprintf(w, "RCPT TO:%s\r\n", r)
	}
}

// readReplies reads the replies to MAIL FROM and every RCPT TO, even
// after a refusal, so that the session stays in step; a network error
// ends the reading, as the session is gone. It returns that network
// error, else the first refusal of the sender or a recipient, else nil.
func (e envelope) readReplies(c *smtp.Client) *replyError {
	var refused *replyError
	for i := range 1 + len(e.rcpts) {
		step, want := "MAIL", 250
		if i > 0 {
			step, want = "RCPT", 25
		}
		if _, _, err := c.Text.ReadResponse(want); err != nil {
			if replyCode(err) == 0 {
				return &replyError{step: step, err: err}
			}
			if refused == nil {
				refused = &replyError{step: step, code: replyCode(err), err: err}
			}
		}
	}
	return refused
}

// sendPipelined sends msg on c in one pipelined transaction, within
// timeout. The envelope's replies are all read, so that after a refusal
// of the sender or the recipient the session can go on (rejected).
func sendPipelined(c *smtp.Client, msg *gomail.Msg, timeout time.Duration) error {
	env, err := envelopeOf(c, msg)
	if err != nil {
		return err
	}
	if err := c.UpdateDeadline(timeout); err != nil {
		return &replyError{step: "MAIL", err: err}
	}
	w := c.Text.W
	env.write(w)
	w.WriteString("DATA\r\n")
	if err := w.Flush(); err != nil {
		return &replyError{step: "MAIL", err: err}
	}
	refused := env.readReplies(c)
	if refused != nil && refused.code == 0 {
		return refused
	}
	_, _, err = c.Text.ReadResponse(354)
	if re := afterEnvelope(refused, err, "DATA", 354, "DATA"); re != nil {
		return re
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

// chunks holds the buffers a chunked transaction is written into.
var chunks = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// sendChunked sends msg on c in one chunked transaction (MAIL, RCPT and
// BDAT LAST with the message, in one write), within timeout. As in
// sendPipelined, every reply is read.
func sendChunked(c *smtp.Client, msg *gomail.Msg, timeout time.Duration) error {
	env, err := envelopeOf(c, msg)
	if err != nil {
		return err
	}
	content, out := chunks.Get().(*bytes.Buffer), chunks.Get().(*bytes.Buffer)
	defer func() {
		for _, b := range []*bytes.Buffer{content, out} {
			if b.Cap() <= 256<<10 {
				b.Reset()
				chunks.Put(b)
			}
		}
	}()
	if _, err := msg.WriteTo(content); err != nil {
		return &replyError{step: "content", err: err}
	}
	// As DATA's end would: the message ends with a line break.
	if !bytes.HasSuffix(content.Bytes(), []byte("\r\n")) {
		content.WriteString("\r\n")
	}
	if err := c.UpdateDeadline(timeout); err != nil {
		return &replyError{step: "MAIL", err: err}
	}
	// The whole transaction in one buffer, for one write: the
	// connection's buffer is empty between transactions, and bufio
	// passes a write larger than itself straight on.
	env.write(out)
	fmt.Fprintf(out, "BDAT %d LAST\r\n", content.Len())
	out.Write(content.Bytes())
	w := c.Text.W
	if _, err := w.Write(out.Bytes()); err != nil {
		return &replyError{step: "MAIL", err: err}
	}
	if err := w.Flush(); err != nil {
		return &replyError{step: "MAIL", err: err}
	}
	refused := env.readReplies(c)
	if refused != nil && refused.code == 0 {
		var ne net.Error
		if errors.As(refused.err, &ne) && ne.Timeout() {
			// A pipelining server may hold its replies until it has
			// read all it was sent (RFC 2920, 3.2): a slow one may be
			// taking this message, which must not go again at once.
			refused.step = "end"
		}
		return refused
	}
	// The server reads the chunk even after a refusal (RFC 3030, 2), and
	// answers it.
	_, _, err = c.Text.ReadResponse(250)
	if re := afterEnvelope(refused, err, "end", 250, "the message"); re != nil {
		return re
	}
	return nil
}

// afterEnvelope is the outcome of the reply (err) to the command after
// the envelope, DATA or BDAT, given the envelope's refusal (nil for
// none): nil when the transaction goes on. step names that command's
// failures, took is its success code and what it carried. Taken after a
// refusal, the session is in no state to go on: the caller discards it,
// and the message is tried again later.
func afterEnvelope(refused *replyError, err error, step string, took int, what string) error {
	switch {
	case err != nil && replyCode(err) == 0:
		return &replyError{step: step, err: err}
	case refused != nil && err == nil:
		return &replyError{step: step, code: took, err: fmt.Errorf("server took %s after %w", what, refused)}
	case refused != nil:
		return refused
	case err != nil:
		return &replyError{step: step, code: replyCode(err), err: err}
	}
	return nil
}
