// Package handlers holds portalgate's HTTP flows: the gate in front of the
// portal (gate.go, the hot path), the sign-in service under the auth path
// (routes.go: sign-in by emailed code, personalized link or single sign-on,
// sign-out and the error pages) and the outbox work that mails codes
// (delivery.go). It knows nothing of Caddy: module/ wires it in, and state
// lives behind storage.Store.
package handlers

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
)

// MaxCodeTries is how many wrong codes kill a code.
const MaxCodeTries = 5

// Portal is everything the flows of one Caddy config share: workspaces,
// state, mail and keys.
type Portal struct {
	Workspaces map[string]*Workspace
	Sender     mail.Sender
	Pages      *Pages
	Logger     *zap.Logger
	// AuditLog receives every audit event too, with emails masked unless
	// LogFullEmails is set; the stored trail keeps them whole.
	AuditLog      *zap.Logger
	LogFullEmails bool
	Limits        Limits
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ConfiguredSecret, when set, is used instead of the stored one.
	ConfiguredSecret []byte
	// OutboxWorkers fixes the number of concurrent mail deliveries; 0
	// adapts it to their latency.
	OutboxWorkers int
	// Metrics, when set, count sign-ins, mail and gate decisions.
	Metrics *Metrics
	// ClientIP is the client address of a request, as the server resolved
	// it (trusted proxies honoured). Default: the connection's peer.
	ClientIP func(*http.Request) string
	// ForwardedHTTPS, when set, reports whether a trusted proxy in front
	// says the client is on HTTPS (X-Forwarded-Proto).
	ForwardedHTTPS func(*http.Request) bool
	// TrustedProxy, when set, reports whether the request came from a
	// proxy the server trusts; forward-auth subrequests are answered only
	// then.
	TrustedProxy func(*http.Request) bool
	// HTTPClient posts webhooks; default: a client with a 10 s timeout.
	HTTPClient *http.Client
	// MailFailing, when set, reports whether mail delivery is failing
	// (mail.Watched.Failing); the code page then says mail may be delayed.
	MailFailing func() bool

	webhooks webhookOrder

	state  atomic.Pointer[runtime]
	outage atomic.Bool
	// ctx is Start's context; stop ends it.
	ctx        context.Context
	stop       context.CancelFunc
	outbox     *mail.Outbox
	readyOnce  sync.Once
	settleOnce sync.Once
	ready      chan struct{}
	// backlog is the mail still being retried (metrics.go).
	backlog backlog
}

// runtime is what exists once Start has opened storage: the store and the
// keys derived from the secret, built once per config. Every request loads
// it once and uses that value throughout, so a reload that swaps the config
// mid-request never leaves a request half on the old one and half on none.
type runtime struct {
	store storage.Store
	keys  map[string]*workspaceKeys
}

// readyChan is closed once Start has tried storage for the first time,
// whether or not it answered.
func (p *Portal) readyChan() chan struct{} {
	p.readyOnce.Do(func() { p.ready = make(chan struct{}) })
	return p.ready
}

// runtimeWait returns the runtime, waiting a little for Start: Caddy may
// start the HTTP server a moment before the portal app has opened storage.
func (p *Portal) runtimeWait(ctx context.Context) *runtime {
	if rt := p.state.Load(); rt != nil {
		return rt
	}
	if p.outage.Load() {
		// Storage is known to be down (Start could not reach it): answer
		// at once rather than hold every request.
		return nil
	}
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-p.readyChan():
	case <-t.C:
	case <-ctx.Done():
	}
	return p.state.Load()
}

// Start makes the portal serve: it takes the opened store, loads or creates
// the secret and starts the outbox workers. Its background work runs under
// ctx, and ends with it or with Stop.
func (p *Portal) Start(ctx context.Context, store storage.Store) error {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Logger == nil {
		p.Logger = zap.NewNop()
	}
	if p.AuditLog == nil {
		p.AuditLog = p.Logger
	}
	if p.ClientIP == nil {
		p.ClientIP = peerIP
	}
	p.Limits = p.Limits.WithDefaults()
	p.ctx, p.stop = context.WithCancel(ctx)
	// The outbox exists before the runtime does (loadSecret): a request
	// that finds the runtime wakes it, even one that a reload's new server
	// answers before Start is done. Its workers start at the end.
	p.outbox = &mail.Outbox{
		Store:   store,
		Deliver: p.deliver,
		// The delivery's audit events, stored with the ack.
		Announce: func(events []storage.AuditEvent) {
			rt := p.state.Load()
			for _, e := range events {
				p.announce(context.Background(), rt, e)
			}
		},
		GiveUp: p.giveUp,
		// metrics.go: the attempt-failure counter, the oldest queued mail
		OnAttemptFailed: p.attemptFailed,
		OnDone:          p.mailDone,
		// webhook.go: one lane per receiver, and a receiver's backlog
		// goes back to the store rather than hold every worker.
		Lane:     outboxLane,
		Overflow: func(m storage.OutboxMessage) bool { return m.Kind == kindWebhook },
		Workers:  p.OutboxWorkers,
		Logger:   p.Logger.Named("outbox"),
		Now:      p.Now,
	}
	if err := p.loadSecret(store); err != nil {
		if !errors.Is(err, storage.ErrUnavailable) {
			p.stop()
			return err
		}
		// Storage that cannot be reached yet (Redis down) must not stop
		// Caddy: fail closed and keep trying.
		p.storageDown("loading secret", err)
		p.settle()
		go func() {
			if err := storage.Retry(p.ctx, 3*time.Second, func() error { return p.loadSecret(store) }); err != nil && p.ctx.Err() == nil {
				p.Logger.Error("loading secret", zap.Error(err))
			}
		}()
	}
	for _, ws := range p.Workspaces {
		for _, sp := range ws.SSO {
			sp.Warm(p.ctx, p.Logger)
		}
	}
	p.outbox.Start(p.ctx)
	return nil
}

