package mail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// errPoolClosed is a send after Close: temporary, so that the message
// waits in the outbox for the next config's sender.
var errPoolClosed = errors.New("smtp connections closed")

// quitTimeout bounds the QUIT that ends an idle connection politely.
const quitTimeout = 2 * time.Second

// connPool keeps up to size open, authenticated connections to one SMTP
// server and lends them out one message at a time. A connection idle for
// idleTimeout is closed: below the idle timeouts servers apply (RFC 5321
// asks them for at least 5 minutes; some use less), so that most are
// closed by us rather than found dead.
type connPool struct {
	// dialer holds the server, TLS and AUTH settings: it opens the
	// connections and sends on them.
	dialer      *gomail.Client
	idleTimeout time.Duration
	// timeout bounds a pipelined message's transaction, as the dialer's
	// timeout bounds each of go-mail's commands.
	timeout time.Duration
	// noPipelining sends one command at a time even where the server
	// offers PIPELINING (tests).
	noPipelining bool
	// noChunking sends the content with DATA even where the server offers
	// CHUNKING (tests).
	noChunking bool
	// chunkingUnanswered is set when a chunked message got no answer in
	// time: from then on the pool sends with DATA. A middlebox that
	// passes CHUNKING in the server's EHLO but not BDAT itself would
	// otherwise hold every code until it failed.
	chunkingUnanswered atomic.Bool
	now                func() time.Time

	// slots has one token per connection that may be open: a sender
	// holds one from before it takes a connection until it gives it back,
	// so open connections never outnumber them.
	slots chan struct{}

	mu sync.Mutex
	// idle are the connections waiting for a message, the most recently
	// used last.
	idle   []*pooledConn
	timer  *time.Timer
	closed bool
}

// pooledConn is one open connection.
type pooledConn struct {
	c *smtp.Client
	// reused is set once the connection has carried a message: from then
	// on, the server may have dropped it while it waited.
	reused   bool
	lastUsed time.Time
}

func newConnPool(dialer *gomail.Client, size int, idleTimeout, timeout time.Duration) *connPool {
	return &connPool{dialer: dialer, idleTimeout: idleTimeout, timeout: timeout, now: time.Now, slots: make(chan struct{}, size)}
}

// send delivers msg over a pooled connection. ctx bounds the wait for a
// connection and the dial; once the envelope is under way, the message
// finishes or fails within the dialer's timeout, since a cancel in the
// middle of DATA would leave it unknown whether the server took it.
func (p *connPool) send(ctx context.Context, msg *gomail.Msg) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for an smtp connection: %w", ctx.Err())
	}
	defer func() { <-p.slots }()

	pc, err := p.take(ctx)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		p.put(pc)
		return err
	}
	tried := time.Now()
	err = p.transact(pc, msg)
	if err != nil && pc.reused && notStarted(err) && ctx.Err() == nil {
		// The server dropped the connection while it waited (an idle
		// timeout, a restart) before this message began: nothing was
		// sent, so once more on a fresh connection. Finding that out
		// was part of reconnecting, not a queue (WithReport).
		AddSetup(ctx, time.Since(tried))
		discard(pc)
		if pc, err = p.dial(ctx); err != nil {
			return err
		}
		err = p.transact(pc, msg)
	}
	switch {
	case err == nil:
		p.put(pc)
	case msg.IsDelivered():
		// The server took the message; only the RSET after it failed.
		discard(pc)
		err = nil
	case rejected(err) && pc.c.Reset() == nil:
		// The server refused this envelope and the session is clean
		// again: the connection serves the next message.
		p.put(pc)
	default:
		discard(pc)
	}
	return err
}

// take returns the most recently used idle connection that has not been
// idle too long, or a new one.
func (p *connPool) take(ctx context.Context) (*pooledConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	var stale []*pooledConn
	var pc *pooledConn
	for len(p.idle) > 0 {
		last := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if p.now().Sub(last.lastUsed) < p.idleTimeout {
			pc = last
			break
		}
		stale = append(stale, last)
	}
	p.mu.Unlock()
	for _, s := range stale {
		discard(s)
	}
	if pc != nil {
		return pc, nil
	}
	return p.dial(ctx)
}

// dial opens a new connection: EHLO, STARTTLS and AUTH as configured.
func (p *connPool) dial(ctx context.Context) (*pooledConn, error) {
	start := time.Now()
	c, err := p.dialer.DialToSMTPClientWithContext(ctx)
	AddSetup(ctx, time.Since(start))
	if err != nil {
		return nil, fmt.Errorf("connecting to the smtp server: %w", err)
	}
	return &pooledConn{c: c}, nil
}

