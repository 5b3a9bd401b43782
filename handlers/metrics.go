package handlers

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are portalgate's Prometheus metrics, registered with Caddy's
// metrics registry so they appear on its metrics endpoint.
type Metrics struct {
	signIns      *prometheus.CounterVec
	codesSent    *prometheus.CounterVec
	mailFailures *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	gate         *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg. queueDepth is read at scrape
// time.
func NewMetrics(reg prometheus.Registerer, queueDepth func() float64) (*Metrics, error) {
	const ns = "portalgate"
	m := &Metrics{
		signIns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "signins_total",
			Help: "Sign-in attempts by workspace, method (code, link, sso:<provider>) and outcome (success, failure)."},
			[]string{"workspace", "method", "outcome"}),
		codesSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "codes_sent_total",
			Help: "Sign-in code emails handed to the mail server."}, []string{"workspace"}),
		mailFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "mail_failures_total",
			Help: "Code emails given up after a permanent failure or their code expired."}, []string{"workspace"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rate_limited_total",
			Help: "Code sends and tries refused by a rate limit."}, []string{"workspace"}),
		gate: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "gate_decisions_total",
			Help: "Requests at the gate by decision: pass, signin_redirect, api_unauthorized, unavailable."},
			[]string{"workspace", "decision"}),
	}
	for _, c := range []prometheus.Collector{m.signIns, m.codesSent, m.mailFailures, m.rateLimited, m.gate,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "mail_queue_depth",
			Help: "Messages waiting in the mail outbox."}, queueDepth),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
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
