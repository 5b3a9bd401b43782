package badgerstore

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// TestAuditScale writes PORTALGATE_AUDIT_EVENTS events over 100 times
// fewer contacts, then measures the newest 50 events of one contact, and
// what the retention's deletion costs the gate: the older half of the
// trail is written to expire a little after the fill, and once it has,
// the session reads of a gate under load are timed while nothing happens,
// then while a full compaction (Flatten: the most Badger ever does at
// once to drop expired entries; normally its compactions do it a table at
// a time) deletes them.
//
//	PORTALGATE_AUDIT_EVENTS=10000000 go test -run AuditScale -v -timeout 1h ./storage/badgerstore/
func TestAuditScale(t *testing.T) {
	n := storagetest.AuditScaleEvents(t)
	ctx := t.Context()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	retention := DefaultAuditRetention
	contacts := storagetest.AuditScaleContacts(n)

	// The newer half: the last 30 days.
	t0 := time.Now()
	storagetest.FillAudit(t, func(es []storage.AuditEvent) error { return s.ImportAudit(ctx, es) },
		0, n/2, n, t0.Add(-30*24*time.Hour), 60*24*time.Hour)
	half := time.Since(t0)
	if err := s.db.Flatten(2); err != nil { // settled, so its size compares with what Flatten leaves below
		t.Fatal(err)
	}
	halfSize := dirSize(dir)
	// The older half: at the edge of the retention, all of it expiring
	// within 10 seconds around expire.
	expire := time.Now().Add(half*3/2 + 30*time.Second)
	storagetest.FillAudit(t, func(es []storage.AuditEvent) error { return s.ImportAudit(ctx, es) },
		n/2, n, n, expire.Add(-retention-20*time.Second), 20*time.Second)
	fill := time.Since(t0)
	live := "all events live"
	if time.Now().After(expire) {
		live = "the fill outlasted the older half" // still measured
	}
	t.Logf("wrote %d events of %d contacts in %v (%.0f events/s; the newer half in %v, %.0f MB once compacted); database %.0f MB (%.0f bytes per event)",
		n, contacts, fill.Round(time.Millisecond), float64(n)/fill.Seconds(), half.Round(time.Millisecond), mb(halfSize), mb(dirSize(dir)), float64(dirSize(dir))/float64(n))

	newest := func(when string) {
		var l storagetest.Latencies
		for range 200 {
			c := fmt.Sprintf("c-%07d", rand.IntN(contacts))
			t1 := time.Now()
			es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: c, Limit: 50})
			l = append(l, time.Since(t1))
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != min(50, n/contacts/2) || es[0].ContactID != c {
				t.Fatalf("newest 50 of %s: %d events, want %d of the contact", c, len(es), min(50, n/contacts/2))
			}
		}
		t.Logf("newest 50 events of one contact (%s, 200 random contacts): %v", when, l)
		if p := l.Pct(0.99); p > 20*time.Millisecond {
			t.Errorf("newest 50 events of one contact: p99 %v, want < 20 ms", p)
		}
	}
	newest(live)

	// The gate: signed-in requests each read a session, 20,000 of them,
	// more than the hot cache holds, so most reads reach Badger.
	hashes := make([]string, 20000)
	for i := range hashes {
		hashes[i] = fmt.Sprintf("%064x", i)
		now := time.Now()
		if err := s.PutSession(ctx, storage.Session{IDHash: hashes[i], Workspace: "acme", ContactID: fmt.Sprintf("c-%07d", i%contacts),
			Method: "code", CSRF: "x", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(12 * time.Hour), Idle: 12 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	gate := func(ctx context.Context) storagetest.Latencies {
		return storagetest.Load(t, ctx, 4, func(_, _ int) error {
			_, err := s.Session(ctx, "acme", hashes[rand.IntN(len(hashes))])
			if ctx.Err() != nil {
				return nil
			}
			return err
		})
	}
	time.Sleep(time.Until(expire.Add(5 * time.Second)))
	before, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	size, sizesBefore := dirSize(dir), sizesMB(dir)
	quiet, cancel := context.WithTimeout(ctx, 10*time.Second)
	l := gate(quiet)
	cancel()
	t.Logf("gate session reads, older half expired, nothing else running: %v", l)

	loaded, stop := context.WithCancel(ctx)
	done := make(chan storagetest.Latencies)
	go func() { done <- gate(loaded) }()
	t1 := time.Now()
	if err := s.db.Flatten(2); err != nil {
		t.Fatal(err)
	}
	flatten := time.Since(t1)
	stop()
	l2 := <-done
	after, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gate session reads while Flatten drops the expired half (%v): %v", flatten.Round(time.Millisecond), l2)
	t.Logf("records before: audit %d, audit copies per contact %d (live ones counted: the expired are invisible); database %.0f MB (%s) → %.0f MB after Flatten (%s)",
		before["audit"], before["audit index"], mb(size), sizesBefore, mb(dirSize(dir)), sizesMB(dir))
	// What Flatten left: expired events in tables no compaction rewrites
	// (their keys are older than any later write); the sweep deletes them.
	expiredLeft := expiredOnDisk(s, kAudit)
	loaded, stop = context.WithCancel(ctx)
	go func() { done <- gate(loaded) }()
	t1 = time.Now()
	swept, err := s.sweepAudit()
	if err != nil {
		t.Fatal(err)
	}
	sweep := time.Since(t1)
	stop()
	t.Logf("gate session reads while sweepAudit deletes them: %v", <-done)
	if err := s.Close(); err != nil { // the tombstones out of the memtable
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flatten(2); err != nil {
		t.Fatal(err)
	}
	remain := expiredOnDisk(s, kAudit)
	t.Logf("after Flatten %d expired events were still on disk; sweepAudit deleted %d in %v; after another Flatten %.0f MB (%s), %d expired left",
		expiredLeft, swept, sweep.Round(time.Millisecond), mb(dirSize(dir)), sizesMB(dir), remain)
	if swept != expiredLeft || remain != 0 {
		t.Errorf("the sweep deleted %d of the %d expired events left on disk; %d remain", swept, expiredLeft, remain)
	}
	if after["audit"] != n/2 || after["audit index"] != n/2 {
		t.Errorf("after the retention: %d events and %d index keys, want %d of each", after["audit"], after["audit index"], n/2)
	}
	newest("older half expired")
}

func dirSize(dir string) int64 {
	var n int64
	for _, b := range dirSizes(dir) {
		n += b
	}
	return n
}

// dirSizes is dirSize by kind of file: Badger's tables (.sst), value log
// (.vlog), memtable logs (.mem) and the rest.
func dirSizes(dir string) map[string]int64 {
	sizes := map[string]int64{}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				kind := filepath.Ext(path)
				if kind != ".sst" && kind != ".vlog" && kind != ".mem" {
					kind = "other"
				}
				sizes[kind] += fi.Sys().(*syscall.Stat_t).Blocks * 512 // as du counts: the value log is sparse
			}
		}
		return nil
	})
	return sizes
}

// sizesMB prints dirSizes in MB.
func sizesMB(dir string) string {
	var parts []string
	for kind, b := range dirSizes(dir) {
		parts = append(parts, fmt.Sprintf("%s %.0f MB", kind, mb(b)))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// expiredOnDisk counts the keys under prefix whose newest version has
// expired: invisible to reads, still in the tables.
func expiredOnDisk(s *Store, prefix string) (n int) {
	now := uint64(time.Now().Unix())
	_ = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true, Prefix: []byte(prefix)})
		defer it.Close()
		var last []byte
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().Key(); string(k) != string(last) {
				last = append(last[:0], k...)
				if exp := it.Item().ExpiresAt(); exp != 0 && exp <= now {
					n++
				}
			}
		}
		return nil
	})
	return n
}
