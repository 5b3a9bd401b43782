package storage

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNow returns a clock for c that only moves when advance is called.
func fakeNow[K comparable, V any](c *HotCache[K, V]) (advance func(time.Duration)) {
	var mu sync.Mutex
	t := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return t
	}
	return func(d time.Duration) {
		mu.Lock()
		t = t.Add(d)
		mu.Unlock()
	}
}

func wantGet[K comparable, V comparable](t *testing.T, c *HotCache[K, V], k K, want V, wantOK bool) {
	t.Helper()
	got, ok := c.Get(k)
	if ok != wantOK || ok && got != want {
		t.Errorf("Get(%v) = %v, %v; want %v, %v", k, got, ok, want, wantOK)
	}
}

func TestHotCacheGetPut(t *testing.T) {
	c := NewHotCache[string, int](10, 0)
	wantGet(t, c, "a", 0, false)
	if !c.Put("a", 1, c.Generation()) {
		t.Fatal("Put with the current generation not kept")
	}
	wantGet(t, c, "a", 1, true)
	c.Put("a", 2, c.Generation())
	wantGet(t, c, "a", 2, true)
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
}

// TestHotCacheStaleGeneration is the race the generation guards against:
// a value loaded before a drop must not be kept after it.
func TestHotCacheStaleGeneration(t *testing.T) {
	for name, drop := range map[string]func(c *HotCache[string, int]){
		"Drop":           func(c *HotCache[string, int]) { c.Drop("a") },
		"Drop other key": func(c *HotCache[string, int]) { c.Drop("b") },
		"DropFunc":       func(c *HotCache[string, int]) { c.DropFunc(func(string) bool { return false }) },
		"DropAll":        func(c *HotCache[string, int]) { c.DropAll() },
	} {
		t.Run(name, func(t *testing.T) {
			c := NewHotCache[string, int](10, 0)
			gen := c.Generation() // a reader is about to load "a"
			drop(c)               // a write lands meanwhile
			if c.Put("a", 1, gen) {
				t.Error("Put with a generation older than a drop was kept")
			}
			wantGet(t, c, "a", 0, false)
			if !c.Put("a", 2, c.Generation()) {
				t.Error("Put with the generation after the drop was not kept")
			}
			wantGet(t, c, "a", 2, true)
		})
	}
}

func TestHotCacheDrops(t *testing.T) {
	type key struct{ ws, id string }
	c := NewHotCache[key, string](100, 0)
	for _, k := range []key{{"acme", "1"}, {"acme", "2"}, {"globex", "1"}} {
		c.Put(k, k.ws+"/"+k.id, c.Generation())
	}
	c.Drop(key{"acme", "1"})
	wantGet(t, c, key{"acme", "1"}, "", false)
	wantGet(t, c, key{"acme", "2"}, "acme/2", true)
	c.Drop(key{"nobody", "x"}) // dropping a missing key is fine

	c.DropFunc(func(k key) bool { return k.ws == "acme" })
	wantGet(t, c, key{"acme", "2"}, "", false)
	wantGet(t, c, key{"globex", "1"}, "globex/1", true)

	c.DropAll()
	wantGet(t, c, key{"globex", "1"}, "", false)
	if c.Len() != 0 {
		t.Errorf("Len after DropAll = %d", c.Len())
	}
}

func TestHotCacheExpiry(t *testing.T) {
	c := NewHotCache[string, int](10, time.Minute)
	advance := fakeNow(c)
	c.Put("a", 1, c.Generation())
	advance(59 * time.Second)
	wantGet(t, c, "a", 1, true)
	c.Put("b", 2, c.Generation())
	advance(time.Second)
	wantGet(t, c, "a", 0, false)
	wantGet(t, c, "b", 2, true)
	c.Put("a", 3, c.Generation()) // a new put starts a new ttl
	advance(59 * time.Second)
	wantGet(t, c, "a", 3, true)
	wantGet(t, c, "b", 0, false)

	// Without a ttl nothing expires.
	n := NewHotCache[string, int](10, 0)
	advance = fakeNow(n)
	n.Put("a", 1, n.Generation())
	advance(1000 * time.Hour)
	wantGet(t, n, "a", 1, true)
}

