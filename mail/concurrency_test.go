package mail

import (
	"context"
	"testing"
	"time"
)

// run drives l as an outbox with more messages than slots would: every
// round fills every slot, then each delivery ends with the latency that
// latency gives for the number under way. It returns the limit after each
// round (not the probes' bound).
func run(l *deliveryLimit, rounds int, latency func(underWay int) time.Duration, o outcome) []int {
	var seen []int
	for range rounds {
		n := l.current()
		busy := make([]slot, n)
		for i := range busy {
			b, err := l.acquire(context.Background())
			if err != nil {
				panic(err)
			}
			busy[i] = b
		}
		for _, b := range busy {
			l.release(b, latency(n), o)
		}
		l.mu.Lock()
		seen = append(seen, int(l.limit))
		l.mu.Unlock()
	}
	return seen
}

// TestDeliveryLimitGrowsAgainstAFarRelay: a relay whose every reply takes
// 20 ms however many messages are under way (a network round trip) gets
// ever more at once, up to the bound.
func TestDeliveryLimitGrowsAgainstAFarRelay(t *testing.T) {
	l := newDeliveryLimit(0)
	seen := run(l, 20, func(int) time.Duration { return 20 * time.Millisecond }, delivered)
	if got := seen[len(seen)-1]; got != MaxConcurrency {
		t.Fatalf("limits %v, want %d at the end", seen, MaxConcurrency)
	}
}

// TestDeliveryLimitStaysLowAgainstAQueue: a relay (or a machine) that does
// one message at a time, so that each under way waits for the others,
// does not get more at once: they would only wait longer.
func TestDeliveryLimitStaysLowAgainstAQueue(t *testing.T) {
	l := newDeliveryLimit(0)
	seen := run(l, 200, func(n int) time.Duration { return time.Duration(n) * time.Millisecond }, delivered)
	for _, n := range seen {
		if n > 8 {
			t.Fatalf("limits %v: grew past 8 against a queue", seen)
		}
	}
}

// TestDeliveryLimitFollowsTheLatency: latency that rises with the
// deliveries under way beyond 12 (a relay that takes 12 at once) brings
// the limit to about 12, not to the bound.
func TestDeliveryLimitFollowsTheLatency(t *testing.T) {
	l := newDeliveryLimit(0)
	seen := run(l, 300, func(n int) time.Duration {
		return 20 * time.Millisecond * time.Duration(max(n, 12)) / 12
	}, delivered)
	tail := seen[200:]
	lo, hi := tail[0], tail[0]
	for _, n := range tail {
		lo, hi = min(lo, n), max(hi, n)
	}
	if lo < 12 || hi > 20 {
		t.Fatalf("limits %d–%d in the last 100 rounds, want about 12", lo, hi)
	}
}

// TestDeliveryLimitHalvesOnFailure: failed attempts halve it, down to 1.
func TestDeliveryLimitHalvesOnFailure(t *testing.T) {
	l := newDeliveryLimit(0)
	run(l, 20, func(int) time.Duration { return 20 * time.Millisecond }, delivered)
	b, _ := l.acquire(context.Background())
	l.release(b, time.Millisecond, failedTemporarily)
	if got := l.current(); got != MaxConcurrency/2 {
		t.Fatalf("after a failure: %d, want %d", got, MaxConcurrency/2)
	}
	run(l, 10, func(int) time.Duration { return time.Millisecond }, failedTemporarily)
	if got := l.current(); got != 1 {
		t.Fatalf("after failures: %d, want 1", got)
	}
}

// TestDeliveryLimitGrowsOnlyWhenUsed: deliveries that come one at a time
// never fill the slots and say nothing about more of them.
func TestDeliveryLimitGrowsOnlyWhenUsed(t *testing.T) {
	l := newDeliveryLimit(0)
	for range 100 {
		b, _ := l.acquire(context.Background())
		l.release(b, 20*time.Millisecond, delivered)
	}
	if got := l.current(); got != adaptiveStart {
		t.Fatalf("one at a time moved the limit to %d, want %d", got, adaptiveStart)
	}
}

// TestDeliveryLimitFixed: a fixed limit does not move, and lets no more
// through.
func TestDeliveryLimitFixed(t *testing.T) {
	l := newDeliveryLimit(3)
	seen := run(l, 20, func(int) time.Duration { return 20 * time.Millisecond }, delivered)
	run(l, 5, func(int) time.Duration { return time.Millisecond }, failedTemporarily)
	if seen[len(seen)-1] != 3 || l.current() != 3 {
		t.Fatalf("fixed at 3: %v, then %d", seen, l.current())
	}
	for range 3 {
		if _, err := l.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.acquire(ctx); err == nil {
		t.Fatal("a fourth delivery got a slot of 3")
	}
}

// TestDeliveryLimitNearRelay: deliveries that take 1 ms however many are
// under way (a relay on loopback: the time is the machine's own work) do
// not get more at once than the start.
func TestDeliveryLimitNearRelay(t *testing.T) {
	l := newDeliveryLimit(0)
	seen := run(l, 200, func(int) time.Duration { return time.Millisecond }, delivered)
	for _, n := range seen {
		if n > adaptiveStart {
			t.Fatalf("limits %v: grew past %d against a relay 1 ms away", seen, adaptiveStart)
		}
	}
}

// TestDeliveryLimitFirstComeFirstServed: waiting deliveries get slots in
// the order they came; one that gives up leaves the queue.
func TestDeliveryLimitFirstComeFirstServed(t *testing.T) {
	l := newDeliveryLimit(1)
	first, _ := l.acquire(context.Background())
	got := make(chan int, 3)
	waiting := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			l.mu.Lock()
			w := len(l.waiting)
			l.mu.Unlock()
			if w == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d waiting, want %d", w, n)
			}
		}
	}
	ctx, giveUp := context.WithCancel(context.Background())
	for i := range 3 {
		c := context.Background()
		if i == 1 {
			c = ctx
		}
		go func() {
			s, err := l.acquire(c)
			if err != nil {
				got <- -1
				return
			}
			got <- i
			l.release(s, time.Millisecond, delivered)
		}()
		waiting(i + 1)
	}
	giveUp()
	if n := <-got; n != -1 {
		t.Fatalf("%d got a slot first, want the one that gave up to leave", n)
	}
	waiting(2)
	l.release(first, time.Millisecond, delivered)
	if a, b := <-got, <-got; a != 0 || b != 2 {
		t.Fatalf("slots went to %d then %d, want 0 then 2", a, b)
	}
}
