package e2e

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/kdesk/portalgate/mail"
)

// CodePattern matches a sign-in code as the portal's mail and `mail log`
// print it: seven characters of the code alphabet, with a dash after the
// third (mail.CodePattern, which the log mailer uses).
var CodePattern = mail.CodePattern

// Mail is one message the Mailbox received.
type Mail struct {
	// From is the envelope sender.
	From string
	// To are the envelope recipients.
	To []string
	// Data is the message as sent, headers and body.
	Data string
}

// Code is the sign-in code in the message, without its dash, as the code
// form takes it; "" when there is none.
func (m Mail) Code() string {
	// CodePattern decides, on the few bytes around each dash: run over
	// a whole message it costs more than the rest of the mailbox's work.
	for at := 0; ; {
		i := strings.IndexByte(m.Data[at:], '-')
		if i < 0 {
			return ""
		}
		i += at
		if c := CodePattern.FindString(m.Data[max(0, i-4):min(len(m.Data), i+6)]); c != "" {
			return strings.ReplaceAll(c, "-", "")
		}
		at = i + 1
	}
}

// Mailbox is an SMTP server on loopback that keeps what it receives.
type Mailbox struct {
	// Addr is the host:port it listens on.
	Addr string

	srv    *smtp.Server
	reject atomic.Int32
	hold   atomic.Int64
	delay  atomic.Int64

	mu   sync.Mutex
	msgs []Mail
	// waited is how many of msgs Wait has returned; arrived is closed
	// (and replaced) when one more arrives. A session never waits for
	// a reader: the server takes any number of messages nobody waits
	// for.
	waited  int
	arrived chan struct{}

	// connsMu guards the connections: how many were accepted, and those
	// still open.
	connsMu  sync.Mutex
	accepted int
	open     map[net.Conn]bool
}

// StartMailbox starts an SMTP server on addr ("" for a free loopback
// port). Close stops it.
func StartMailbox(addr string) (*Mailbox, error) {
	if addr == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	mb := &Mailbox{Addr: addr, arrived: make(chan struct{}), open: map[net.Conn]bool{}}
	mb.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{mb: mb}, nil }))
	mb.srv.Domain = "localhost"
	mb.srv.AllowInsecureAuth = true
	mb.srv.ReadTimeout = 10 * time.Second
	mb.srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting mailbox: %w", err)
	}
	go func() { _ = mb.srv.Serve(countingListener{l, mb}) }()
	return mb, nil
}

// Connections is how many connections the server has accepted, and how
// many of them are still open.
func (mb *Mailbox) Connections() (accepted, open int) {
	mb.connsMu.Lock()
	defer mb.connsMu.Unlock()
	return mb.accepted, len(mb.open)
}

// TimeOutConnections makes every open connection time out now, as a
// server's idle timeout does: the server answers 421 and hangs up. The
// connections must be idle (between messages).
func (mb *Mailbox) TimeOutConnections() {
	// The server sets its own read deadline before each command it reads
	// (ReadTimeout): one that has just answered may not be reading yet and
	// would overwrite ours. So again, until every connection is closed
	// (for at most 2 s).
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		mb.connsMu.Lock()
		for c := range mb.open {
			_ = c.SetReadDeadline(time.Now())
		}
		n := len(mb.open)
		mb.connsMu.Unlock()
		if n == 0 {
			return
		}
	}
}

// DropConnections closes every open connection without a word, as a
// server that restarts or a middlebox that forgets does.
func (mb *Mailbox) DropConnections() {
	mb.connsMu.Lock()
	defer mb.connsMu.Unlock()
	for c := range mb.open {
		_ = c.Close()
	}
}

// countingListener keeps the Mailbox's count of connections.
type countingListener struct {
	net.Listener
	mb *Mailbox
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mb.connsMu.Lock()
	defer l.mb.connsMu.Unlock()
	l.mb.accepted++
	l.mb.open[c] = true
	return &countedConn{Conn: c, mb: l.mb}, nil
}

