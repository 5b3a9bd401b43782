package redisstore

import (
	"context"
	_ "embed"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// hit counts one event in a window. KEYS: counter. ARGV: TTL in ms.
// Returns the count.
//
//go:embed scripts/hit.lua
var hitLua string

var hit = rueidis.NewLuaScript(hitLua)

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
	now := s.now()
	start := now.Truncate(window)
	reset := start.Add(window)
	k := s.p + "hit:" + key + ":" + strconv.FormatInt(start.Unix(), 10)
	r, err := s.run(ctx, hit, []string{k}, pxString(reset.Sub(now)+time.Second))
	if err != nil {
		return 0, 0, err
	}
	n, err := r.AsInt64()
	if err != nil {
		return 0, 0, err
	}
	return int(n), reset.Sub(now), nil
}

// cooldown starts a cooldown unless one is running. KEYS: cooldown.
// ARGV: now and end of a new cooldown (unix microseconds), TTL in ms.
// Returns 0 when started, else the microseconds left.
//
//go:embed scripts/cooldown.lua
var cooldownLua string

var cooldown = rueidis.NewLuaScript(cooldownLua)

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

// HitAll implements storage.Store: one counter after the other, since
// on Redis Cluster each counter has its own slot.
func (s *Store) HitAll(ctx context.Context, hits ...storage.Hit) (storage.HitResult, error) {
	return storage.HitEach(ctx, s, hits)
}
