// Package mail sends portalgate's messages: over SMTP with go-mail, or to
// the log for local runs, always from the persistent outbox worker and
// never inside an HTTP request.
package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	gomail "github.com/wneessen/go-mail"
	"go.uber.org/zap"
)

// Message is one email.
type Message struct {
	// From is the sender, like "Acme Support <support@acme.example>"; ""
	// for the sender's own (SMTP.From).
	From    string
	To      string
	Subject string
	Text    string
	HTML    string
}

// Sender delivers a message. An error wrapping ErrPermanent will not
// succeed on retry; any other error is temporary.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// ErrPermanent marks a delivery failure that retrying cannot fix, such as a
// 5xx answer from the SMTP server.
var ErrPermanent = errors.New("permanent delivery failure")

// ErrDeferred marks a message that is not due yet after all (it waits its
// turn behind another): retried later, but no failure.
var ErrDeferred = errors.New("delivery deferred")

// SMTP sends through an SMTP server with go-mail, over a few connections
// kept open between messages. Close ends them.
type SMTP struct {
	Host     string
	Port     int
	Username string
	Password string
	From     string
	// TLS is "starttls" (required), "tls" (implicit) or "none".
	TLS     string
	Timeout time.Duration
	// TLSConfig overrides the TLS client configuration (tests: a private CA).
	TLSConfig *tls.Config
	// Connections is how many connections may be open at once; a send
	// waits for one when all are busy. Default 32, the most deliveries an
	// adaptive outbox has under way: the pool opens them as the outbox's
	// concurrency grows, and closes the idle ones.
	Connections int
	// IdleTimeout is how long a connection may wait for the next message
	// before it is closed. Default 30 seconds.
	IdleTimeout time.Duration

	poolMu sync.Mutex
	pool   *connPool
	closed bool
	// oneCommandAtATime leaves PIPELINING unused (tests).
	oneCommandAtATime bool
	// dataNotChunks leaves CHUNKING unused (tests).
	dataNotChunks bool
}

// Send implements Sender.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg := gomail.NewMsg()
	from := s.From
	if m.From != "" {
		from = m.From
	}
	if err := msg.From(from); err != nil {
		return fmt.Errorf("%w: from address: %v", ErrPermanent, err)
	}
	if err := msg.To(m.To); err != nil {
		return fmt.Errorf("%w: recipient: %v", ErrPermanent, err)
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}

	p, err := s.connections()
	if err != nil {
		return err
	}
	err = p.send(ctx, msg)
	if permanent(err) {
		return fmt.Errorf("%w: %v", ErrPermanent, err)
	}
	return err
}

// connections returns the pool, made at the first message.
func (s *SMTP) connections() (*connPool, error) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	if s.closed {
		return nil, errPoolClosed
	}
	if s.pool == nil {
		// Neither a NOOP before each message nor a RSET after it: a
		// connection the server has dropped shows at MAIL, before
		// anything of the message went out (see notStarted), and a
		// delivered message ends its transaction by itself. Each saves a
		// round trip per message.
		c, err := s.client(gomail.WithoutNoop(), gomail.WithoutRset())
		if err != nil {
			return nil, fmt.Errorf("%w: smtp client: %v", ErrPermanent, err)
		}
		n, idle := s.Connections, s.IdleTimeout
		if n <= 0 {
			n = MaxConcurrency
		}
		if idle <= 0 {
			idle = 30 * time.Second
		}
		s.pool = newConnPool(c, n, idle, s.timeout())
		s.pool.noPipelining = s.oneCommandAtATime
		s.pool.noChunking = s.dataNotChunks
	}
	return s.pool, nil
}

// Close ends the idle connections politely (QUIT); one lent to a message
// under way is closed when that message is done. Sends after Close fail
// with a temporary error, so their messages wait in the outbox.
func (s *SMTP) Close() {
	s.poolMu.Lock()
	p := s.pool
	s.closed = true
	s.poolMu.Unlock()
	if p != nil {
		p.close()
	}
}

// Probe connects to the server and goes as far as a message would before
// its envelope: EHLO, STARTTLS when required, AUTH when credentials are
// set; then it quits. The error says which step failed, never the
// password.
func (s *SMTP) Probe(ctx context.Context) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	if err := c.DialWithContext(ctx); err != nil {
		return err
	}
	return c.Close()
}

func (s *SMTP) client(extra ...gomail.Option) (*gomail.Client, error) {
	opts := append([]gomail.Option{gomail.WithPort(s.Port), gomail.WithTimeout(s.timeout())}, extra...)
	switch s.TLS {
	case "tls":
		opts = append(opts, gomail.WithSSL())
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.TLSConfig != nil {
		opts = append(opts, gomail.WithTLSConfig(s.TLSConfig))
	}
	if s.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(s.Username), gomail.WithPassword(s.Password))
	}
	return gomail.NewClient(s.Host, opts...)
}

func (s *SMTP) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return 15 * time.Second
}

// Log writes each message to a logger instead of sending it: for local runs
// and demos only, since the log then holds sign-in codes. A message with a
// code gets a short line of its own first, "code for <to>: <code>", easy to
// spot in a terminal; the whole message follows.
type Log struct {
	Logger *zap.Logger
}

// CodePattern matches a sign-in code as the code emails print it: seven
// characters of the code alphabet, with a dash after the third.
var CodePattern = regexp.MustCompile(`\b[2-9A-HJKMNP-Z]{3}-[2-9A-HJKMNP-Z]{4}\b`)

// Send implements Sender.
func (l Log) Send(_ context.Context, m Message) error {
	if code := CodePattern.FindString(m.Text); code != "" {
		l.Logger.Info("code for " + m.To + ": " + code)
	}
	l.Logger.Info("mail (log mailer: not sent)",
		zap.String("to", m.To),
		zap.String("subject", m.Subject),
		zap.String("text", m.Text))
	return nil
}

// Watched is a Sender that remembers whether its latest send failed, so
// that pages can say that mail may be delayed while delivery is failing.
type Watched struct {
	Sender  Sender
	failing atomic.Bool
}

// Send implements Sender.
func (w *Watched) Send(ctx context.Context, m Message) error {
	err := w.Sender.Send(ctx, m)
	w.failing.Store(err != nil)
	return err
}

// Failing reports whether the latest send failed (or the server could
// not be reached at start, see MarkFailing) and none has succeeded since.
func (w *Watched) Failing() bool { return w.failing.Load() }

// MarkFailing records a failure seen outside Send, such as a probe at
// start; the next successful send clears it.
func (w *Watched) MarkFailing() { w.failing.Store(true) }
