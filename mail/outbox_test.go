package mail_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kdesk/portalgate/integration/e2e"
	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
)

// TestOutboxLogsAnOutageOnce: while delivery fails, the first failed
// attempt is logged and the others only counted; the first success after
// it logs the end of the outage with the count.
func TestOutboxLogsAnOutageOnce(t *testing.T) {
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	core, logs := observer.New(zap.InfoLevel)
	var down atomic.Bool
	down.Store(true)
	var sent atomic.Int32
	o := &mail.Outbox{
		Store: store, Workers: 2, Poll: 10 * time.Millisecond, Logger: zap.New(core),
		Deliver: func(context.Context, storage.OutboxMessage) ([]storage.AuditEvent, error) {
			if down.Load() {
				return nil, errors.New("451 try again later")
			}
			sent.Add(1)
			return nil, nil
		},
	}
	ctx := context.Background()
	for range 5 {
		if err := store.Enqueue(ctx, storage.OutboxMessage{Kind: "code", Payload: []byte("{}"), NotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	o.Start(ctx)
	defer o.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for len(logs.FilterMessageSnippet("delivery failing").All()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // more failed attempts (backoff 1 s, 2 s)
	down.Store(false)
	for sent.Load() < 5 && time.Now().Before(deadline.Add(20*time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if sent.Load() != 5 {
		t.Fatalf("%d of 5 messages delivered after the outage", sent.Load())
	}
	if n := len(logs.FilterMessageSnippet("delivery failing").All()); n != 1 {
		t.Fatalf("the outage was logged %d times, want once", n)
	}
	ends := logs.FilterMessageSnippet("delivery works again").All()
	if len(ends) != 1 {
		t.Fatalf("the recovery was logged %d times, want once", len(ends))
	}
	if n, _ := ends[0].ContextMap()["failed_attempts"].(int64); n < 5 {
		t.Fatalf("recovery counted %d failed attempts, want at least 5", n)
	}
}

// stalledClaims is a store whose claims wait until they are cancelled, as
// a Redis call does when the outbox stops in the middle of it.
type stalledClaims struct {
	storage.Outbox
	claiming chan struct{}
}

func (s stalledClaims) ClaimOutbox(ctx context.Context, _ time.Duration, _ int) ([]storage.OutboxMessage, error) {
	select {
	case s.claiming <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, fmt.Errorf("redis: %w: %w", storage.ErrUnavailable, ctx.Err())
}

// TestOutboxStopIsNoOutage: a claim cut short by Stop logs nothing.
func TestOutboxStopIsNoOutage(t *testing.T) {
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	core, logs := observer.New(zap.InfoLevel)
	claims := stalledClaims{Outbox: store, claiming: make(chan struct{}, 1)}
	o := &mail.Outbox{Store: claims, Workers: 2, Poll: 10 * time.Millisecond, Logger: zap.New(core),
		Deliver: func(context.Context, storage.OutboxMessage) ([]storage.AuditEvent, error) { return nil, nil }}
	o.Start(context.Background())
	select {
	case <-claims.claiming:
	case <-time.After(10 * time.Second):
		t.Fatal("the outbox did not claim")
	}
	o.Stop()
	if logs.Len() != 0 {
		t.Errorf("stopping mid-claim logged %v", logs.All())
	}
}

// TestOutboxStoresDeliveryEvents: the audit events a delivery returns are
// stored with the message's acknowledgement, then announced; a failed
// attempt stores none.
func TestOutboxStoresDeliveryEvents(t *testing.T) {
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	var attempts atomic.Int32
	announced := make(chan []storage.AuditEvent, 1)
	o := &mail.Outbox{
		Store: store, Workers: 1, Poll: 10 * time.Millisecond, Logger: zap.NewNop(),
		Deliver: func(_ context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error) {
			if attempts.Add(1) == 1 {
				return []storage.AuditEvent{{Workspace: "acme", Event: "never_stored"}}, errors.New("451 try again later")
			}
			return []storage.AuditEvent{{Time: time.Now(), Workspace: "acme", Event: "code_sent", ContactID: "c-1"}}, nil
		},
		Announce: func(es []storage.AuditEvent) { announced <- es },
	}
	ctx := context.Background()
	if err := store.Enqueue(ctx, storage.OutboxMessage{Kind: "code", Payload: []byte("{}"), NotAfter: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	o.Start(ctx)
	defer o.Stop()
	o.Wake()
	// The retry after the failed attempt comes after its backoff (2 s).
	select {
	case es := <-announced:
		if len(es) != 1 || es[0].Event != "code_sent" {
			t.Fatalf("announced %+v, want the code_sent", es)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery announced")
	}
	if n, err := store.OutboxLen(ctx); err != nil || n != 0 {
		t.Fatalf("outbox after the delivery: %d messages (%v), want 0", n, err)
	}
	events, _, err := store.Audit(ctx, storage.AuditQuery{Workspace: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Event != "code_sent" || events[0].ContactID != "c-1" {
		t.Fatalf("audit trail %+v, want the one code_sent of the delivery", events)
	}
}

// deliverCounting is an outbox's Deliver that sends each message through
// s and keeps the most deliveries it saw under way at once.
func deliverCounting(s *mail.SMTP, most *atomic.Int32) func(context.Context, storage.OutboxMessage) ([]storage.AuditEvent, error) {
	var under atomic.Int32
	return func(ctx context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error) {
		n := under.Add(1)
		defer under.Add(-1)
		for {
			seen := most.Load()
			if n <= seen || most.CompareAndSwap(seen, n) {
				break
			}
		}
		return nil, s.Send(ctx, mail.Message{To: "p@acme.example", Subject: "Your sign-in code", Text: m.ID})
	}
}

// fillOutbox opens a Badger store with n code messages waiting.
func fillOutbox(t *testing.T, n int) storage.Store {
	t.Helper()
	store, err := badgerstore.Open(t.TempDir(), badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	for range n {
		if err := store.Enqueue(context.Background(), storage.OutboxMessage{Kind: "code", Payload: []byte("{}"), NotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// outboxToRelay is an outbox, not started, with n code messages waiting
// and a Deliver that sends them to a real SMTP server whose replies take
// delay; most counts the deliveries under way at once.
func outboxToRelay(t *testing.T, n int, delay time.Duration, workers int) (*e2e.Mailbox, *mail.Outbox, *atomic.Int32) {
	t.Helper()
	mb := startMailbox(t)
	s := smtpAt(t, mb.Addr, 0, 5*time.Second)
	mb.Delay(delay)
	most := new(atomic.Int32)
	o := &mail.Outbox{Store: fillOutbox(t, n), Workers: workers, Poll: 10 * time.Millisecond, Logger: zap.NewNop(), Deliver: deliverCounting(s, most)}
	return mb, o, most
}

// TestOutboxAdaptsToAFarRelay: against a real SMTP server whose replies
// take 20 ms (a relay across a network), the outbox at its defaults has
// more deliveries under way than the 4 it starts with, and the pool opens
// connections for them: 600 codes do not wait 600 × 20 ms / 4.
func TestOutboxAdaptsToAFarRelay(t *testing.T) {
	const n = 600
	mb, o, most := outboxToRelay(t, n, 20*time.Millisecond, 0)
	o.OnAttemptFailed = func(m storage.OutboxMessage, err error) { t.Errorf("attempt failed: %v", err) }
	start := time.Now()
	o.Start(context.Background())
	defer o.Stop()
	for mb.Count() < n && time.Since(start) < 60*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	if mb.Count() != n {
		t.Fatalf("%d of %d messages delivered in %s", mb.Count(), n, took)
	}
	t.Logf("%d messages in %s; at most %d under way, the limit now %d", n, took, most.Load(), o.Concurrency("code"))
	if most.Load() <= 8 {
		t.Fatalf("at most %d deliveries under way against a relay 20 ms away, want more than 8", most.Load())
	}
}

// TestOutboxWorkersFixTheConcurrency: with Workers set, no more than that
// many deliveries are under way, however far the relay.
func TestOutboxWorkersFixTheConcurrency(t *testing.T) {
	const n = 60
	mb, o, most := outboxToRelay(t, n, 5*time.Millisecond, 3)
	o.Start(context.Background())
	defer o.Stop()
	waitFor(t, "every message delivered", func() bool { return mb.Count() == n })
	if most.Load() != 3 || o.Concurrency("code") != 3 {
		t.Fatalf("at most %d under way, the limit %d; want 3 and 3", most.Load(), o.Concurrency("code"))
	}
}

// TestOutboxLimitSurvivesReconnects: after a quiet spell long enough for
// the connections to close, the next burst's deliveries open new ones
// (for SMTP: the greeting and EHLO, two more round trips each). That is
// setup, not a queue: the limit the outbox had learned holds, instead of
// falling by one for every delivery that had to connect first (from 32
// to 7, before deliveries reported their setup). The connections are
// simulated with sleeps, so that the machine's load does not move the
// latencies; TestSMTPPoolReportsSetup checks the pool's report.
func TestOutboxLimitSurvivesReconnects(t *testing.T) {
	const first, second = 300, 150 // together fewer than a probe's 500 samples
	const transaction, connect = 50 * time.Millisecond, 150 * time.Millisecond
	var mu sync.Mutex
	idle := 0 // open connections not in use
	deliver := func(ctx context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error) {
		mu.Lock()
		fresh := idle == 0
		if !fresh {
			idle--
		}
		mu.Unlock()
		if fresh {
			start := time.Now()
			time.Sleep(connect)
			mail.AddSetup(ctx, time.Since(start))
		}
		time.Sleep(transaction)
		mu.Lock()
		idle++
		mu.Unlock()
		return nil, nil
	}
	store := fillOutbox(t, first)
	var delivered atomic.Int32
	o := &mail.Outbox{Store: store, Poll: 10 * time.Millisecond, Logger: zap.NewNop(), Deliver: deliver,
		OnDone: func(storage.OutboxMessage) { delivered.Add(1) }}
	o.Start(context.Background())
	defer o.Stop()
	waitFor(t, "the first burst delivered", func() bool { return delivered.Load() == first })
	learned := o.Concurrency("code")
	if learned < 16 {
		t.Fatalf("the limit is %d after %d deliveries of %s each, want 16 or more", learned, first, transaction)
	}
	mu.Lock()
	idle = 0 // the quiet spell: every connection closed
	mu.Unlock()
	for range second {
		if err := store.Enqueue(context.Background(), storage.OutboxMessage{Kind: "code", Payload: []byte("{}"), NotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	o.Wake()
	lowest := learned
	deadline := time.Now().Add(30 * time.Second)
	for delivered.Load() < first+second && time.Now().Before(deadline) {
		lowest = min(lowest, o.Concurrency("code"))
		time.Sleep(time.Millisecond)
	}
	if n := delivered.Load(); n != first+second {
		t.Fatalf("%d of %d delivered", n, first+second)
	}
	t.Logf("limit %d after the first burst, at least %d during the second", learned, lowest)
	if lowest < learned/2 {
		t.Fatalf("the limit fell from %d to %d while the connections were opened again", learned, lowest)
	}
}

// TestOutboxNothingSentIsNoSample: deliveries that send nothing (a code
// asked for an address that is no contact, a send over its limit) take
// microseconds. They say nothing about the relay; taken as samples they
// would become the unloaded latency, and every real delivery would look
// queued: with half the codes for unknown addresses the limit against a
// relay 20 ms away stayed at 4 or below.
func TestOutboxNothingSentIsNoSample(t *testing.T) {
	const n = 400
	store := fillOutbox(t, 0)
	for i := range n {
		payload := []byte(`{"to":"contact"}`)
		if i%2 == 1 {
			payload = []byte(`{"to":"nobody"}`)
		}
		if err := store.Enqueue(context.Background(), storage.OutboxMessage{Kind: "code", Payload: payload, NotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	var done, most, under atomic.Int32
	deliver := func(ctx context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error) {
		if string(m.Payload) == `{"to":"nobody"}` {
			mail.MarkNothingSent(ctx)
			return nil, nil
		}
		k := under.Add(1)
		defer under.Add(-1)
		for seen := most.Load(); k > seen && !most.CompareAndSwap(seen, k); seen = most.Load() {
		}
		time.Sleep(20 * time.Millisecond) // a relay 20 ms away
		return nil, nil
	}
	o := &mail.Outbox{Store: store, Poll: 10 * time.Millisecond, Logger: zap.NewNop(), Deliver: deliver,
		OnDone: func(storage.OutboxMessage) { done.Add(1) }}
	o.Start(context.Background())
	defer o.Stop()
	waitFor(t, "every message done", func() bool { return done.Load() == n })
	t.Logf("at most %d real deliveries under way, the limit now %d", most.Load(), o.Concurrency("code"))
	if most.Load() <= 8 {
		t.Fatalf("at most %d real deliveries under way against a relay 20 ms away, want more than 8", most.Load())
	}
}

// TestOutboxCodesPassADeadReceiver: 100 webhooks for a receiver that
// times out, queued before 20 codes. The webhooks' lane overflows back to
// the store once twice its limit wait for a slot, so they hold a few
// workers, not all of them, and the codes go out at once. Before, every
// worker waited on the webhooks' lane and no code left in 30 s.
func TestOutboxCodesPassADeadReceiver(t *testing.T) {
	store := fillOutbox(t, 0)
	enqueue := func(kind string, n int) {
		for range n {
			if err := store.Enqueue(context.Background(), storage.OutboxMessage{Kind: kind, Payload: []byte("{}"), NotAfter: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	enqueue("webhook", 100)
	time.Sleep(5 * time.Millisecond) // the codes are due after every webhook
	enqueue("code", 20)
	var codes atomic.Int32
	deliver := func(ctx context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error) {
		if m.Kind == "webhook" {
			select {
			case <-time.After(2 * time.Second): // the receiver's timeout
			case <-ctx.Done():
			}
			return nil, errors.New("webhook receiver timed out")
		}
		codes.Add(1)
		return nil, nil
	}
	o := &mail.Outbox{Store: store, Poll: 10 * time.Millisecond, Logger: zap.NewNop(), Deliver: deliver,
		Overflow: func(m storage.OutboxMessage) bool { return m.Kind == "webhook" },
		GiveUp:   func(m storage.OutboxMessage, err error) { t.Errorf("gave up %s: %v", m.Kind, err) }}
	start := time.Now()
	o.Start(context.Background())
	defer o.Stop()
	waitFor(t, "the codes delivered", func() bool { return codes.Load() == 20 })
	took := time.Since(start)
	t.Logf("20 codes delivered %s after start, behind 100 webhooks to a receiver that times out", took)
	if took > time.Second {
		t.Fatalf("the codes took %s behind a dead webhook receiver", took)
	}
}

// TestOutboxReleasesAtStop: a message claimed but not yet delivered when
// the outbox stops goes back due at once, marked mail.Released, so that
// the next process counts it as a first attempt (a code's send limits).
func TestOutboxReleasesAtStop(t *testing.T) {
	store := fillOutbox(t, 2)
	claims := &claimCount{Store: store}
	started := make(chan struct{}, 2)
	o := &mail.Outbox{Store: claims, Workers: 1, Poll: 10 * time.Millisecond, Logger: zap.NewNop(),
		Deliver: func(ctx context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error) {
			started <- struct{}{}
			<-ctx.Done() // a relay that does not answer before the stop
			return nil, ctx.Err()
		}}
	o.Start(context.Background())
	<-started
	waitFor(t, "the second message claimed, waiting for the worker", func() bool { return claims.claimed.Load() == 2 })
	o.Stop()
	msgs, err := store.ClaimOutbox(context.Background(), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	var released int
	for _, m := range msgs {
		if m.LastError == mail.Released {
			released++
		}
	}
	if len(msgs) != 1 || released != 1 {
		t.Fatalf("claimable after the stop: %d messages, %d of them released; want the waiting one, released", len(msgs), released)
	}
}

// claimCount is a store that counts the messages claimed from it.
type claimCount struct {
	storage.Store
	claimed atomic.Int32
}

func (s *claimCount) ClaimOutbox(ctx context.Context, lease time.Duration, n int) ([]storage.OutboxMessage, error) {
	msgs, err := s.Store.ClaimOutbox(ctx, lease, n)
	s.claimed.Add(int32(len(msgs)))
	return msgs, err
}
