// Package handlers holds portalgate's HTTP flows: the gate in front of the
// portal, sign-in with an emailed code, personalized links, sign-out and the
// error pages. It talks to state only through storage.Store.
package handlers

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
)

// Workspace is one portal's resolved configuration.
type Workspace struct {
	Name  string
	Title string
	// URL is the public base used in emailed links.
	URL *url.URL
	// AuthPath is the reserved prefix of the sign-in pages, like "/_portal".
	AuthPath string
	// CodeTTL is how long an emailed code works.
	CodeTTL time.Duration
	// ResendCooldown is the wait between two code emails to one address.
	ResendCooldown time.Duration
	// SessionTTL is the absolute lifetime of a session.
	SessionTTL time.Duration
	// SessionIdle ends a session after this long without a request.
	SessionIdle time.Duration
	// LinkTTL and LinkMaxTTL are the default and longest lifetimes of a
	// personalized link.
	LinkTTL, LinkMaxTTL time.Duration
	// Disabled shows "Portal unavailable" to everyone.
	Disabled bool
	// SSODirectoryMatch limits SSO to contacts synced from a directory.
	SSODirectoryMatch bool
	// SSO are the single sign-on providers, in the order of their buttons.
	SSO []*SSOProvider
}

// Limits are the rate limits on code sends and tries.
type Limits struct {
	// SendsPerEmail, SendsPerIP and SendsPerWorkspace cap code requests
	// per Window.
	SendsPerEmail, SendsPerIP, SendsPerWorkspace int
	// TriesPerIP and TriesPerWorkspace cap code entries per Window.
	TriesPerIP, TriesPerWorkspace int
	Window                        time.Duration
}

// DefaultLimits are used for zero fields of Limits.
var DefaultLimits = Limits{
	SendsPerEmail:     5,
	SendsPerIP:        30,
	SendsPerWorkspace: 2000,
	TriesPerIP:        60,
	TriesPerWorkspace: 5000,
	Window:            10 * time.Minute,
}

// MaxCodeTries is how many wrong codes kill a code.
const MaxCodeTries = 5

// Portal is everything the flows of one Caddy config share: workspaces,
// state, mail and keys.
type Portal struct {
	Workspaces map[string]*Workspace
	Sender     mail.Sender
	Pages      *Pages
	Logger     *zap.Logger
	// AuditLog receives every audit event too.
	AuditLog *zap.Logger
	Limits   Limits
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ConfiguredSecret, when set, is used instead of the stored one.
	ConfiguredSecret []byte
	// OutboxWorkers is the number of concurrent mail deliveries.
	OutboxWorkers int
	// Metrics, when set, count sign-ins, mail and gate decisions.
	Metrics *Metrics

	state     atomic.Pointer[started]
	outage    atomic.Bool
	stopping  chan struct{}
	outbox    *mail.Outbox
	readyOnce sync.Once
	ready     chan struct{}
}

// readyChan is closed once Start has opened storage.
func (p *Portal) readyChan() chan struct{} {
	p.readyOnce.Do(func() { p.ready = make(chan struct{}) })
	return p.ready
}