// loadSecret loads (or creates) the instance secret, derives the
// workspaces' keys and makes the portal serve.
func (p *Portal) loadSecret(store storage.Store) error {
	secret := p.ConfiguredSecret
	if len(secret) == 0 {
		var err error
		secret, err = store.Secret(context.Background(), func() ([]byte, error) {
			b := make([]byte, 32)
			_, err := rand.Read(b)
			return b, err
		})
		if err != nil {
			return fmt.Errorf("loading secret: %w", err)
		}
	}
	rt := &runtime{store: store, keys: make(map[string]*workspaceKeys, len(p.Workspaces))}
	for name := range p.Workspaces {
		rt.keys[name] = deriveKeys(secret, name)
	}
	p.state.Store(rt)
	p.configLoaded(rt, secret)
	p.storageUp()
	p.settle()
	return nil
}

// settle releases the requests that wait for Start's first try of storage.
func (p *Portal) settle() {
	p.settleOnce.Do(func() { close(p.readyChan()) })
}

// storageDown notes that storage failed a request, so that the next ones
// are answered at once. An outage (storage.ErrUnavailable) is the store's
// to log, once, as it is the store that knows when it ends; any other
// failure is logged here, once until storage answers again.
func (p *Portal) storageDown(what string, err error) {
	if p.outage.CompareAndSwap(false, true) && !errors.Is(err, storage.ErrUnavailable) {
		p.Logger.Error("portal storage failed: failing closed", zap.String("during", what), zap.Error(err))
	}
}

// storageUp notes that storage answers again.
func (p *Portal) storageUp() {
	if p.outage.Load() {
		p.outage.CompareAndSwap(true, false)
	}
}

// Stop ends the outbox workers; queued mail stays in storage. The runtime
// stays: requests the old config is still serving during a reload finish
// on it.
func (p *Portal) Stop() {
	if p.outbox != nil {
		p.outbox.Stop()
	}
	if p.stop != nil {
		p.stop()
	}
}

// Store returns the open store, or nil before Start.
func (p *Portal) Store() storage.Store {
	if rt := p.state.Load(); rt != nil {
		return rt.store
	}
	return nil
}

// Audit event names.
const (
	EventCodeRequested     = "code_requested"
	EventCodeSent          = "code_sent"
	EventCodeNotSent       = "code_not_sent"
	EventMailFailed        = "mail_failed"
	EventCodeAccepted      = "code_accepted"
	EventCodeRejected      = "code_rejected"
	EventRateLimited       = "rate_limited"
	EventLinkOpened        = "link_opened"
	EventLinkInvalid       = "link_invalid"
	EventSSOSuccess        = "sso_success"
	EventSSOFailure        = "sso_failure"
	EventSessionEnded      = "session_ended"
	EventSessionRevoked    = "session_revoked"
	EventPortalUnavailable = "portal_unavailable"
	EventWebhookFailed     = "webhook_failed"
)

// Audit records an event in storage and in the audit log. It never fails
// the request: a lost audit entry is logged as an error.
func (p *Portal) Audit(ctx context.Context, e storage.AuditEvent) {
	p.audit(ctx, p.state.Load(), e)
}

// audit records e through rt's store (when there is one yet).
func (p *Portal) audit(ctx context.Context, rt *runtime, e storage.AuditEvent) {
	e = p.stamp(e)
	if rt == nil {
		p.Logger.Error("audit event not stored: storage is not open", zap.String("event", e.Event))
	} else if err := rt.store.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
		p.Logger.Error("writing audit event", zap.String("event", e.Event), zap.Error(err))
	}
	p.announce(ctx, rt, e)
}

// stamp gives e its time, when it has none yet.
func (p *Portal) stamp(e storage.AuditEvent) storage.AuditEvent {
	if e.Time.IsZero() {
		e.Time = p.Now()
	}
	return e
}

// announce is what follows an audit event's being stored: it is counted,
// logged, and sent to the workspace's webhooks.
func (p *Portal) announce(ctx context.Context, rt *runtime, e storage.AuditEvent) {
	p.Metrics.count(e.Event, e.Workspace, e.Method)
	logged := ""
	switch {
	case e.Event == EventCodeNotSent:
		// An address that is no contact is nobody's to log.
	case p.LogFullEmails:
		logged = e.Email
	case e.Email != "":
		logged = maskEmail(e.Email)
	}
	p.AuditLog.Info(e.Event,
		zap.String("workspace", e.Workspace),
		zap.String("contact_id", e.ContactID),
		zap.String("email", logged),
		zap.String("method", e.Method),
		zap.String("client_ip", e.ClientIP),
		zap.String("user_agent", e.UserAgent),
		zap.String("actor", e.Actor),
		zap.String("reason", e.Reason))
	if rt != nil {
		p.queueWebhooks(ctx, rt, e)
	}
}

// errUnavailable means storage is not open (yet) or cannot be reached.
var errUnavailable = errors.New("portal storage is not available")

// peerIP is the connection's peer address, the default ClientIP.
func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
