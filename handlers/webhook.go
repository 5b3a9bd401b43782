package handlers

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
)

// Events out: a workspace's webhooks receive the audit events they chose,
// as JSON {"type","timestamp","data"} signed per the Standard Webhooks
// specification (webhook-id, webhook-timestamp, webhook-signature), through
// the same persistent outbox as mail: never inside the request, retried
// with backoff, at least once, surviving restarts, and delivered by one
// instance when several share Redis.

// Webhook is one receiver of a workspace's events.
type Webhook struct {
	// URL receives a POST per event.
	URL string
	// Key is the signing key: the base64 part of a "whsec_…" secret,
	// decoded.
	Key []byte
	// Events are the event types it receives: sign_in (any method),
	// sign_out, session_revoked, contact_deprovisioned, link_created, or
	// any audit event name.
	Events []string
}

// Webhook event types beyond the audit event names.
const (
	WebhookSignIn  = "sign_in"
	WebhookSignOut = "sign_out"
)

// webhookTypes are the webhook types an audit event is delivered as: its
// own name, and the product-level type it stands for.
func webhookTypes(event string) []string {
	switch event {
	case EventCodeAccepted, EventSSOSuccess:
		return []string{event, WebhookSignIn}
	case EventSessionEnded:
		return []string{event, WebhookSignOut}
	}
	return []string{event}
}

// wants reports which of types the webhook receives, "" for none.
func (h *Webhook) wants(types []string) string {
	for _, t := range types {
		if slices.Contains(h.Events, t) {
			return t
		}
	}
	return ""
}

