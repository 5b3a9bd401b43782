package storage

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// Closer is a Store that holds resources (a database, connections).
type Closer interface {
	Store
	Close() error
}

// Shared is one config's hold on a store kept in a caddy.UsagePool, so that
// a config reload (which starts the new config before it cleans up the old
// one) shares the open store instead of opening it twice. Backends embed
// it: Open in their Open, Release in their Cleanup.
type Shared struct {
	mu       sync.Mutex
	acquired string // pool key this config holds
	store    Store
}

// Open returns the store under key, opening it with open when no config
// holds it yet. Calling it again returns the same store.
func (s *Shared) Open(pool *caddy.UsagePool, key string, open func() (Closer, error)) (Store, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store != nil {
		return s.store, nil
	}
	v, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := open()
		if err != nil {
			return nil, err
		}
		return pooled{st}, nil
	})
	if err != nil {
		return nil, err
	}
	s.acquired, s.store = key, v.(pooled).Closer
	return s.store, nil
}

// Release gives up this config's hold; the last release closes the store.
func (s *Shared) Release(pool *caddy.UsagePool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.acquired == "" {
		return nil
	}
	_, err := pool.Delete(s.acquired)
	s.acquired, s.store = "", nil
	return err
}

type pooled struct{ Closer }

func (p pooled) Destruct() error { return p.Close() }
