package badgerstore

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// TestMigrateAuditIDs opens a database holding events under the ids of
// older versions (inverted time) and checks they come back with sortable
// ids, in order with new events, keeping their expiry.
func TestMigrateAuditIDs(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := storagetest.NewClock()
	s, err := Open(dir, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	old := []time.Time{clock.Now().Add(-2 * time.Hour), clock.Now().Add(-time.Hour)}
	if err := s.db.Update(func(txn *badger.Txn) error {
		for i, at := range old {
			e := storage.AuditEvent{Time: at.UTC(), Workspace: "acme", Event: "signin", Reason: fmt.Sprintf("old%d", i)}
			e.ID = fmt.Sprintf("%016x%08x", uint64(math.MaxInt64-at.UnixNano()), i)
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := txn.SetEntry(badger.NewEntry([]byte(kAudit+"acme/"+e.ID), b).WithTTL(24 * time.Hour)); err != nil {
				return err
			}
		}
		return txn.Delete([]byte(kAuditSortable)) // as if written by an older version
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signin", Reason: "new"}); err != nil {
		t.Fatal(err)
	}
	es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range es {
		reasons = append(reasons, e.Reason)
		if at, ok := storage.SortableIDTime(e.ID); !ok || !at.Equal(e.Time) {
			t.Errorf("event %s: id %q is not a sortable id of its time %v", e.Reason, e.ID, e.Time)
		}
	}
	if fmt.Sprint(reasons) != "[new old1 old0]" {
		t.Fatalf("events after migration = %v, want [new old1 old0]", reasons)
	}
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kAudit + "acme/" + es[2].ID))
		if err != nil {
			return err
		}
		if left := time.Until(time.Unix(int64(item.ExpiresAt()), 0)); left < 23*time.Hour || left > 25*time.Hour {
			t.Errorf("migrated event expires in %v, want the original 24h", left)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestIndexAuditContacts opens a database whose events of a contact have
// no index keys yet (written by an older version) and checks that a query
// for the contact finds them, and that the index keys keep the events'
// expiry.
func TestIndexAuditContacts(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := storagetest.NewClock()
	s, err := Open(dir, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := s.db.Update(func(txn *badger.Txn) error {
		for i, c := range []string{"c-1", "c-2", "c-1", ""} {
			at := clock.Now().Add(time.Duration(i-5) * time.Minute).UTC()
			e := storage.AuditEvent{ID: storage.SortableID(at), Time: at, Workspace: "acme", Event: "signin", ContactID: c, Reason: fmt.Sprintf("old%d", i)}
			ids = append(ids, e.ID)
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := txn.SetEntry(badger.NewEntry([]byte(kAudit+"acme/"+e.ID), b).WithTTL(24 * time.Hour)); err != nil {
				return err
			}
		}
		return txn.Delete([]byte(kAuditIndexed)) // as if written by an older version
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signin", ContactID: "c-1", Reason: "new"}); err != nil {
		t.Fatal(err)
	}
	es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: "c-1"})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range es {
		reasons = append(reasons, e.Reason)
	}
	if fmt.Sprint(reasons) != "[new old2 old0]" {
		t.Fatalf("c-1's events after indexing = %v, want [new old2 old0]", reasons)
	}
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kAuditIdx + "acme/c-1/" + ids[0]))
		if err != nil {
			return err
		}
		if left := time.Until(time.Unix(int64(item.ExpiresAt()), 0)); left < 23*time.Hour || left > 25*time.Hour {
			t.Errorf("index key expires in %v, want the event's 24h", left)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
