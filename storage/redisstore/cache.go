package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// DefaultCacheRecords bounds each of the decoded caches (sessions,
// contacts) unless Options.CacheRecords says otherwise. It is larger than
// Badger's, because a miss costs a round trip here.
const DefaultCacheRecords = 1 << 17

// The decoded caches (Store.sessions, Store.contacts) sit in front of
// rueidis's client-side cache. They forget a key when Redis invalidates it
// (rueidis's OnInvalidations), everything when a connection is lost or
// Redis flushes, and each entry after CacheTTL. Only values read with
// tracking on are kept, and a read that an invalidation overtook is not
// kept (storage.HotCache's generation), so nothing here is staler than
// rueidis's own cache.

// invalidate is rueidis's OnInvalidations hook: keys Redis says changed,
// or nil for all of them (flush, lost connection). A key names either a
// session or a contact; dropping it from both caches is cheaper than
// telling which.
func (s *Store) invalidate(keys []rueidis.RedisMessage) {
	if keys == nil {
		s.sessions.DropAll()
		s.contacts.DropAll()
		return
	}
	for _, k := range keys {
		if key, err := k.ToString(); err == nil {
			s.sessions.Drop(key)
			s.contacts.Drop(key)
		}
	}
}

// record reads a session or contact: from hot, or through the client-side
// cache and decode, keeping the result in hot when Redis tracks it.
func record[V any](ctx context.Context, s *Store, hot *storage.HotCache[string, V], key string, decode func(string) (V, error)) (V, bool, error) {
	var zero V
	own := s.written.recent(key)
	if !own {
		if v, ok := hot.Get(key); ok {
			return v, true, nil
		}
	}
	gen := hot.Generation()
	raw, ok, tracked, err := s.getCached(ctx, key, own)
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := decode(raw)
	if err != nil {
		return zero, false, err
	}
	if tracked {
		hot.Put(key, v, gen)
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
	ctx, cancel := s.bounded(ctx)
	defer cancel()
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
