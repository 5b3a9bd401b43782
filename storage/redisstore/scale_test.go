package redisstore_test

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// TestScaleMemory measures what a contact and a live session cost in
// Redis, outside CI, with PORTALGATE_SCALE contacts each signed in once:
//
//	PORTALGATE_SCALE=100000 go test -run ScaleMemory -v ./storage/redisstore/
//
// It logs MEMORY USAGE of one contact's keys (record, email and directory
// indexes, share of the id set) and of one session's (the record, the
// contact's session index, share of the workspace's), and how much
// used_memory grew per contact and per session.
func TestScaleMemory(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PORTALGATE_SCALE"))
	if n <= 0 {
		t.Skip("set PORTALGATE_SCALE to the number of contacts and sessions")
	}
	ctx := t.Context()
	srv := startRedis(t, false)
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{KeyPrefix: prefix, CallTimeout: time.Minute})
	cs := storagetest.Directory(n)
	start := usedMemory(t, srv)
	t0 := time.Now()
	for batch := range slices.Chunk(cs, 1000) {
		if err := s.PutContacts(ctx, "acme", batch); err != nil {
			t.Fatal(err)
		}
	}
	contactsDone, contactsMem := time.Since(t0), usedMemory(t, srv)

	now := time.Now()
	hashes := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 = time.Now()
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				var b [32]byte
				_, _ = rand.Read(b[:])
				hashes[i] = hex.EncodeToString(b[:])
				var csrf [32]byte
				_, _ = rand.Read(csrf[:])
				err := s.PutSession(ctx, storage.Session{IDHash: hashes[i], Workspace: "acme", ContactID: cs[i].ID, Method: "code",
					CSRF: hex.EncodeToString(csrf[:])[:43], ClientIP: "203.0.113.7",
					UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
					CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(12 * time.Hour), Idle: 12 * time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	sessionsDone, sessionsMem := time.Since(t0), usedMemory(t, srv)

	pre := prefix + "{ws:acme}:"
	c := cs[0]
	rec, email := memoryUsage(t, srv, pre+"c:"+c.ID), memoryUsage(t, srv, pre+"ce:"+c.Email)
	dirIdx := float64(memoryUsage(t, srv, pre+"cd:"+c.DirectoryID)) / 2
	ids := float64(memoryUsage(t, srv, pre+"ids")) / float64(n)
	sess, perContact := memoryUsage(t, srv, pre+"sess:"+hashes[0]), memoryUsage(t, srv, pre+"si:"+c.ID)
	all := float64(memoryUsage(t, srv, pre+"sessions")) / float64(n)
	t.Logf("%d contacts in %s, %d sessions in %s", n, contactsDone.Round(time.Millisecond), n, sessionsDone.Round(time.Millisecond))
	t.Logf("MEMORY USAGE per contact: %.0f B (record %d, email index %d, directory index %.0f, id set share %.0f); used_memory +%.0f B per contact",
		float64(rec+email)+dirIdx+ids, rec, email, dirIdx, ids, float64(contactsMem-start)/float64(n))
	t.Logf("MEMORY USAGE per session: %.0f B (record %d, the contact's session index %d, the workspace's session index share %.0f); used_memory +%.0f B per session",
		float64(sess+perContact)+all, sess, perContact, all, float64(sessionsMem-contactsMem)/float64(n))
}
