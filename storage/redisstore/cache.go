package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// near is the decoded copy of records read through the client-side cache.
// It forgets a key when Redis invalidates it (rueidis's OnInvalidations),
// everything when a connection is lost or Redis flushes, and each entry
// after CacheTTL. Only values read with tracking on are kept, and a read
// that an invalidation overtook is not kept (gen), so nothing here is
// staler than rueidis's own cache.
type near struct {
	mu  sync.RWMutex
	m   map[string]nearEntry
	gen uint64 // bumped by every invalidation
}

type nearEntry struct {
	v     any
	until time.Time
}

// nearMax bounds the entries; past it, a tenth is dropped at random.
const nearMax = 1 << 17

func (n *near) get(key string, now time.Time) (any, bool) {
	n.mu.RLock()
	e, ok := n.m[key]
	n.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.v, true
	}
	return nil, false
}

// generation is read before a cached read whose result may be kept.
func (n *near) generation() uint64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.gen
}

// put keeps v unless an invalidation arrived since gen was read.
func (n *near) put(key string, v any, gen uint64, until time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gen != gen {
		return
	}
	if n.m == nil {
		n.m = make(map[string]nearEntry)
	}
	if len(n.m) >= nearMax {
		drop := nearMax / 10
		for k := range n.m {
			delete(n.m, k)
			if drop--; drop <= 0 {
				break
			}
		}
	}
	n.m[key] = nearEntry{v: v, until: until}
}

// invalidate is rueidis's OnInvalidations hook: keys Redis says changed,
// or nil for all of them (flush, lost connection).
func (n *near) invalidate(keys []rueidis.RedisMessage) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen++
	if keys == nil {
		clear(n.m)
		return
	}
	for _, k := range keys {
		if key, err := k.ToString(); err == nil {
			delete(n.m, key)
		}
	}
}

// record reads a session or contact: from near, or through the client-side
// cache and decode, keeping the result in near when Redis tracks it.
func (s *Store) record(ctx context.Context, key string, decode func(string) (any, error)) (any, bool, error) {
	own := s.written.recent(key)
	if !own {
		if v, ok := s.near.get(key, time.Now()); ok {
			return v, true, nil
		}
	}
	gen := s.near.generation()
	raw, ok, tracked, err := s.getCached(ctx, key, own)
	if err != nil || !ok {
		return nil, false, err
	}
	v, err := decode(raw)
	if err != nil {
		return nil, false, err
	}
	if tracked {
		s.near.put(key, v, gen, time.Now().Add(s.cacheTTL))
	}
	return v, true, nil
}

// getCached reads a string key through the client-side cache, except for
// keys this instance wrote a moment ago (own; see ownWrites). tracked says
// the value came with tracking on, so Redis will invalidate it.
func (s *Store) getCached(ctx context.Context, key string, own bool) (v string, ok, tracked bool, err error) {
	if own {
		v, ok, err = s.getString(ctx, key)
		return v, ok, false, err
	}
	c, err := s.conn()
	if err != nil {
		return "", false, false, err
	}
	r := c.DoCache(ctx, c.B().Get().Key(key).Cache(), s.cacheTTL)
	if errors.Is(r.Error(), rueidis.ErrDoCacheAborted) {
		v, ok, err = s.getString(ctx, key)
		return v, ok, false, err
	}
	if err := s.check(r.Error()); rueidis.IsRedisNil(err) {
		return "", false, false, nil
	} else if err != nil {
		return "", false, false, err
	}
	v, err = r.ToString()
	return v, err == nil, err == nil, err
}

// ownWrites remembers the keys of cached records (sessions, contacts) this
// instance just wrote. Redis sends the invalidation of a write to the
// tracking connection, which rueidis reads on its own goroutine, a moment
// after the write's reply; until that has surely been processed, reads of
// the key skip the cache, so this instance sees its own writes at once.
type ownWrites struct {
	mu    sync.RWMutex
	m     map[string]time.Time
	swept time.Time
	// until is when the latest window ends (Unix ns): past it, no key is
	// recent, and reads skip the lock.
	until atomic.Int64
}

// ownWriteWindow is how long after a write its key is read past the cache;
// an invalidation takes microseconds to arrive.
const ownWriteWindow = time.Second

func (w *ownWrites) mark(keys ...string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		w.m[k] = now.Add(ownWriteWindow)
	}
	w.until.Store(now.Add(ownWriteWindow).UnixNano())
	if len(w.m) > 1024 && now.Sub(w.swept) > ownWriteWindow {
		for k, until := range w.m {
			if now.After(until) {
				delete(w.m, k)
			}
		}
		w.swept = now
	}
}

func (w *ownWrites) recent(key string) bool {
	if time.Now().UnixNano() > w.until.Load() {
		return false
	}
	w.mu.RLock()
	until, ok := w.m[key]
	w.mu.RUnlock()
	return ok && time.Now().Before(until)
}
