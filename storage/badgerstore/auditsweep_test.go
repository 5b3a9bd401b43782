package badgerstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

// TestAuditSweepFreesExpiredEvents: audit events that expire in Badger's
// last level stay on disk through every compaction (their keys are never
// overlapped by a later write) until sweepAudit deletes them; events still
// within the retention, and other workspaces' live ones, are kept.
func TestAuditSweepFreesExpiredEvents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func(retention time.Duration) *Store {
		t.Helper()
		s, err := Open(dir, Options{AuditRetention: retention})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// versions counts every version under prefix, expired or not.
	versions := func(s *Store, prefix string) (n int) {
		t.Helper()
		_ = s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{AllVersions: true, Prefix: []byte(prefix)})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				n++
			}
			return nil
		})
		return n
	}
	// settle writes the memtable out (each close leaves a level-0 table,
	// and level 0 is compacted once it holds more than 4) and compacts
	// every level into one, the most Badger ever does to drop expired
	// entries.
	settles := 0
	settle := func(s *Store, retention time.Duration) *Store {
		t.Helper()
		settles++
		for i := range 5 {
			if err := s.db.Update(func(txn *badger.Txn) error {
				return txn.Set([]byte(fmt.Sprintf("%ssettle-%d-%d", kMeta, settles, i)), []byte("x"))
			}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(retention)
		}
		if err := s.db.Flatten(2); err != nil {
			t.Fatal(err)
		}
		for _, ti := range s.db.Tables() {
			if ti.Level == 0 {
				t.Fatalf("a table left in level 0 after Flatten: %+v", ti)
			}
		}
		return s
	}

	// Enough for the trail to fill several tables, as it does in use.
	const n = 20000
	// Long enough for the events to reach the last level while they live
	// (under the race detector the writes and settling take seconds).
	const retention = 15 * time.Second
	written := time.Now()
	s := open(retention)
	var events []storage.AuditEvent
	for i := range n {
		events = append(events, storage.AuditEvent{Workspace: "acme", Event: "code_sent", ContactID: fmt.Sprintf("c-%d", i%30), Time: time.Now()})
	}
	if err := s.ImportAudit(ctx, events); err != nil {
		t.Fatal(err)
	}
	s = settle(s, retention)
	if live := versions(s, kAudit); live != n || expiredOnDisk(s, kAudit) != 0 {
		t.Fatalf("settled in %v: %d trail entries, %d expired; want all %d live (a slower machine needs a longer retention here)", time.Since(written), live, expiredOnDisk(s, kAudit), n)
	}
	t.Logf("%d events written and settled in %v", n, time.Since(written).Round(time.Millisecond))
	time.Sleep(time.Until(written.Add(retention + 2*time.Second))) // past it, rounded up to Badger's whole seconds
	s = settle(s, retention)
	// The leak: compactions rewrite only the tables a later write
	// overlaps, and none lands among the expired keys.
	leftA, leftAI := expiredOnDisk(s, kAudit), expiredOnDisk(s, kAuditIdx)
	if leftA < n/2 || leftAI < n/2 {
		t.Fatalf("before the sweep: %d expired trail entries and %d index copies on disk, want most of the %d still there (if Badger now drops them by itself, the sweep is no longer needed)", leftA, leftAI, n)
	}

	// Events within a longer retention, written after the expired ones:
	// acme's sorts after its expired trail, zeta's after all of it.
	s.Reconfigure(time.Hour, nil)
	for _, ws := range []string{"acme", "zeta"} {
		if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: ws, Event: "sign_in", ContactID: "c-1"}); err != nil {
			t.Fatal(err)
		}
	}
	swept, err := s.sweepAudit()
	if err != nil || swept != leftA {
		t.Fatalf("sweepAudit = %d, %v; want the %d expired events", swept, err, leftA)
	}
	if a, ai := expiredOnDisk(s, kAudit), expiredOnDisk(s, kAuditIdx); a != 0 || ai != 0 {
		t.Fatalf("after the sweep: %d expired trail entries and %d index copies not deleted", a, ai)
	}
	if again, err := s.sweepAudit(); err != nil || again != 0 {
		t.Fatalf("a second sweep = %d, %v; want nothing left to delete", again, err)
	}
	s = settle(s, time.Hour)
	t.Cleanup(func() { _ = s.Close() })

	if a, ai := versions(s, kAudit), versions(s, kAuditIdx); a != 2 || ai != 2 {
		t.Fatalf("after the sweep and a compaction: %d trail and %d index entries on disk, want the 2 live ones", a, ai)
	}
	for _, ws := range []string{"acme", "zeta"} {
		es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: ws, ContactID: "c-1"})
		if err != nil || len(es) != 1 || es[0].Event != "sign_in" {
			t.Fatalf("%s's live event after the sweep: %+v, %v", ws, es, err)
		}
	}
}
