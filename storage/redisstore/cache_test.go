package redisstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
)

// TestCacheRecords: cache_records bounds the decoded caches an instance
// keeps; without it they hold far more than a small workspace has.
func TestCacheRecords(t *testing.T) {
	srv := startRedis(t, false)
	for _, tc := range []struct {
		records, want int
	}{{0, 20}, {5, 5}} {
		t.Run(fmt.Sprint("cache_records ", tc.records), func(t *testing.T) {
			// Another instance writes (an instance reads its own writes
			// past its caches for a moment).
			prefix := uniquePrefix()
			w := open(t, srv, redisstore.Options{KeyPrefix: prefix})
			s := open(t, srv, redisstore.Options{KeyPrefix: prefix, CacheRecords: tc.records})
			ctx := t.Context()
			now := time.Now()
			var cs []storage.Contact
			for i := range 20 {
				cs = append(cs, storage.Contact{ID: fmt.Sprintf("c-%d", i), Email: fmt.Sprintf("p%d@acme.example", i), Status: storage.StatusActive})
			}
			if err := w.PutContacts(ctx, "acme", cs); err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				sess := newSession(now)
				sess.ContactID = c.ID
				if err := w.PutSession(ctx, sess); err != nil {
					t.Fatal(err)
				}
				// Read twice: the first read turns tracking on, the second
				// is served from rueidis's cache and decoded into ours.
				for range 2 {
					if _, err := s.Session(ctx, "acme", sess.IDHash); err != nil {
						t.Fatal(err)
					}
					if _, err := s.Contact(ctx, "acme", c.ID); err != nil {
						t.Fatal(err)
					}
				}
			}
			if sessions, contacts := s.CachedRecords(); sessions != tc.want || contacts != tc.want {
				t.Fatalf("cached: %d sessions, %d contacts; want %d of each", sessions, contacts, tc.want)
			}
		})
	}
}