// put makes a connection that has just carried a message (or had it
// refused) idle, and schedules its closing.
func (p *connPool) put(pc *pooledConn) {
	pc.reused = true
	pc.lastUsed = p.now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		quit(pc)
		return
	}
	p.idle = append(p.idle, pc)
	if p.timer == nil {
		p.timer = time.AfterFunc(p.idleTimeout, p.expire)
	}
	p.mu.Unlock()
}

// expire closes the connections idle for idleTimeout and schedules the
// next look for the oldest of the others.
func (p *connPool) expire() {
	p.mu.Lock()
	now := p.now()
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].lastUsed) >= p.idleTimeout {
		n++
	}
	old := p.idle[:n:n]
	p.idle = p.idle[n:]
	p.timer = nil
	if len(p.idle) > 0 && !p.closed {
		p.timer = time.AfterFunc(p.idle[0].lastUsed.Add(p.idleTimeout).Sub(now), p.expire)
	}
	p.mu.Unlock()
	for _, pc := range old {
		quit(pc)
	}
}

// close ends every idle connection; those lent out are closed when they
// come back. Sends after it fail.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, pc := range idle {
		wg.Go(func() { quit(pc) })
	}
	wg.Wait()
}

// quit ends a healthy connection with QUIT, briefly waited for.
func quit(pc *pooledConn) {
	if err := pc.c.UpdateDeadline(quitTimeout); err != nil || pc.c.Quit() != nil {
		discard(pc)
	}
}

// discard closes a connection without a word: after an error, its
// session is in an unknown state.
func discard(pc *pooledConn) { _ = pc.c.Close() }

// transact sends msg on pc: in one chunked transaction where the server
// offers PIPELINING and CHUNKING, in one pipelined transaction where it
// offers PIPELINING, else command by command through go-mail.
func (p *connPool) transact(pc *pooledConn, msg *gomail.Msg) error {
	if ok, _ := pc.c.Extension("PIPELINING"); ok && !p.noPipelining {
		if ok, _ := pc.c.Extension("CHUNKING"); ok && !p.noChunking && !p.chunkingUnanswered.Load() {
			err := sendChunked(pc.c, msg, p.timeout)
			if unanswered(err) {
				p.chunkingUnanswered.Store(true)
			}
			return err
		}
		return sendPipelined(pc.c, msg, p.timeout)
	}
	return p.dialer.SendWithSMTPClient(pc.c, msg)
}

// unanswered reports whether err is a chunked message's wait for the
// server's answer running out of time.
func unanswered(err error) bool {
	var re *replyError
	var ne net.Error
	return errors.As(err, &re) && re.step == "end" && re.code == 0 && errors.As(err, &ne) && ne.Timeout()
}

// notStarted reports whether err stopped a message before its content
// went out, on a connection the server had closed: the check before the
// envelope failed, or MAIL, RCPT or DATA got no answer or 421 (the server
// closing the channel). Retrying it cannot send the message twice.
func notStarted(err error) bool {
	var re *replyError
	if errors.As(err, &re) {
		return (re.step == "MAIL" || re.step == "RCPT" || re.step == "DATA") && (re.code == 0 || re.code == 421)
	}
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case gomail.ErrConnCheck:
		return true
	case gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo, gomail.ErrSMTPData:
		return se.ErrorCode() == 0 || se.ErrorCode() == 421
	}
	return false
}

// permanent reports whether err is the server's final refusal of the
// message (a 5xx reply): sending it again cannot help.
func permanent(err error) bool {
	var re *replyError
	if errors.As(err, &re) {
		return re.code >= 500
	}
	var se *gomail.SendError
	return errors.As(err, &se) && !se.IsTemp() && se.ErrorCode() >= 500
}

// rejected reports whether the server answered MAIL or RCPT with a
// refusal (other than 421, which closes the connection): the session
// itself is fine.
func rejected(err error) bool {
	var re *replyError
	if errors.As(err, &re) {
		return (re.step == "MAIL" || re.step == "RCPT") && re.code >= 400 && re.code != 421
	}
	var se *gomail.SendError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Reason {
	case gomail.ErrSMTPMailFrom, gomail.ErrSMTPRcptTo:
		return se.ErrorCode() >= 400 && se.ErrorCode() != 421
	}
	return false
}
