package storage

import (
	"sync"
	"time"
)

// HotCache keeps decoded copies of hot records (sessions and contacts, read
// on every signed-in request) in memory in front of a backend, so a cache
// hit costs one map read under a read lock and no allocation.
//
// A backend drops a key whenever the record may have changed: Badger in the
// same call that writes it, Redis when the server reports the key
// invalidated. Drops race with reads that load a record from the backend,
// so every drop counts a generation: a reader takes Generation before it
// loads, and Put keeps the loaded value only if no drop happened since. A
// value loaded before an invalidation is therefore never cached after it,
// and nothing in the cache is staler than the backend.
//
// The cache is bounded: when full, it forgets expired entries and then
// arbitrary ones until a tenth of the room is free. With a ttl, each entry
// is also forgotten that long after it was put, on the real clock; the ttl
// bounds how long an unread entry holds memory (and, for a backend whose
// invalidations may be lost, how stale it may get), not how long a record
// is valid: callers still check a record's own expiry against their clock.
//
// A HotCache is safe for concurrent use; the zero value is not usable, use
// NewHotCache.
type HotCache[K comparable, V any] struct {
	max int
	ttl time.Duration
	now func() time.Time // the real clock; tests replace it

	mu sync.RWMutex
	m  map[K]hotEntry[V]
	// gen counts drops (see Put).
	gen uint64
}

type hotEntry[V any] struct {
	v     V
	until time.Time // zero without a ttl
}

// NewHotCache returns a cache of at most size entries (at least 1). A ttl
// above zero makes each entry expire that long after it was put; zero keeps
// entries until they are dropped or evicted.
func NewHotCache[K comparable, V any](size int, ttl time.Duration) *HotCache[K, V] {
	return &HotCache[K, V]{max: max(size, 1), ttl: ttl, now: time.Now, m: make(map[K]hotEntry[V])}
}

// Get returns the value kept under k, if there is one and it has not
// expired.
func (c *HotCache[K, V]) Get(k K) (V, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || c.ttl > 0 && !c.now().Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Generation returns the count of drops so far. Read it before loading a
// record from the backend, and hand it to Put with the loaded value.
func (c *HotCache[K, V]) Generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// Put keeps v under k, unless a drop happened since gen was read from
// Generation: then v may predate a change and is not kept. It reports
// whether v was kept.
func (c *HotCache[K, V]) Put(k K, v V, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return false
	}
	var until time.Time
	if c.ttl > 0 {
		until = c.now().Add(c.ttl)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		c.evictLocked()
	}
	c.m[k] = hotEntry[V]{v: v, until: until}
	return true
}

// evictLocked makes room for a tenth of max: expired entries go first,
// then arbitrary ones (map iteration order is random).
func (c *HotCache[K, V]) evictLocked() {
	keep := c.max - max(c.max/10, 1)
	if c.ttl > 0 {
		now := c.now()
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
	}
	for k := range c.m {
		if len(c.m) <= keep {
			break
		}
		delete(c.m, k)
	}
}

// Drop forgets k.
func (c *HotCache[K, V]) Drop(k K) {
	c.mu.Lock()
	c.gen++
	delete(c.m, k)
	c.mu.Unlock()
}

// DropFunc forgets every key for which drop reports true.
func (c *HotCache[K, V]) DropFunc(drop func(K) bool) {
	c.mu.Lock()
	c.gen++
	for k := range c.m {
		if drop(k) {
			delete(c.m, k)
		}
	}
	c.mu.Unlock()
}

// DropAll forgets everything.
func (c *HotCache[K, V]) DropAll() {
	c.mu.Lock()
	c.gen++
	clear(c.m)
	c.mu.Unlock()
}

// Len reports how many entries are kept, expired ones included.
func (c *HotCache[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
