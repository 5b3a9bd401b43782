package storagetest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// AuditScaleEvents is the size of the audit scale tests' trail, from
// PORTALGATE_AUDIT_EVENTS; they skip when it is unset.
func AuditScaleEvents(t *testing.T) int {
	t.Helper()
	v := os.Getenv("PORTALGATE_AUDIT_EVENTS")
	if v == "" {
		t.Skip("set PORTALGATE_AUDIT_EVENTS (such as 10000000) to run the audit trail at volume")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 {
		t.Fatalf("PORTALGATE_AUDIT_EVENTS=%q: want a count of at least 1000", v)
	}
	return n
}

// AuditScaleContacts is how many contacts the n events of a scale trail
// are spread over: 100 events each.
func AuditScaleContacts(n int) int { return max(1, n/100) }

// AuditScaleEvent is the i-th of n events of a scale trail of workspace
// "acme": spread evenly from start over span, oldest first, its contact
// going round the contacts so that each contact's events are spread over
// the whole span, with the fields a sign-in event has.
func AuditScaleEvent(i, n int, start time.Time, span time.Duration) storage.AuditEvent {
	c := AuditScaleContacts(n)
	id := i % c
	return storage.AuditEvent{
		Time:      start.Add(time.Duration(float64(span) * float64(i) / float64(n))),
		Workspace: "acme", Event: []string{"code_sent", "code_accepted", "signin", "signout"}[i%4],
		ContactID: fmt.Sprintf("c-%07d", id), Email: fmt.Sprintf("p%07d@acme.example", id), Method: "code",
		ClientIP:  fmt.Sprintf("10.%d.%d.%d", id>>16&255, id>>8&255, id&255),
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	}
}

// FillAudit writes events [from, to) of an n-event scale trail through
// write, batch events at a time.
func FillAudit(t *testing.T, write func([]storage.AuditEvent) error, from, to, n int, start time.Time, span time.Duration) {
	t.Helper()
	const batch = 10000
	buf := make([]storage.AuditEvent, 0, batch)
	for i := from; i < to; i++ {
		buf = append(buf, AuditScaleEvent(i, n, start, span))
		if len(buf) == batch || i == to-1 {
			if err := write(buf); err != nil {
				t.Fatalf("writing audit events up to %d: %v", i, err)
			}
			buf = buf[:0]
		}
	}
}

// Latencies is a set of measured durations.
type Latencies []time.Duration

// Pct is the p-th quantile (0.99 for p99), nearest rank.
func (l Latencies) Pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// String is "p50 … p99 … max … (n)".
func (l Latencies) String() string {
	return fmt.Sprintf("p50 %v, p99 %v, max %v (%d calls)", l.Pct(0.5).Round(time.Microsecond),
		l.Pct(0.99).Round(time.Microsecond), l.Pct(1).Round(time.Microsecond), len(l))
}

// Load calls f from workers goroutines until ctx ends, and returns how
// long each call took; the first error fails t.
func Load(t *testing.T, ctx context.Context, workers int, f func(worker, i int) error) Latencies {
	t.Helper()
	var mu sync.Mutex
	var all Latencies
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var mine Latencies
			for i := 0; ctx.Err() == nil; i++ {
				t0 := time.Now()
				if err := f(w, i); err != nil {
					if ctx.Err() == nil {
						t.Errorf("load: %v", err)
					}
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}
