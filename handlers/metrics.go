package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kdesk/portalgate/storage"
)

// Metrics are portalgate's Prometheus metrics, registered with Caddy's
// metrics registry so they appear on its metrics endpoint.
type Metrics struct {
	signIns             *prometheus.CounterVec
	codesSent           *prometheus.CounterVec
	mailFailures        *prometheus.CounterVec
	mailAttemptFailures *prometheus.CounterVec
	rateLimited         *prometheus.CounterVec
	gate                *prometheus.CounterVec
	webhooksSent        *prometheus.CounterVec
	webhookFailures     *prometheus.CounterVec
}

// gateDecisions are the values of gate_decisions_total's decision label.
var gateDecisions = []string{"pass", "signin_redirect", "api_unauthorized", "unavailable"}

// NewMetrics registers the metrics with reg. Every series of every
// workspace of p exists from the start, at 0, so that an alert on a rate
// or an absence works before the first event. The gauges read p at
// scrape time.
func NewMetrics(reg prometheus.Registerer, p *Portal) (*Metrics, error) {
	const ns = "portalgate"
	m := &Metrics{
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "signins_total",
			Help: "Sign-in attempts by workspace, method (code, link, sso:<provider>) and outcome (success, failure)."},
			[]string{"workspace", "method", "outcome"}),
		codesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "codes_sent_total",
			Help: "Sign-in code emails handed to the mail server."}, []string{"workspace"}),
		mailFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "mail_failures_total",
			Help: "Code emails given up after a permanent failure or their code expired."}, []string{"workspace"}),
		mailAttemptFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "mail_attempt_failures_total",
			Help: "Failed delivery attempts of code emails, retried or not, as they happen."}, []string{"workspace"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rate_limited_total",
			Help: "Code sends and tries refused by a rate limit."}, []string{"workspace"}),
		webhooksSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhooks_sent_total",
			Help: "Events delivered to a webhook (answered 2xx)."}, []string{"workspace"}),
		webhookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "webhook_attempt_failures_total",
			Help: "Failed webhook delivery attempts, retried or not, as they happen."}, []string{"workspace"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "gate_decisions_total",
			Help: "Requests at the gate by decision: pass, signin_redirect, api_unauthorized, unavailable."},
			[]string{"workspace", "decision"}),
	}
	for name, ws := range p.Workspaces {
		methods := []string{"code", "link"}
		for _, sp := range ws.SSO {
			methods = append(methods, "sso:"+sp.Name)
		}
		for _, method := range methods {
			m.signIns.WithLabelValues(name, method, "success")
			m.signIns.WithLabelValues(name, method, "failure")
		}
		for _, c := range []*prometheus.CounterVec{m.codesSent, m.mailFailures, m.mailAttemptFailures, m.rateLimited, m.webhooksSent, m.webhookFailures} {
			c.WithLabelValues(name)
		}
		for _, d := range gateDecisions {
			m.gate.WithLabelValues(name, d)
		}
	}
	for _, c := range []prometheus.Collector{m.signIns, m.codesSent, m.mailFailures, m.mailAttemptFailures, m.rateLimited, m.gate,
		m.webhooksSent, m.webhookFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "mail_queue_depth",
			Help: "Messages waiting in the mail outbox."}, p.QueueDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "mail_concurrency",
			Help: "Code emails this instance may have under way at once: outbox_workers, or what the outbox adapted to."}, p.MailConcurrency),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "mail_oldest_queued_seconds",
			Help: "Age of the oldest message this instance has failed to deliver and is still retrying; 0 when none."}, p.OldestQueued),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// MailDelayed reports whether mail delivery is failing: the latest
// attempt failed and none has succeeded since. The code page then says
// that the code may be delayed.
func (p *Portal) MailDelayed() bool {
	return p.MailFailing != nil && p.MailFailing()
}

// backlog is the messages whose delivery failed and that are still being
// retried, for mail_oldest_queued_seconds. The outbox tells it about every
// failed attempt and every message that leaves; the store is not asked at
// scrape time.
type backlog struct {
	mu sync.Mutex
	// waiting holds each message's creation and latest failure.
	waiting map[string][2]time.Time
}