// countedConn leaves the Mailbox's open connections when closed. It also
// holds the server's replies until the server reads again (or closes), as
// a PIPELINING server may (RFC 2920, section 3.2): the replies to a
// pipelined MAIL, RCPT and DATA leave in one write, not three.
//
// With a delay (Delay), each batch of replies reaches the client that
// much after it was sent, as from a relay one round trip of that length
// away: the batches queue on a delay line, so that a batch sent while
// another is on its way is not held up behind it.
type countedConn struct {
	net.Conn
	mb   *Mailbox
	once sync.Once

	mu      sync.Mutex
	replies []byte
	// line carries delayed batches to the goroutine that sends them;
	// lineDone is closed when it has sent the last.
	line     chan delayed
	lineDone chan struct{}
}

// delayed is a batch of replies and when it is due at the client.
type delayed struct {
	b   []byte
	due time.Time
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.replies = append(c.replies, p...)
	return len(p), nil
}

// flush sends the replies held back.
func (c *countedConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.replies) == 0 {
		return nil
	}
	if d := time.Duration(c.mb.delay.Load()); d > 0 || c.line != nil {
		if c.line == nil {
			c.line, c.lineDone = make(chan delayed, 64), make(chan struct{})
			go c.sendDelayed()
		}
		c.line <- delayed{b: append([]byte(nil), c.replies...), due: time.Now().Add(d)}
		c.replies = c.replies[:0]
		return nil
	}
	_, err := c.Conn.Write(c.replies)
	c.replies = c.replies[:0]
	return err
}

// sendDelayed sends each delayed batch when it is due, in order.
func (c *countedConn) sendDelayed() {
	defer close(c.lineDone)
	for r := range c.line {
		time.Sleep(time.Until(r.due))
		if _, err := c.Conn.Write(r.b); err != nil {
			return
		}
	}
}

func (c *countedConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		_ = c.flush()
		// What is on its way arrives before the end.
		c.mu.Lock()
		line, done := c.line, c.lineDone
		if line != nil {
			close(line)
		}
		c.mu.Unlock()
		if done != nil {
			<-done
		}
		c.mb.connsMu.Lock()
		delete(c.mb.open, c.Conn)
		c.mb.connsMu.Unlock()
	})
	return c.Conn.Close()
}

// Reject makes the server answer every RCPT with the SMTP code (550 for a
// permanent failure); 0 accepts again.
func (mb *Mailbox) Reject(code int) { mb.reject.Store(int32(code)) }

// Hold makes the server keep every message it has received for d before
// it answers the end of DATA: a slow SMTP server, with the message already
// in the mailbox while the sender still waits. 0 answers at once again.
func (mb *Mailbox) Hold(d time.Duration) { mb.hold.Store(int64(d)) }

// Delay makes every reply reach the client d after the server sent it: a
// relay a round trip of d away (a pipelined transaction then waits d
// once for each of its turns). 0 answers at once again.
func (mb *Mailbox) Delay(d time.Duration) { mb.delay.Store(int64(d)) }

// Close stops the server; what it received stays readable.
func (mb *Mailbox) Close() error { return mb.srv.Close() }

// Wait returns the next message not yet waited for, or an error when none
// arrives within timeout.
func (mb *Mailbox) Wait(timeout time.Duration) (Mail, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		mb.mu.Lock()
		if mb.waited < len(mb.msgs) {
			m := mb.msgs[mb.waited]
			mb.waited++
			mb.mu.Unlock()
			return m, nil
		}
		arrived := mb.arrived
		mb.mu.Unlock()
		select {
		case <-arrived:
		case <-deadline.C:
			return Mail{}, fmt.Errorf("no mail arrived within %s", timeout)
		}
	}
}

// Count is how many messages the server has accepted.
func (mb *Mailbox) Count() int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return len(mb.msgs)
}

// session is one SMTP conversation with the Mailbox.
type session struct {
	mb  *Mailbox
	cur Mail
}

func (s *session) Reset()        { s.cur = Mail{} }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.From = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if code := s.mb.reject.Load(); code != 0 {
		return &smtp.SMTPError{Code: int(code), Message: "recipient rejected by the e2e mailbox"}
	}
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = string(b)
	s.mb.mu.Lock()
	s.mb.msgs = append(s.mb.msgs, s.cur)
	close(s.mb.arrived)
	s.mb.arrived = make(chan struct{})
	s.mb.mu.Unlock()
	time.Sleep(time.Duration(s.mb.hold.Load()))
	return nil
}
