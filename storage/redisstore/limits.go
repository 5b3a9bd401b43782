package redisstore

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// hit counts one event in a window. KEYS: counter. ARGV: TTL in ms.
// Returns the count.
//
//go:embed scripts/hit.lua
var hitLua string

var hit = newScript(hitLua)

// Hit implements storage.Store.
func (s *Store) Hit(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	n, reset, err := s.Count(ctx, key, window)
	if err != nil {
		return false, 0, err
	}
	if n > limit {
		return false, reset, nil
	}
	return true, 0, nil
}

// Count implements storage.Store.
func (s *Store) Count(ctx context.Context, key string, window time.Duration) (int, time.Duration, error) {
	k, reset := s.counter(key, window, s.now())
	r, err := s.run(ctx, hit, []string{k}, pxString(reset+time.Second))
	if err != nil {
		return 0, 0, err
	}
	n, err := r.AsInt64()
	if err != nil {
		return 0, 0, err
	}
	return int(n), reset, nil
}

// counter is the key of key's counter for the window now falls in, and how
// long until that window ends.
func (s *Store) counter(key string, window time.Duration, now time.Time) (string, time.Duration) {
	start := now.Truncate(window)
	return s.p + "hit:" + key + ":" + strconv.FormatInt(start.Unix(), 10), start.Add(window).Sub(now)
}

// cooldown starts a cooldown unless one is running. KEYS: cooldown.
// ARGV: now and end of a new cooldown (unix microseconds), TTL in ms.
// Returns 0 when started, else the microseconds left.
//
//go:embed scripts/cooldown.lua
var cooldownLua string

var cooldown = newScript(cooldownLua)

// Cooldown implements storage.Store.
func (s *Store) Cooldown(ctx context.Context, key string, d time.Duration) (bool, time.Duration, error) {
	now := s.now()
	r, err := s.run(ctx, cooldown, []string{s.p + "cool:" + key}, micros(now), micros(now.Add(d)), pxString(d+time.Second))
	if err != nil {
		return false, 0, err
	}
	left, err := r.AsInt64()
	if err != nil {
		return false, 0, err
	}
	if left > 0 {
		return false, time.Duration(left) * time.Microsecond, nil
	}
	return true, 0, nil
}

// CooldownLeft is how long the cooldown of key still runs (0: none); it
// starts none (RequestCodeEach, on a Cluster).
func (s *Store) CooldownLeft(ctx context.Context, key string) (time.Duration, error) {
	u, ok, err := s.getString(ctx, s.p+"cool:"+key)
	if err != nil || !ok {
		return 0, err
	}
	until, err := strconv.ParseInt(u, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis: cooldown %s: %w", key, err)
	}
	return max(0, time.Duration(until-s.now().UnixMicro())*time.Microsecond), nil
}

// hitAll counts one event against each counter in order, stopping after
// the first past its limit. KEYS: counters. ARGV: each counter's limit and
// TTL in ms, in turn. Returns the counts, up to the one past its limit.
//
//go:embed scripts/hit_all.lua
var hitAllLua string

// countersLua defines count_hits, which the scripts that count
// rate-limit counters share.
//
//go:embed scripts/counters_lib.lua
var countersLua string

var hitAll = newScript(countersLua + hitAllLua)

// HitAll implements storage.Store: one script on a single server or
// Sentinel; one counter after the other on a Cluster, where each counter
// has its own slot.
func (s *Store) HitAll(ctx context.Context, hits ...storage.Hit) (storage.HitResult, error) {
	if len(hits) < 2 || s.clustered() {
		return storage.HitEach(ctx, s, hits)
	}
	keys, args, resets := s.counterArgs(hits, s.now())
	r, err := s.run(ctx, hitAll, keys, args...)
	if err != nil {
		return storage.HitResult{Over: -1}, err
	}
	counts, err := r.AsIntSlice()
	if err != nil || len(counts) == 0 || len(counts) > len(hits) {
		return storage.HitResult{Over: -1}, fmt.Errorf("redis: hit all: unexpected reply (%v)", err)
	}
	return hitResult(counts, hits, resets), nil
}

// counterArgs are the keys of hits' counters, and each one's limit and TTL
// in ms in turn, as hit_all.lua and the scripts that count like it take
// them, with how long until each window resets.
func (s *Store) counterArgs(hits []storage.Hit, now time.Time) (keys, args []string, resets []time.Duration) {
	keys = make([]string, len(hits))
	args = make([]string, 0, 2*len(hits))
	resets = make([]time.Duration, len(hits))
	for i, h := range hits {
		keys[i], resets[i] = s.counter(h.Key, h.Window, now)
		args = append(args, strconv.Itoa(h.Limit), pxString(resets[i]+time.Second))
	}
	return keys, args, resets
}

// hitResult is the counts such a script returned, up to the one past its
// limit, as a storage.HitResult.
func hitResult(counts []int64, hits []storage.Hit, resets []time.Duration) storage.HitResult {
	res := storage.HitResult{Over: -1, Counts: make([]int, len(counts))}
	for i, n := range counts {
		res.Counts[i] = int(n)
	}
	if last := len(counts) - 1; last >= 0 && counts[last] > int64(hits[last].Limit) {
		res.Over, res.RetryAfter = last, resets[last]
	}
	return res
}
