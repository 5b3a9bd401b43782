package mail

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Adaptive delivery concurrency. How many deliveries should be under way
// at once depends on where the time of one goes: against a relay 20 ms
// away a delivery mostly waits, and 600 codes a second need about 13 at
// once (Little's law); against a relay on the same machine, or on a
// machine whose cores are busy, a delivery mostly computes, and more at
// once only take cores from the sign-in pages without sending more. So
// the outbox measures it the way TCP Vegas does (Brakmo and Peterson,
// 1995; Netflix's concurrency-limits library uses the same rule for
// servers): the shortest delivery seen lately is what one costs without
// queueing, and limit × (1 − shortest/latest) is how many of those under
// way are only waiting their turn somewhere (in the relay, for a
// connection, for a core). Few waiting and every slot used: one more
// slot; many waiting: one fewer; a failed attempt (the relay refusing,
// a connection lost): half.
const (
	// adaptiveStart is the limit an adaptive outbox starts at: the
	// fixed default before, right for a relay on the same network.
	adaptiveStart = 4
	// MaxConcurrency bounds the deliveries of one kind an adaptive
	// outbox has under way at once, and so the connections they need:
	// the SMTP pool's default size, the webhook client's idle
	// connections to one receiver. 32 at once carry about 1,500 codes a
	// second against a relay 20 ms away.
	MaxConcurrency = 32
	// noLoadSamples is how many deliveries a shortest latency stands
	// for before a probe measures it again (deliveryLimit), so that a
	// relay that got farther (a new route, a failover) is learned, and
	// one early lucky sample is forgotten.
	noLoadSamples = 500
	// farLatency is the unloaded delivery that more than adaptiveStart at
	// once can help: one shorter is mostly the machine's own work (a relay
	// on loopback or the same network), and more at once only compete for
	// the cores. Measured on loopback (portalbench -rush): growing there
	// cost the pages' p99 and the mail's, for no more codes a second.
	farLatency = 2 * time.Millisecond
)

// reportKey is the context key of a delivery's Report.
type reportKey struct{}

// Report is what a delivery tells the outbox about its own latency,
// beyond its outcome, for the sample the limit adapts to (WithReport).
type Report struct {
	setup   atomic.Int64
	nothing atomic.Bool
}

// WithReport returns a context in which a delivery reports, with AddSetup,
// the time it spent opening connections (TCP, TLS, the SMTP greeting,
// EHLO and AUTH: two to five round trips), and, with MarkNothingSent,
// that it sent nothing; and the Report they fill in.
//
// The outbox takes the setup out of the delivery's latency: a new
// connection is not a queue. Otherwise, after a quiet spell past the
// pool's idle timeout, every delivery of the next burst reconnects and
// looks queued (80 ms against 21 ms for a relay 20 ms away), and the
// learned limit falls by one with each. A delivery that sent nothing (a
// code asked for an address that is no contact, a send over its limit)
// takes microseconds and says nothing about the relay: as a sample it
// would become the unloaded latency, and every real delivery would look
// queued.
func WithReport(ctx context.Context) (context.Context, *Report) {
	r := new(Report)
	return context.WithValue(ctx, reportKey{}, r), r
}

// Setup is the time the delivery reported opening connections.
func (r *Report) Setup() time.Duration { return time.Duration(r.setup.Load()) }

// NothingSent says whether the delivery reported sending nothing.
func (r *Report) NothingSent() bool { return r.nothing.Load() }

// AddSetup records d spent opening a connection for the delivery of ctx
// (see WithReport); without WithReport it does nothing.
func AddSetup(ctx context.Context, d time.Duration) {
	if r, ok := ctx.Value(reportKey{}).(*Report); ok {
		r.setup.Add(int64(d))
	}
}

// MarkNothingSent records that the delivery of ctx finished without
// sending anything (see WithReport).
func MarkNothingSent(ctx context.Context) {
	if r, ok := ctx.Value(reportKey{}).(*Report); ok {
		r.nothing.Store(true)
	}
}

// deliveryLimit is how many deliveries of one kind may be under way at
// once: fixed, or adapted to their latency.
type deliveryLimit struct {
	mu sync.Mutex
	// limit is the current bound; its integer part is what acquire lets
	// through (but while probing).
	limit    float64
	min, max float64
	fixed    bool
	inflight int
	// noLoad is the shortest delivery seen since the last probe.
	noLoad  time.Duration
	samples int
	// A probe measures noLoad again with half the deliveries under way:
	// under a backlog that never ends, the shortest delivery of the
	// past is all there is to compare with, and one that was lucky, or
	// a relay that has moved farther away, would hold the limit down
	// for good. probeLimit is the bound while probing (0: not), gen
	// tells the deliveries that started inside it, probeMin and
	// probeLeft collect their latencies.
	probeLimit int
	gen        uint64
	probeMin   time.Duration
	probeLeft  int
	// waiting are the deliveries waiting for a slot, oldest first.
	waiting []*waiter
	// last is the latest delivery's latency, delivered or failed: what
	// a message sent back by overflow waits for, in turn.
	last time.Duration
}

