package mail

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/kdesk/portalgate/storage"
)

// Outbox runs a pool of workers that claim messages from the store's outbox
// and hand them to Deliver. Temporary failures are retried with backoff
// until the message's NotAfter; permanent ones, and messages past NotAfter,
// are dropped and reported through GiveUp. A message is only removed after
// Deliver returns, so nothing queued is lost when the process stops.
type Outbox struct {
	// Store is where the messages wait: the outbox role of the store.
	Store storage.Outbox
	// Deliver does the work of one message. The audit events it returns
	// with success are stored with the message's acknowledgement (one
	// transaction where the store can), then handed to Announce.
	Deliver func(ctx context.Context, m storage.OutboxMessage) ([]storage.AuditEvent, error)
	// Announce, when set, is told about a delivered message's events once
	// the store was asked to take them with its acknowledgement.
	Announce func(events []storage.AuditEvent)
	// GiveUp is told about a message that will not be retried.
	GiveUp func(m storage.OutboxMessage, err error)
	// OnAttemptFailed, when set, is told about every failed delivery
	// attempt as it happens, whether it will be retried or given up.
	OnAttemptFailed func(m storage.OutboxMessage, err error)
	// OnDone, when set, is told about a message that left the outbox:
	// delivered, or given up.
	OnDone func(m storage.OutboxMessage)
	// Lane, when set, names the deliveries that share one concurrency
	// limit; default the message's Kind. Webhooks take one lane per
	// receiver: a slow or dead receiver then slows its own lane only,
	// where with one limit for all it halved the limit with each timeout
	// and held every other receiver's events behind its own.
	Lane func(m storage.OutboxMessage) string
	// Overflow, when set, says whether a message may go back to the
	// store, to be claimed again later, when its lane already has twice
	// its limit waiting for a slot; otherwise it waits, holding one of
	// the workers. Webhooks overflow: a receiver that times out then
	// holds a few workers, not all of them, and sign-in codes never wait
	// behind it (before, 100 events for a dead receiver held every code
	// for over 30 s). Codes do not: their send limits count a message's
	// first claim only.
	Overflow func(m storage.OutboxMessage) bool
	// Workers fixes the number of concurrent deliveries of each lane.
	// Default 0: adapted to the deliveries' latency, from 1 to 32
	// (concurrency.go), starting at 4.
	Workers int
	// Lease is how long a claimed message is hidden from other workers.
	// Default 2 minutes.
	Lease time.Duration
	// Poll is how often the outbox is scanned when nobody wakes it.
	// Default 1 second.
	Poll   time.Duration
	Logger *zap.Logger
	Now    func() time.Time

	wake     chan struct{}
	wakeOnce sync.Once
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// workers is how many messages may be claimed and not yet done:
	// Workers, or MaxConcurrency. Each kind's deliveries then wait for a
	// slot of their kind's limit.
	workers  int
	limitsMu sync.Mutex
	limits   map[string]*deliveryLimit

	// outages are the delivery outages per message kind, logged once
	// each, with a count when they end.
	outageMu sync.Mutex
	outages  map[string]*outage

	// unsettled are messages whose bookkeeping (ack, reschedule) failed
	// because the store was unreachable: they would keep their lease
	// otherwise, and wait out the whole of it after the store is back (a
	// Redis failover, say). They are settled again before each claim.
	unsettledMu sync.Mutex
	unsettled   []settle
}

// Start launches the workers; they run until Stop, or until ctx ends.
func (o *Outbox) Start(ctx context.Context) {
	o.workers = o.Workers
	if o.workers <= 0 {
		o.workers = MaxConcurrency
	}
	if o.Lease <= 0 {
		o.Lease = 2 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx)
	o.cancel = cancel
	jobs := make(chan storage.OutboxMessage)
	o.wg.Add(1)
	go o.claimLoop(ctx, jobs)
	for range o.workers {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			for m := range jobs {
				o.deliver(ctx, m)
			}
		}()
	}
}

// Stop ends the workers and waits for deliveries in progress.
func (o *Outbox) Stop() {
	if o.cancel != nil {
		o.cancel()
		o.wg.Wait()
	}
}

// Wake asks the workers to look at the outbox now, after an Enqueue.
// Before Start, the workers look as soon as they start.
func (o *Outbox) Wake() {
	select {
	case o.wakeChan() <- struct{}{}:
	default:
	}
}

