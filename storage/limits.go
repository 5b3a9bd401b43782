package storage

import (
	"context"
	"time"
)

// Hit is one counter HitAll counts an event against.
type Hit struct {
	// Key names the counter; Hit and Count share it.
	Key string
	// Limit is how many events the window allows; the next one is over.
	Limit int
	// Window is the length of the counter's fixed window.
	Window time.Duration
}

// HitResult is the outcome of HitAll.
type HitResult struct {
	// Counts are the window counts of the counters HitAll counted, this
	// event included, in the order given: all of them unless one was
	// over its limit, and then up to that one.
	Counts []int
	// Over is the index of the counter past its limit, or -1 when every
	// one is within.
	Over int
	// RetryAfter is how long until Over's window resets; zero when none
	// is over.
	RetryAfter time.Duration
}

// Counter counts events in fixed windows, as Limits.Count does.
type Counter interface {
	Count(ctx context.Context, key string, window time.Duration) (n int, reset time.Duration, err error)
}

// HitEach is HitAll for a backend whose counters cannot share one
// transaction (Redis Cluster keeps each in its own slot): one Count per
// hit, in order, stopping at the first over its limit.
func HitEach(ctx context.Context, c Counter, hits []Hit) (HitResult, error) {
	res := HitResult{Over: -1, Counts: make([]int, 0, len(hits))}
	for i, h := range hits {
		n, reset, err := c.Count(ctx, h.Key, h.Window)
		if err != nil {
			return HitResult{Over: -1}, err
		}
		res.Counts = append(res.Counts, n)
		if n > h.Limit {
			res.Over, res.RetryAfter = i, reset
			break
		}
	}
	return res, nil
}
