package mail_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/kdesk/portalgate/integration/e2e"
	"github.com/kdesk/portalgate/mail"
)

// The pooled SMTP sender against a real SMTP server over TCP (the e2e
// mailbox), which counts the connections it accepts.

func startMailbox(t *testing.T) *e2e.Mailbox {
	t.Helper()
	mb, err := e2e.StartMailbox("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mb.Close() })
	return mb
}

// smtpAt is a sender to the SMTP server at addr, closed when the test
// ends.
func smtpAt(t *testing.T, addr string, connections int, timeout time.Duration) *mail.SMTP {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	s := &mail.SMTP{Host: host, Port: p, From: "support@acme.example", TLS: "none", Connections: connections, Timeout: timeout}
	t.Cleanup(s.Close)
	return s
}

// smtpTo is a sender to mb that sends the way the test runs.
func smtpTo(t *testing.T, mb *e2e.Mailbox, connections int) *mail.SMTP {
	t.Helper()
	s := smtpAt(t, mb.Addr, connections, 5*time.Second)
	sendAs(s)
	return s
}

// The e2e mailbox offers PIPELINING and CHUNKING: by default the pool's
// tests send chunked transactions, one round trip a message.
var (
	// commandByCommand makes smtpTo's senders leave PIPELINING unused.
	commandByCommand bool
	// dataNotChunks makes them send the content with DATA.
	dataNotChunks bool
)

// sendAs sets s to send the way the test runs, and returns the round
// trips a message then takes on an open connection.
func sendAs(s *mail.SMTP) int {
	switch {
	case commandByCommand:
		mail.OneCommandAtATime(s)
		return 4
	case dataNotChunks:
		mail.DataNotChunks(s)
		return 2
	}
	return 1
}

// poolTests are the tests run again for each way of sending.
var poolTests = map[string]func(*testing.T){
	"ReusesConnections":         TestSMTPPoolReusesConnections,
	"ReconnectsWhenServerHangs": TestSMTPPoolReconnectsWhenTheServerHangsUp,
	"RejectedRecipient":         TestSMTPPoolRejectedRecipient,
	"NeverSendsTwice":           TestSMTPPoolNeverSendsTwice,
	"RoundTrips":                TestSMTPPoolPipelines,
}

// TestSMTPPoolCommandByCommand runs the pool's tests again against a
// sender that sends one command at a time, as to a server without
// PIPELINING: go-mail's way.
func TestSMTPPoolCommandByCommand(t *testing.T) {
	commandByCommand = true
	defer func() { commandByCommand = false }()
	for name, test := range poolTests {
		t.Run(name, test)
	}
}

// TestSMTPPoolPipelinedData runs them again against a sender that sends
// the content with DATA after a pipelined MAIL, RCPT and DATA, as to a
// server with PIPELINING but without CHUNKING.
func TestSMTPPoolPipelinedData(t *testing.T) {
	dataNotChunks = true
	defer func() { dataNotChunks = false }()
	for name, test := range poolTests {
		t.Run(name, test)
	}
}

// turnCounter is a TCP proxy in front of addr that counts the client's
// turns: each time the client sends after the server did, the client
// waited for a reply, a round trip.
type turnCounter struct {
	addr  string
	mu    sync.Mutex
	turns int
	// serverLast: the last bytes went from the server to the client.
	serverLast bool
}

func startTurnCounter(t *testing.T, to string) *turnCounter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	tc := &turnCounter{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				_ = c.Close()
				return
			}
			pipe := func(dst, src net.Conn, fromServer bool) {
				defer dst.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						// Counted before it is passed on, so that the
						// answer to it comes after.
						tc.mu.Lock()
						if !fromServer && tc.serverLast {
							tc.turns++
						}
						tc.serverLast = fromServer
						tc.mu.Unlock()
						if _, err := dst.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(s, c, false)
			go pipe(c, s, true)
		}
	}()
	return tc
}

func (tc *turnCounter) count() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.turns
}