// newDeliveryLimit returns a limit fixed at n, or, for n <= 0, an adaptive
// one from 1 to MaxConcurrency that starts at adaptiveStart.
func newDeliveryLimit(n int) *deliveryLimit {
	if n > 0 {
		return &deliveryLimit{limit: float64(n), min: float64(n), max: float64(n), fixed: true}
	}
	return &deliveryLimit{limit: adaptiveStart, min: 1, max: MaxConcurrency}
}

// slot is a delivery's place under the limit, from acquire to release.
type slot struct {
	// busy is how many deliveries were under way when it began.
	busy int
	gen  uint64
}

// acquire waits for a free slot. The waiting deliveries get slots in
// the order they came, each woken alone: the messages claimed first go
// first, and a freed slot does not wake every waiter to race for it.
func (l *deliveryLimit) acquire(ctx context.Context) (slot, error) {
	l.mu.Lock()
	if len(l.waiting) == 0 && l.inflight < l.bound() {
		s := slot{busy: l.inflight, gen: l.gen}
		l.inflight++
		l.mu.Unlock()
		return s, nil
	}
	w := &waiter{ready: make(chan struct{})}
	l.waiting = append(l.waiting, w)
	l.mu.Unlock()
	select {
	case <-w.ready:
		return w.slot, nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-w.ready:
			// Given a slot as it gave up: hand it on.
			l.inflight--
			l.handOn()
		default:
			for i, o := range l.waiting {
				if o == w {
					l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
					break
				}
			}
		}
		return slot{}, ctx.Err()
	}
}

// waiter is a delivery waiting in acquire.
type waiter struct {
	ready chan struct{}
	slot  slot
}

// handOn gives free slots to the waiters, oldest first; l.mu is held.
func (l *deliveryLimit) handOn() {
	for len(l.waiting) > 0 && l.inflight < l.bound() {
		w := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		w.slot = slot{busy: l.inflight, gen: l.gen}
		l.inflight++
		close(w.ready)
	}
}

// bound is what acquire lets through now; l.mu is held.
func (l *deliveryLimit) bound() int {
	if l.probeLimit > 0 {
		return l.probeLimit
	}
	return int(l.limit)
}

// outcome is what one delivery tells the limit.
type outcome int

const (
	// delivered: the delivery finished, latency is a sample.
	delivered outcome = iota
	// failedTemporarily: the relay refused or the connection failed;
	// the limit halves.
	failedTemporarily
	// noSample: the delivery says nothing about the relay (a message
	// dropped for its own reasons, deferred, cut short by a stop).
	noSample
)

// overflow says whether the limit has twice its bound waiting already,
// and if so how long a message that joined now would wait: the latest
// delivery's latency for each round of the bound ahead of it, from a
// second to a minute.
func (l *deliveryLimit) overflow() (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := max(1, l.bound())
	if len(l.waiting) < 2*b {
		return 0, false
	}
	wait := l.last * time.Duration((l.inflight+len(l.waiting))/b)
	return min(max(wait, time.Second), time.Minute), true
}

// release frees the slot taken by acquire and adapts the limit to the
// delivery's latency.
func (l *deliveryLimit) release(s slot, latency time.Duration, o outcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if o != noSample {
		l.last = latency
	}
	if !l.fixed {
		l.adapt(s, latency, o)
	}
	l.handOn()
}

// adapt is Vegas's rule; l.mu is held.
func (l *deliveryLimit) adapt(s slot, latency time.Duration, o outcome) {
	switch o {
	case noSample:
		return
	case failedTemporarily:
		l.limit = max(l.min, math.Floor(l.limit/2))
		l.probeLimit = 0
		return
	}
	latency = max(latency, time.Nanosecond)
	if l.probeLimit > 0 {
		if s.gen != l.gen {
			return // began before the probe, with more under way
		}
		if l.probeMin == 0 || latency < l.probeMin {
			l.probeMin = latency
		}
		if l.probeLeft--; l.probeLeft <= 0 {
			l.noLoad, l.probeLimit, l.samples = l.probeMin, 0, 0
		}
		return
	}
	if l.noLoad == 0 || latency < l.noLoad {
		l.noLoad = latency
	}
	if l.samples++; l.samples >= noLoadSamples {
		l.gen++
		l.probeLimit = max(1, int(l.limit)/2)
		l.probeLeft, l.probeMin = l.probeLimit, 0
		return
	}
	queued := l.limit * (1 - float64(l.noLoad)/float64(latency))
	lg := math.Log10(l.limit)
	alpha, beta := max(2, 3*lg), max(4, 6*lg)
	switch {
	case queued > beta:
		l.limit = max(l.min, l.limit-1)
	case queued < alpha && 2*(s.busy+1) >= int(l.limit) && (l.limit < adaptiveStart || l.noLoad >= farLatency):
		// Grow only while the deliveries use the slots they have (a
		// limit that is not reached says nothing about a larger one),
		// and past the start only where a delivery mostly waits.
		l.limit = min(l.max, l.limit+1)
	}
}

// current is what acquire lets through now, for metrics and tests.
func (l *deliveryLimit) current() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bound()
}