// ParseWebhookSecret decodes a Standard Webhooks secret, "whsec_" and the
// base64 of at least 24 random bytes.
func ParseWebhookSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New(`must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("the part after whsec_ must be base64")
	}
	if len(key) < 24 {
		return nil, fmt.Errorf("the key is %d bytes; use at least 24 (openssl rand -base64 32)", len(key))
	}
	return key, nil
}

// kindWebhook is the outbox message kind of a webhook delivery.
const kindWebhook = "webhook"

// webhookJob is one event for one webhook, as queued.
type webhookJob struct {
	Workspace string `json:"workspace"`
	// Hook is the webhook's URL: a config whose webhooks changed drops
	// jobs for receivers it no longer has.
	Hook string `json:"hook"`
	// ID is the webhook-id: the same on every retry, so the receiver can
	// drop duplicates.
	ID string `json:"id"`
	// Contact orders a contact's events (see deliverWebhook).
	Contact string          `json:"contact,omitempty"`
	Body    json.RawMessage `json:"body"`
}

// webhookTTL is how long an event is retried before it is given up.
const webhookTTL = 24 * time.Hour

// queueWebhooks queues e for every webhook of its workspace that wants it.
func (p *Portal) queueWebhooks(ctx context.Context, rt *runtime, e storage.AuditEvent) {
	ws := p.Workspaces[e.Workspace]
	if ws == nil || len(ws.Webhooks) == 0 {
		return
	}
	if e.Event == EventWebhookFailed {
		// Never about itself: a failing receiver would loop.
		return
	}
	types := webhookTypes(e.Event)
	id := "msg_" + storage.SortableID(e.Time)
	for _, h := range ws.Webhooks {
		typ := h.wants(types)
		if typ == "" {
			continue
		}
		body, _ := json.Marshal(map[string]any{
			"type":      typ,
			"timestamp": e.Time.UTC().Format(time.RFC3339Nano),
			"data": map[string]any{
				"event":      e.Event,
				"workspace":  e.Workspace,
				"contact_id": e.ContactID,
				"email":      e.Email,
				"method":     e.Method,
				"client_ip":  e.ClientIP,
				"user_agent": e.UserAgent,
				"reason":     e.Reason,
			},
		})
		job, _ := json.Marshal(webhookJob{Workspace: e.Workspace, Hook: h.URL, ID: id, Contact: e.ContactID, Body: body})
		if e.ContactID != "" {
			p.webhooks.queued(lane(h.URL, e.ContactID), id)
		}
		if err := rt.store.Enqueue(context.WithoutCancel(ctx), storage.OutboxMessage{Kind: kindWebhook, Payload: job, NotAfter: e.Time.Add(webhookTTL)}); err != nil {
			p.Logger.Error("queueing webhook", zap.String("event", e.Event), zap.String("webhook", h.URL), zap.Error(err))
			continue
		}
		if p.outbox != nil {
			p.outbox.Wake()
		}
	}
}

// webhookOrder keeps a contact's events in order: each webhook and
// contact is a lane, and an event waits until the events queued before it
// in its lane on this instance are delivered or given up. (Events queued
// by another instance, or before a restart, are not held back.)
type webhookOrder struct {
	mu      sync.Mutex
	pending map[string][]string // lane → webhook-ids, oldest first
}

func lane(hook, contact string) string { return hook + "\x00" + contact }

// queued notes an event's place in its lane.
func (o *webhookOrder) queued(lane, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending == nil {
		o.pending = map[string][]string{}
	}
	o.pending[lane] = append(o.pending[lane], id)
}

// behind reports whether an earlier event of the lane is still pending.
func (o *webhookOrder) behind(lane, id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := o.pending[lane]
	return len(ids) > 0 && ids[0] != id && slices.Contains(ids, id)
}

// done takes an event out of its lane.
func (o *webhookOrder) done(lane, id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ids := slices.DeleteFunc(o.pending[lane], func(s string) bool { return s == id })
	if len(ids) == 0 {
		delete(o.pending, lane)
	} else {
		o.pending[lane] = ids
	}
}

// deliverWebhook posts one event. A 2xx answer delivers it; anything else
// is retried by the outbox until webhookTTL.
func (p *Portal) deliverWebhook(ctx context.Context, m storage.OutboxMessage) error {
	var job webhookJob
	if err := json.Unmarshal(m.Payload, &job); err != nil {
		return fmt.Errorf("%w: decoding webhook job: %v", mail.ErrPermanent, err)
	}
	ws := p.Workspaces[job.Workspace]
	var hook *Webhook
	if ws != nil {
		for _, h := range ws.Webhooks {
			if h.URL == job.Hook {
				hook = h
			}
		}
	}
	if hook == nil {
		return fmt.Errorf("%w: webhook %s is no longer configured", mail.ErrPermanent, job.Hook)
	}
	ln := lane(job.Hook, job.Contact)
	if job.Contact != "" && p.webhooks.behind(ln, job.ID) {
		return fmt.Errorf("an earlier event of this contact is still pending: %w", errWebhookBehind)
	}
	now := p.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(job.Body))
	if err != nil {
		return fmt.Errorf("%w: %v", mail.ErrPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "portalgate-webhooks")
	req.Header.Set("webhook-id", job.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", signWebhook(hook.Key, job.ID, ts, job.Body))
	resp, err := p.webhookClient().Do(withConnectTime(req))
	if err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			err = fmt.Errorf("webhook %s answered %s", hook.URL, resp.Status)
		}
	}
	if err == nil {
		p.webhooks.done(ln, job.ID)
		if p.Metrics != nil {
			p.Metrics.webhooksSent.WithLabelValues(job.Workspace).Inc()
		}
	}
	return err
}

// outboxLane is the outbox's concurrency lane of a message: its kind, and
// for a webhook the receiver's URL, so that one slow or dead receiver
// slows its own deliveries only.
func outboxLane(m storage.OutboxMessage) string {
	if m.Kind != kindWebhook {
		return m.Kind
	}
	var job struct {
		Hook string `json:"hook"`
	}
	_ = json.Unmarshal(m.Payload, &job) // a job that does not decode fails in deliverWebhook
	return kindWebhook + " " + job.Hook
}

// webhookGivenUp frees the contact's lane of a webhook the outbox stopped
// retrying.
func (p *Portal) webhookGivenUp(m storage.OutboxMessage) (job webhookJob) {
	_ = json.Unmarshal(m.Payload, &job)
	p.webhooks.done(lane(job.Hook, job.Contact), job.ID)
	return job
}

// errWebhookBehind defers an event behind its contact's failing one.
var errWebhookBehind = fmt.Errorf("waiting for an earlier event: %w", mail.ErrDeferred)

// signWebhook is the Standard Webhooks signature: "v1," and the base64
// HMAC-SHA256 of "id.timestamp.body".
func signWebhook(key []byte, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func (p *Portal) webhookClient() *http.Client {
	if p.HTTPClient != nil {
		return p.HTTPClient
	}
	return webhookHTTP
}

// webhookHTTP keeps as many idle connections to a receiver as the outbox
// has webhooks under way.
var webhookHTTP = &http.Client{Timeout: 10 * time.Second, Transport: keepAliveTransport()}

// keepAliveTransport is Go's default transport keeping up to
// mail.MaxConcurrency idle connections to a host, where the default keeps
// 2: after a burst of requests at once (webhooks to a receiver, SSO
// callbacks exchanging codes at the provider) it closed the rest, and the
// next burst opened them again, a TCP and TLS handshake each.
func keepAliveTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = mail.MaxConcurrency
	return t
}

// withConnectTime reports the time req spends opening a new connection
// (DNS, TCP, TLS) to the outbox, which leaves it out of the delivery's
// latency (mail.WithReport). GotConn without a GetConn before it (an
// HTTP/2 connection already open, handed over directly; HTTP/2's own
// retry) opened nothing for this request.
func withConnectTime(req *http.Request) *http.Request {
	ctx := req.Context()
	var asked time.Time
	return req.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { asked = time.Now() },
		GotConn: func(c httptrace.GotConnInfo) {
			if !c.Reused && !asked.IsZero() {
				mail.AddSetup(ctx, time.Since(asked))
			}
			asked = time.Time{}
		},
	}))
}