// storeWait returns the open store, waiting a little for Start: Caddy may
// start the HTTP server a moment before the portal app has opened storage.
func (p *Portal) storeWait(ctx context.Context) storage.Store {
	if s := p.Store(); s != nil {
		return s
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
	return p.Store()
}

// started is what exists only once Start has opened storage.
type started struct {
	store  storage.Store
	secret []byte
}

// Start makes the portal serve: it takes the opened store, loads or creates
// the secret and starts the outbox workers.
func (p *Portal) Start(store storage.Store) error {
	if p.Now == nil {
		p.Now = time.Now
	}
	if p.Logger == nil {
		p.Logger = zap.NewNop()
	}
	if p.AuditLog == nil {
		p.AuditLog = p.Logger
	}
	p.Limits = p.Limits.withDefaults()
	p.stopping = make(chan struct{})
	if err := p.loadSecret(store); err != nil {
		if !errors.Is(err, storage.ErrUnavailable) {
			return err
		}
		// Storage that cannot be reached yet (Redis down) must not stop
		// Caddy: fail closed and keep trying.
		p.storageDown("loading secret", err)
		go p.retry(func() error { return p.loadSecret(store) })
	}
	for _, ws := range p.Workspaces {
		for _, sp := range ws.SSO {
			sp.Warm(p.Logger)
		}
	}
	p.outbox = &mail.Outbox{
		Store:   store,
		Deliver: p.deliver,
		GiveUp:  p.giveUp,
		Workers: p.OutboxWorkers,
		Logger:  p.Logger.Named("outbox"),
		Now:     p.Now,
	}
	p.outbox.Start()
	return nil
}

// loadSecret loads (or creates) the instance secret and makes the portal
// serve.
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
	p.state.Store(&started{store: store, secret: secret})
	p.storageUp()
	select {
	case <-p.readyChan():
	default:
		close(p.readyChan())
	}
	return nil
}

// retry runs fn every few seconds until it succeeds or the portal stops.
func (p *Portal) retry(fn func() error) {
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stopping:
			return
		case <-t.C:
			if fn() == nil {
				return
			}
		}
	}
}

// storageDown logs a storage outage once.
func (p *Portal) storageDown(what string, err error) {
	if p.outage.CompareAndSwap(false, true) {
		p.Logger.Error("portal storage unavailable: failing closed until it answers again", zap.String("during", what), zap.Error(err))
	}
}

// storageUp logs the end of an outage once.
func (p *Portal) storageUp() {
	if p.outage.Load() && p.outage.CompareAndSwap(true, false) {
		p.Logger.Info("portal storage answers again")
	}
}

// Stop ends the outbox workers; queued mail stays in storage.
func (p *Portal) Stop() {
	if p.stopping != nil {
		close(p.stopping)
	}
	if p.outbox != nil {
		p.outbox.Stop()
	}
	p.state.Store(nil)
}

// Store returns the open store, or nil before Start.
func (p *Portal) Store() storage.Store {
	if rt := p.state.Load(); rt != nil {
		return rt.store
	}
	return nil
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	pick := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	l.SendsPerEmail = pick(l.SendsPerEmail, d.SendsPerEmail)
	l.SendsPerIP = pick(l.SendsPerIP, d.SendsPerIP)
	l.SendsPerWorkspace = pick(l.SendsPerWorkspace, d.SendsPerWorkspace)
	l.TriesPerIP = pick(l.TriesPerIP, d.TriesPerIP)
	l.TriesPerWorkspace = pick(l.TriesPerWorkspace, d.TriesPerWorkspace)
	if l.Window <= 0 {
		l.Window = d.Window
	}
	return l
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
)

// Audit records an event in storage and in the audit log. It never fails
// the request: a lost audit entry is logged as an error.
func (p *Portal) Audit(ctx context.Context, e storage.AuditEvent) {
	if e.Time.IsZero() {
		e.Time = p.Now()
	}
	p.Metrics.count(e.Event, e.Workspace, e.Method)
	p.AuditLog.Info(e.Event,
		zap.String("workspace", e.Workspace),
		zap.String("contact_id", e.ContactID),
		zap.String("email", e.Email),
		zap.String("method", e.Method),
		zap.String("client_ip", e.ClientIP),
		zap.String("user_agent", e.UserAgent),
		zap.String("reason", e.Reason))
	if s := p.Store(); s != nil {
		if err := s.AppendAudit(context.WithoutCancel(ctx), e); err != nil {
			p.Logger.Error("writing audit event", zap.String("event", e.Event), zap.Error(err))
		}
	}
}

// writeJSON answers an API call.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errUnavailable means storage is not open (yet) or cannot be reached.
var errUnavailable = errors.New("portal storage is not available")