// backlogForget is how long after its latest failure seen here a message
// is forgotten: by then it has been retried (backoff at most 5 minutes,
// lease 2), so if this instance did not see that retry another instance
// sharing the store did, and will report it.
const backlogForget = 10 * time.Minute

// attemptFailed is the outbox's OnAttemptFailed.
func (p *Portal) attemptFailed(m storage.OutboxMessage, err error) {
	if m.Kind == kindWebhook {
		if errors.Is(err, errWebhookBehind) {
			return // waiting its turn is no failure
		}
		var job webhookJob
		_ = json.Unmarshal(m.Payload, &job)
		if p.Metrics != nil {
			p.Metrics.webhookFailures.WithLabelValues(job.Workspace).Inc()
		}
		return
	}
	var job codeJob
	_ = json.Unmarshal(m.Payload, &job)
	if p.Metrics != nil {
		p.Metrics.mailAttemptFailures.WithLabelValues(job.Workspace).Inc()
	}
	p.backlog.mu.Lock()
	defer p.backlog.mu.Unlock()
	if p.backlog.waiting == nil {
		p.backlog.waiting = map[string][2]time.Time{}
	}
	p.backlog.waiting[m.ID] = [2]time.Time{m.CreatedAt, p.Now()}
}

// mailDone is the outbox's OnDone.
func (p *Portal) mailDone(m storage.OutboxMessage) {
	p.backlog.mu.Lock()
	defer p.backlog.mu.Unlock()
	delete(p.backlog.waiting, m.ID)
}

// OldestQueued is the age in seconds of the oldest message still waiting
// for a retry after a failed attempt, for mail_oldest_queued_seconds.
func (p *Portal) OldestQueued() float64 {
	if p.state.Load() == nil {
		return 0 // not started: nothing tried yet, and p.Now is not set
	}
	now := p.Now()
	p.backlog.mu.Lock()
	defer p.backlog.mu.Unlock()
	var oldest time.Time
	for id, w := range p.backlog.waiting {
		if now.Sub(w[1]) > backlogForget {
			delete(p.backlog.waiting, id)
			continue
		}
		if oldest.IsZero() || w[0].Before(oldest) {
			oldest = w[0]
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return max(now.Sub(oldest).Seconds(), 0)
}

// MailConcurrency is how many code emails may be under way at once now,
// for the mail_concurrency gauge.
func (p *Portal) MailConcurrency() float64 {
	if p.state.Load() == nil {
		return 0 // not started: the outbox may not exist yet
	}
	return float64(p.outbox.Concurrency(kindCode))
}

// QueueDepth reads the outbox length for the mail_queue_depth gauge.
func (p *Portal) QueueDepth() float64 {
	s := p.Store()
	if s == nil {
		return 0
	}
	n, err := s.OutboxLen(context.Background())
	if err != nil {
		return 0
	}
	return float64(n)
}

// count turns an audit event into metrics.
func (m *Metrics) count(event, workspace, method string) {
	if m == nil {
		return
	}
	switch event {
	case EventCodeAccepted, EventSSOSuccess:
		m.signIns.WithLabelValues(workspace, method, "success").Inc()
	case EventCodeRejected, EventSSOFailure:
		m.signIns.WithLabelValues(workspace, method, "failure").Inc()
	case EventCodeSent:
		m.codesSent.WithLabelValues(workspace).Inc()
	case EventMailFailed:
		m.mailFailures.WithLabelValues(workspace).Inc()
	case EventRateLimited:
		m.rateLimited.WithLabelValues(workspace).Inc()
	}
}

// gateCounters are one workspace's decision counters, resolved once so the
// hot path only increments.
type gateCounters struct {
	pass, redirect, api, unavailable prometheus.Counter
}

func (m *Metrics) gateCounters(workspace string) *gateCounters {
	if m == nil {
		return &gateCounters{}
	}
	return &gateCounters{
		pass:        m.gate.WithLabelValues(workspace, "pass"),
		redirect:    m.gate.WithLabelValues(workspace, "signin_redirect"),
		api:         m.gate.WithLabelValues(workspace, "api_unauthorized"),
		unavailable: m.gate.WithLabelValues(workspace, "unavailable"),
	}
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}
