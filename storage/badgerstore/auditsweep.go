package badgerstore

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

// Audit events expire by TTL, but an expired entry leaves the disk only
// when a compaction rewrites the table that holds it, and Badger rewrites
// a table of its last level only when a write from above overlaps it (or
// when the table holds 10 MB of data it already knew to be overwritten).
// The trail's keys grow with time (a/<ws>/<SortableID>), so no later write
// ever overlaps an old event again: by TTL alone, the events of every
// retention period gone by would stay on disk for good. In a test of
// 1,000,000 events, 441,377 of the 500,000 expired ones were still there
// after a full compaction. sweepAudit deletes expired events and their
// index copies, so the compactions that follow drop both and the
// tombstones with them.

// auditSweepBatch is how many expired events one batch of the sweep
// deletes; a sweep runs batches until one finds fewer, at most
// auditSweepBatches of them.
const (
	auditSweepBatch   = 10_000
	auditSweepBatches = 100
)

// sweepAudit deletes the expired audit events it finds, oldest first, and
// returns how many. It stops between batches when the store closes.
func (s *Store) sweepAudit() (int, error) {
	total := 0
	from := []byte(kAudit)
	for range auditSweepBatches {
		select {
		case <-s.stop:
			return total, nil
		default:
		}
		n, next, err := s.sweepAuditBatch(from)
		total += n
		if err != nil || n < auditSweepBatch {
			return total, err
		}
		from = next
	}
	return total, nil
}

// sweepAuditBatch deletes up to auditSweepBatch expired events from the
// key from on, and returns where the next batch starts. A workspace's
// events expire in the order of their keys, so its scan stops at its
// first live event.
func (s *Store) sweepAuditBatch(from []byte) (int, []byte, error) {
	now := uint64(time.Now().Unix()) // Badger's own clock for TTLs
	var dead [][]byte
	var next []byte
	events := 0
	err := s.db.View(func(txn *badger.Txn) error {
		// Expired entries are only visible to an iterator over all
		// versions.
		it := txn.NewIterator(badger.IteratorOptions{AllVersions: true, Prefix: []byte(kAudit)})
		defer it.Close()
		var last []byte
		for it.Seek(from); it.Valid() && events < auditSweepBatch; {
			item := it.Item()
			k := item.Key()
			if bytes.Equal(k, last) {
				it.Next() // an older version of a key already judged
				continue
			}
			last = append(last[:0], k...)
			switch exp := item.ExpiresAt(); {
			case exp != 0 && exp <= now:
				key := item.KeyCopy(nil)
				dead = append(dead, key)
				events++
				next = key
				var e storage.AuditEvent
				if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err == nil && e.ContactID != "" {
					ws, id := trailKey(key)
					dead = append(dead, []byte(kAuditIdx+ws+"/"+e.ContactID+"/"+id))
				}
				it.Next()
			case item.IsDeletedOrExpired():
				it.Next() // a tombstone: swept before, not yet compacted away
			default:
				// Live: the rest of this workspace's trail is newer.
				ws, _ := trailKey(k)
				it.Seek([]byte(kAudit + ws + "/\xff"))
			}
		}
		return nil
	})
	if err != nil || len(dead) == 0 {
		return 0, nil, err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range dead {
		if err := wb.Delete(k); err != nil {
			return 0, nil, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, nil, err
	}
	return events, next, nil
}

// trailKey is the workspace and the event id of a trail key
// (a/<ws>/<id>).
func trailKey(k []byte) (ws, id string) {
	ws, id, _ = strings.Cut(string(k[len(kAudit):]), "/")
	return ws, id
}