// TestSMTPPoolPipelines: a message on an open connection takes 1 round
// trip where the server offers PIPELINING and CHUNKING (MAIL, RCPT and
// BDAT LAST with the content), 2 with PIPELINING alone (MAIL, RCPT and
// DATA; then the content), and 4 one command at a time. The messages
// arrive as sent, whichever way.
func TestSMTPPoolPipelines(t *testing.T) {
	mb := startMailbox(t)
	tc := startTurnCounter(t, mb.Addr)
	s := smtpAt(t, tc.addr, 1, 5*time.Second)
	want := sendAs(s)
	ctx := context.Background()
	if err := s.Send(ctx, message(1)); err != nil {
		t.Fatal(err)
	}
	before := tc.count()
	for i := 2; i <= 4; i++ {
		m := message(i)
		// A line that DATA must stuff with a second dot, and the server
		// unstuff; a chunk carries it as it is.
		m.Text += "\n.a line that starts with a dot\nübrigens"
		if err := s.Send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if got := (tc.count() - before) / 3; got != want {
		t.Fatalf("%d round trips a message, want %d", got, want)
	}
	if n := mb.Count(); n != 4 {
		t.Fatalf("the mailbox holds %d messages, want 4", n)
	}
	for i := 1; i <= 4; i++ {
		m, err := mb.Wait(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			continue
		}
		if !strings.Contains(m.Data, "\r\n.a line that starts with a dot\r\n") || strings.Contains(m.Data, "..a line") || !strings.HasSuffix(m.Data, "\r\n") {
			t.Fatalf("message %d arrived as:\n%s", i, m.Data)
		}
	}
}

// TestSMTPPoolFarRelay: against a relay 100 ms away, a message on an
// open connection waits a round trip for each of its turns, no less.
func TestSMTPPoolFarRelay(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(*mail.SMTP)
		turns int
	}{
		{"chunked", func(*mail.SMTP) {}, 1},
		{"data", mail.DataNotChunks, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			mb := startMailbox(t)
			s := smtpAt(t, mb.Addr, 1, 5*time.Second)
			c.setup(s)
			if err := s.Send(context.Background(), message(1)); err != nil {
				t.Fatal(err)
			}
			const rtt = 100 * time.Millisecond
			mb.Delay(rtt)
			start := time.Now()
			if err := s.Send(context.Background(), message(2)); err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			if d < time.Duration(c.turns)*rtt {
				t.Fatalf("a message took %s against a relay %s away, want at least %d round trips", d, rtt, c.turns)
			}
			t.Logf("a message took %s", d)
			if n := mb.Count(); n != 2 {
				t.Fatalf("the mailbox holds %d messages, want 2", n)
			}
		})
	}
}