// wakeChan is where Wake leaves its call for the claim loop.
func (o *Outbox) wakeChan() chan struct{} {
	o.wakeOnce.Do(func() { o.wake = make(chan struct{}, 1) })
	return o.wake
}

func (o *Outbox) claimLoop(ctx context.Context, jobs chan<- storage.OutboxMessage) {
	defer o.wg.Done()
	defer close(jobs)
	t := time.NewTicker(o.Poll)
	defer t.Stop()
	failing := false
	for {
		o.settleAgain(ctx)
		msgs, err := o.Store.ClaimOutbox(ctx, o.Lease, o.workers)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			// A claim cut short by Stop is no outage.
			o.Logger.Error("claiming outbox messages", zap.Error(err))
			failing = true
		case err == nil && failing:
			o.Logger.Info("outbox reachable again")
			failing = false
		}
		for i, m := range msgs {
			select {
			case jobs <- m:
			case <-ctx.Done():
				o.release(msgs[i:])
				return
			}
		}
		if len(msgs) == o.workers {
			continue // there may be more
		}
		select {
		case <-ctx.Done():
			return
		case <-o.wakeChan():
		case <-t.C:
		}
	}
}

// Released is the LastError of a message handed back at a stop before
// its delivery began: claimed again, it counts as a first attempt for
// what a first attempt does once (a code's send limits), although its
// Attempts says otherwise.
const Released = "released before its delivery began"

// release hands back messages claimed but never given to a worker, so
// that the next process (or the next config after a reload) sends them at
// once instead of after their lease.
func (o *Outbox) release(msgs []storage.OutboxMessage) {
	now := o.Now()
	for _, m := range msgs {
		if err := o.Store.RetryOutbox(context.Background(), m.ID, now, Released); err != nil {
			o.Logger.Error("releasing outbox message", zap.String("id", m.ID), zap.Error(err))
		}
	}
}

// limit is the delivery limit of a lane.
func (o *Outbox) limit(lane string) *deliveryLimit {
	o.limitsMu.Lock()
	defer o.limitsMu.Unlock()
	l := o.limits[lane]
	if l == nil {
		if o.limits == nil {
			o.limits = map[string]*deliveryLimit{}
		}
		l = newDeliveryLimit(o.Workers)
		o.limits[lane] = l
	}
	return l
}

// Concurrency is how many deliveries of a lane (a kind, unless Lane
// says otherwise) may be under way at once now: Workers, or what the
// outbox adapted to.
func (o *Outbox) Concurrency(lane string) int {
	return o.limit(lane).current()
}

func (o *Outbox) deliver(ctx context.Context, m storage.OutboxMessage) {
	lane := m.Kind
	if o.Lane != nil {
		lane = o.Lane(m)
	}
	l := o.limit(lane)
	if o.Overflow != nil && o.Overflow(m) {
		if wait, full := l.overflow(); full {
			// No sooner than a failure's backoff: a dead receiver's
			// backlog is then written back every few minutes, not every
			// few seconds.
			due := o.Now().Add(max(wait, backoff(m.Attempts)))
			if err := o.Store.RetryOutbox(context.WithoutCancel(ctx), m.ID, due, m.LastError); err != nil {
				o.unsettle(settle{id: m.ID, due: due, lastErr: m.LastError}, err)
			}
			return
		}
	}
	s, err := l.acquire(ctx)
	if err != nil {
		// Stopping while it waited for its turn: the next process (or
		// config) sends it at once.
		o.release([]storage.OutboxMessage{m})
		return
	}
	dctx, cancel := context.WithTimeout(ctx, o.Lease/2)
	dctx, report := WithReport(dctx)
	start := time.Now()
	events, err := o.Deliver(dctx, m)
	took := time.Since(start) - report.Setup()
	cancel()
	switch {
	case err == nil && report.NothingSent():
		l.release(s, took, noSample)
	case err == nil:
		l.release(s, took, delivered)
	case errors.Is(err, ErrPermanent), errors.Is(err, ErrDeferred), ctx.Err() != nil:
		l.release(s, took, noSample)
	default:
		l.release(s, took, failedTemporarily)
	}
	// Finish the bookkeeping even when stopping, so the message is not
	// sent twice after a restart.
	bg := context.WithoutCancel(ctx)
	if err == nil {
		if err := o.Store.AckOutbox(bg, m.ID, events...); err != nil {
			o.unsettle(settle{id: m.ID, ack: true, events: events}, err)
		}
		if o.Announce != nil && len(events) > 0 {
			o.Announce(events)
		}
		o.delivered(m.Kind)
		o.done(m)
		return
	}
	if o.OnAttemptFailed != nil {
		o.OnAttemptFailed(m, err)
	}
	now := o.Now()
	delay := backoff(m.Attempts)
	if errors.Is(err, ErrPermanent) || (!m.NotAfter.IsZero() && !now.Add(delay).Before(m.NotAfter)) {
		if ackErr := o.Store.AckOutbox(bg, m.ID); ackErr != nil {
			o.Logger.Error("dropping outbox message", zap.String("id", m.ID), zap.Error(ackErr))
		}
		if o.GiveUp != nil {
			o.GiveUp(m, err)
		}
		o.done(m)
		return
	}
	if !errors.Is(err, ErrDeferred) {
		o.failed(m.Kind, err)
	}
	if rerr := o.Store.RetryOutbox(bg, m.ID, now.Add(delay), err.Error()); rerr != nil {
		o.unsettle(settle{id: m.ID, due: now.Add(delay), lastErr: err.Error()}, rerr)
	}
}