func TestHotCacheBounded(t *testing.T) {
	const size = 100
	c := NewHotCache[int, int](size, 0)
	for i := range 10 * size {
		c.Put(i, i, c.Generation())
		if c.Len() > size {
			t.Fatalf("after %d puts Len = %d, over the bound %d", i+1, c.Len(), size)
		}
	}
	wantGet(t, c, 10*size-1, 10*size-1, true) // the latest put is kept

	// Replacing a kept key never evicts.
	full := NewHotCache[int, int](3, 0)
	for i := range 3 {
		full.Put(i, i, full.Generation())
	}
	full.Put(1, 10, full.Generation())
	if full.Len() != 3 {
		t.Errorf("replacing a key in a full cache: Len = %d, want 3", full.Len())
	}

	if NewHotCache[int, int](0, 0).Put(1, 1, 0) == false {
		t.Error("a cache made with size 0 keeps nothing; want room for one entry")
	}
}

func TestHotCacheEvictsExpiredFirst(t *testing.T) {
	const size = 100
	c := NewHotCache[string, int](size, time.Minute)
	advance := fakeNow(c)
	for i := range size / 2 {
		c.Put("old"+strconv.Itoa(i), i, c.Generation())
	}
	advance(time.Minute)
	for i := range size / 2 {
		c.Put("new"+strconv.Itoa(i), i, c.Generation())
	}
	c.Put("one more", 0, c.Generation()) // full: the expired half goes
	for i := range size / 2 {
		wantGet(t, c, "new"+strconv.Itoa(i), i, true)
	}
	if c.Len() != size/2+1 {
		t.Errorf("Len = %d, want %d (only the expired entries evicted)", c.Len(), size/2+1)
	}
}

// TestHotCacheGetDoesNotAllocate keeps the session check allocation-free.
func TestHotCacheGetDoesNotAllocate(t *testing.T) {
	type session struct {
		id, ws, contact string
		at              time.Time
	}
	for _, ttl := range []time.Duration{0, time.Minute} {
		c := NewHotCache[string, session](10, ttl)
		c.Put("k", session{id: "k", ws: "acme"}, c.Generation())
		if n := testing.AllocsPerRun(100, func() {
			if _, ok := c.Get("k"); !ok {
				t.Fatal("miss")
			}
		}); n != 0 {
			t.Errorf("ttl %v: Get allocates %v times per hit, want 0", ttl, n)
		}
	}
}

// TestHotCacheConcurrent runs readers that load from a "backend" and cache
// what they loaded, against a writer that changes the backend and drops the
// key, as the stores do. Once a drop has returned, no reader may see a
// value older than the write that preceded it. Run it with -race.
func TestHotCacheConcurrent(t *testing.T) {
	const keys = 4
	c := NewHotCache[int, int64](keys, 0)
	var backend, dropped [keys]atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup

	wg.Go(func() { // the writer
		for v := int64(1); v <= 2000; v++ {
			k := int(v % keys)
			backend[k].Store(v)
			switch v % 7 {
			case 0:
				c.DropAll()
			case 1:
				c.DropFunc(func(key int) bool { return key == k })
			default:
				c.Drop(k)
			}
			dropped[k].Store(v)
		}
		stop.Store(true)
	})
	var stale atomic.Int64
	for range 4 { // readers: a hit, or a load through the cache
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := i % keys
				floor := dropped[k].Load()
				if v, ok := c.Get(k); ok {
					if v < floor {
						stale.Add(1)
					}
					continue
				}
				gen := c.Generation()
				c.Put(k, backend[k].Load(), gen)
			}
		})
	}
	wg.Go(func() { // churn on other keys: eviction and Len under load
		for i := 0; !stop.Load(); i++ {
			c.Put(keys+i%16, 0, c.Generation())
			_ = c.Len()
		}
	})
	wg.Wait()
	if n := stale.Load(); n > 0 {
		t.Fatalf("%d reads returned a value older than a completed drop", n)
	}
	for k := range keys {
		if v, ok := c.Get(k); ok && v != backend[k].Load() {
			t.Errorf("key %d: cached %d, backend holds %d", k, v, backend[k].Load())
		}
	}
}