func message(i int) mail.Message {
	return mail.Message{To: fmt.Sprintf("p%d@acme.example", i), Subject: "Your sign-in code", Text: fmt.Sprintf("message %d", i)}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSMTPPoolReusesConnections: 60 messages from 8 senders at once
// through a pool of 2 all arrive, over at most 2 connections; one at a
// time, they share one.
func TestSMTPPoolReusesConnections(t *testing.T) {
	mb := startMailbox(t)
	s := smtpTo(t, mb, 2)
	const n = 60
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if err := s.Send(context.Background(), message(i)); err != nil {
					errs <- err
				}
			}
		})
	}
	got := map[string]bool{}
	for range n {
		m, err := mb.Wait(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got[m.To[0]] = true
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(got) != n || mb.Count() != n {
		t.Fatalf("%d distinct recipients, %d messages; want %d of each", len(got), mb.Count(), n)
	}
	if accepted, _ := mb.Connections(); accepted > 2 {
		t.Fatalf("%d connections for a pool of 2", accepted)
	}

	mb2 := startMailbox(t)
	s2 := smtpTo(t, mb2, 4)
	for i := range 10 {
		if err := s2.Send(context.Background(), message(i)); err != nil {
			t.Fatal(err)
		}
	}
	if accepted, open := mb2.Connections(); accepted != 1 || open != 1 {
		t.Fatalf("10 messages one after the other: %d connections accepted, %d open; want 1 and 1", accepted, open)
	}
}

// TestSMTPPoolReconnectsWhenTheServerHangsUp: a server that times out its
// idle connections (421, then it hangs up) or drops them without a word:
// the next message goes out over a new connection, once.
func TestSMTPPoolReconnectsWhenTheServerHangsUp(t *testing.T) {
	for _, c := range []struct {
		name   string
		hangUp func(*e2e.Mailbox)
	}{
		{"idle timeout", (*e2e.Mailbox).TimeOutConnections},
		{"dropped", (*e2e.Mailbox).DropConnections},
	} {
		t.Run(c.name, func(t *testing.T) {
			mb := startMailbox(t)
			s := smtpTo(t, mb, 2)
			if err := s.Send(context.Background(), message(1)); err != nil {
				t.Fatal(err)
			}
			c.hangUp(mb)
			waitFor(t, "the server to close its connection", func() bool { _, open := mb.Connections(); return open == 0 })
			if err := s.Send(context.Background(), message(2)); err != nil {
				t.Fatalf("send after the server hung up: %v", err)
			}
			if n := mb.Count(); n != 2 {
				t.Fatalf("the mailbox holds %d messages, want 2", n)
			}
			if accepted, _ := mb.Connections(); accepted != 2 {
				t.Fatalf("%d connections accepted, want 2", accepted)
			}
		})
	}
}

// TestSMTPPoolRejectedRecipient: a 5xx for a recipient is permanent, a 4xx
// temporary, and neither costs the connection: the next message goes out
// over the same one.
func TestSMTPPoolRejectedRecipient(t *testing.T) {
	mb := startMailbox(t)
	s := smtpTo(t, mb, 2)
	mb.Reject(550)
	if err := s.Send(context.Background(), message(1)); !errors.Is(err, mail.ErrPermanent) {
		t.Fatalf("550 for the recipient: %v, want a permanent error", err)
	}
	mb.Reject(451)
	if err := s.Send(context.Background(), message(2)); err == nil || errors.Is(err, mail.ErrPermanent) {
		t.Fatalf("451 for the recipient: %v, want a temporary error", err)
	}
	mb.Reject(0)
	if err := s.Send(context.Background(), message(3)); err != nil {
		t.Fatalf("the message after the refusals: %v", err)
	}
	if n := mb.Count(); n != 1 {
		t.Fatalf("the mailbox holds %d messages, want 1", n)
	}
	if accepted, _ := mb.Connections(); accepted != 1 {
		t.Fatalf("%d connections accepted, want 1", accepted)
	}
}

// TestSMTPPoolNeverSendsTwice: a message whose answer to DATA does not
// come in time fails (temporary: the outbox retries it later), and it is
// not sent again over a fresh connection at once, since the server may
// have taken it.
func TestSMTPPoolNeverSendsTwice(t *testing.T) {
	mb := startMailbox(t)
	s := smtpTo(t, mb, 2)
	s.Timeout = 500 * time.Millisecond
	if err := s.Send(context.Background(), message(1)); err != nil {
		t.Fatal(err)
	}
	mb.Hold(1500 * time.Millisecond)
	err := s.Send(context.Background(), message(2))
	if err == nil || errors.Is(err, mail.ErrPermanent) {
		t.Fatalf("no answer to DATA in time: %v, want a temporary error", err)
	}
	mb.Hold(0)
	time.Sleep(1500 * time.Millisecond)
	if n := mb.Count(); n != 2 {
		t.Fatalf("the mailbox holds %d messages, want 2 (the slow one once)", n)
	}
	if err := s.Send(context.Background(), message(3)); err != nil {
		t.Fatalf("the message after the slow one: %v", err)
	}
}

// TestSMTPPoolChunkingUnanswered: a chunked message the server leaves
// unanswered past the timeout (as behind a middlebox that lets CHUNKING
// through in EHLO but not BDAT) fails once, temporarily; the pool then
// sends with DATA, two round trips a message, and the messages arrive.
func TestSMTPPoolChunkingUnanswered(t *testing.T) {
	mb := startMailbox(t)
	tc := startTurnCounter(t, mb.Addr)
	s := smtpAt(t, tc.addr, 1, 500*time.Millisecond)
	ctx := context.Background()
	if err := s.Send(ctx, message(1)); err != nil {
		t.Fatal(err)
	}
	mb.Hold(1500 * time.Millisecond)
	if err := s.Send(ctx, message(2)); err == nil || errors.Is(err, mail.ErrPermanent) {
		t.Fatalf("a chunked message left unanswered: %v, want a temporary error", err)
	}
	mb.Hold(0)
	waitFor(t, "the held message", func() bool { return mb.Count() == 2 })
	if err := s.Send(ctx, message(3)); err != nil { // a new connection
		t.Fatal(err)
	}
	before := tc.count()
	for i := 4; i <= 5; i++ {
		if err := s.Send(ctx, message(i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := (tc.count() - before) / 2; got != 2 {
		t.Fatalf("%d round trips a message after the unanswered one, want 2 (DATA)", got)
	}
	if n := mb.Count(); n != 5 {
		t.Fatalf("the mailbox holds %d messages, want 5", n)
	}
}

// TestSMTPPoolWaitRespectsTheContext: with every connection busy, a send
// waits for one no longer than its context allows.
func TestSMTPPoolWaitRespectsTheContext(t *testing.T) {
	mb := startMailbox(t)
	s := smtpTo(t, mb, 1)
	mb.Hold(time.Second)
	done := make(chan error, 1)
	go func() { done <- s.Send(context.Background(), message(1)) }()
	if _, err := mb.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Send(ctx, message(2))
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mail.ErrPermanent) {
		t.Fatalf("send with every connection busy: %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("the send waited %s past its 100 ms deadline", d)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if accepted, _ := mb.Connections(); accepted != 1 {
		t.Fatalf("%d connections for a pool of 1", accepted)
	}
}

// TestSMTPPoolClosesIdleConnections: a connection idle for IdleTimeout is
// closed; the next message opens another.
func TestSMTPPoolClosesIdleConnections(t *testing.T) {
	mb := startMailbox(t)
	s := smtpTo(t, mb, 2)
	s.IdleTimeout = 200 * time.Millisecond
	if err := s.Send(context.Background(), message(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle connection to close", func() bool { _, open := mb.Connections(); return open == 0 })
	if err := s.Send(context.Background(), message(2)); err != nil {
		t.Fatal(err)
	}
	if accepted, open := mb.Connections(); accepted != 2 || open != 1 {
		t.Fatalf("%d connections accepted, %d open; want 2 and 1", accepted, open)
	}
}

// TestSMTPPoolClose: Close ends every connection; later sends fail, and
// temporarily (their messages wait in the outbox).
func TestSMTPPoolClose(t *testing.T) {
	mb := startMailbox(t)
	s := smtpTo(t, mb, 3)
	mb.Hold(300 * time.Millisecond) // three at once: three connections
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if err := s.Send(context.Background(), message(i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	mb.Hold(0)
	if _, open := mb.Connections(); open != 3 {
		t.Fatalf("%d connections open, want 3", open)
	}
	s.Close()
	waitFor(t, "the connections to close", func() bool { _, open := mb.Connections(); return open == 0 })
	if err := s.Send(context.Background(), message(4)); err == nil || errors.Is(err, mail.ErrPermanent) {
		t.Fatalf("send after Close: %v, want a temporary error", err)
	}
}

// BenchmarkSMTPSend: one message to the e2e mailbox over loopback, from 16
// senders at once (the portalbench rush's outbox workers), over the pool
// of 4 and, for comparison, the way Send worked before the pool: a
// connection per message (go-mail's DialAndSend).
func BenchmarkSMTPSend(b *testing.B) {
	mb, err := e2e.StartMailbox("")
	if err != nil {
		b.Fatal(err)
	}
	defer mb.Close()
	go func() { // the mailbox keeps what it receives; drain its channel
		for {
			if _, err := mb.Wait(time.Second); err != nil {
				return
			}
		}
	}()
	host, port, _ := net.SplitHostPort(mb.Addr)
	p, _ := strconv.Atoi(port)
	b.Run("pooled", func(b *testing.B) {
		s := &mail.SMTP{Host: host, Port: p, From: "support@acme.example", TLS: "none"}
		defer s.Close()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Send(context.Background(), message(1)); err != nil {
					b.Error(err)
				}
			}
		})
	})
	b.Run("connection per message", func(b *testing.B) {
		c, err := gomail.NewClient(host, gomail.WithPort(p), gomail.WithTLSPolicy(gomail.NoTLS))
		if err != nil {
			b.Fatal(err)
		}
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m := gomail.NewMsg()
				_ = m.From("support@acme.example")
				_ = m.To("p1@acme.example")
				m.Subject("Your sign-in code")
				m.SetBodyString(gomail.TypeTextPlain, "message 1")
				if err := c.DialAndSendWithContext(context.Background(), m); err != nil {
					b.Error(err)
				}
			}
		})
	})
}

// TestSMTPPoolReportsSetup: a send that opens a connection reports the
// time it took (the greeting and EHLO: two round trips here) to the
// outbox through mail.WithReport, and a send on an open connection
// reports none.
func TestSMTPPoolReportsSetup(t *testing.T) {
	const rtt = 30 * time.Millisecond
	mb := startMailbox(t)
	mb.Delay(rtt)
	s := smtpAt(t, mb.Addr, 1, 5*time.Second)
	ctx, report := mail.WithReport(context.Background())
	if err := s.Send(ctx, message(1)); err != nil {
		t.Fatal(err)
	}
	if d := report.Setup(); d < 2*rtt {
		t.Fatalf("the first send reported %s of setup against a relay %s away, want at least 2 round trips", d, rtt)
	}
	ctx, report = mail.WithReport(context.Background())
	if err := s.Send(ctx, message(2)); err != nil {
		t.Fatal(err)
	}
	if d := report.Setup(); d != 0 {
		t.Fatalf("a send on the open connection reported %s of setup", d)
	}
}