// backoff is how long a message waits after its attempts-th failed
// attempt: 2 s, doubling, up to 5 minutes.
func backoff(attempts int) time.Duration {
	return min(time.Duration(1<<min(attempts, 10))*time.Second, 5*time.Minute)
}

// settle is the bookkeeping a delivery still owes its message: an ack, or a
// reschedule at due.
type settle struct {
	id      string
	ack     bool
	events  []storage.AuditEvent // the ack's
	due     time.Time
	lastErr string
}

// unsettle keeps a failed ack or reschedule to try again; an error that is
// not the store being unreachable is only logged.
func (o *Outbox) unsettle(s settle, err error) {
	if !errors.Is(err, storage.ErrUnavailable) {
		o.Logger.Error("outbox bookkeeping failed", zap.String("id", s.id), zap.Bool("ack", s.ack),
			zap.Int("audit_events", len(s.events)), zap.Error(err))
		return
	}
	o.unsettledMu.Lock()
	o.unsettled = append(o.unsettled, s)
	o.unsettledMu.Unlock()
}

// settleAgain retries the bookkeeping the store could not take before.
func (o *Outbox) settleAgain(ctx context.Context) {
	o.unsettledMu.Lock()
	todo := o.unsettled
	o.unsettled = nil
	o.unsettledMu.Unlock()
	bg := context.WithoutCancel(ctx)
	for i, s := range todo {
		var err error
		if s.ack {
			err = o.Store.AckOutbox(bg, s.id, s.events...)
		} else {
			err = o.Store.RetryOutbox(bg, s.id, s.due, s.lastErr)
		}
		if err != nil {
			o.unsettledMu.Lock()
			o.unsettled = append(o.unsettled, todo[i:]...)
			o.unsettledMu.Unlock()
			return
		}
	}
}

// outage is one kind's run of failed deliveries.
type outage struct {
	since    time.Time
	attempts int
}

// failed notes a failed attempt; the first of an outage is logged, the
// rest are counted.
func (o *Outbox) failed(kind string, err error) {
	o.outageMu.Lock()
	defer o.outageMu.Unlock()
	if o.outages == nil {
		o.outages = map[string]*outage{}
	}
	if out := o.outages[kind]; out != nil {
		out.attempts++
		return
	}
	o.outages[kind] = &outage{since: o.Now(), attempts: 1}
	o.Logger.Warn("delivery failing; retrying with backoff, logged once until it works again",
		zap.String("kind", kind), zap.Error(err))
}

// delivered ends the kind's outage, if there is one, with its count.
func (o *Outbox) delivered(kind string) {
	o.outageMu.Lock()
	defer o.outageMu.Unlock()
	out := o.outages[kind]
	if out == nil {
		return
	}
	delete(o.outages, kind)
	o.Logger.Info("delivery works again", zap.String("kind", kind),
		zap.Int("failed_attempts", out.attempts), zap.Duration("outage", o.Now().Sub(out.since)))
}

func (o *Outbox) done(m storage.OutboxMessage) {
	if o.OnDone != nil {
		o.OnDone(m)
	}
}
