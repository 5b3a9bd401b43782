package badgerstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

// kAuditSortable marks a database whose audit keys all end in a
// storage.SortableID.
const kAuditSortable = kMeta + "audit-ids-sortable"

// legacyAuditIDLen is the length of the audit ids written before both
// backends used storage.SortableID: 16 hex digits of inverted nanoseconds
// (so that a forward scan was newest first) and 8 of randomness.
const legacyAuditIDLen = 24

// migrated reports whether the migration whose marker key is marker has
// run on db.
func migrated(db *badger.DB, marker string) (done bool, err error) {
	err = db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(marker))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		done = err == nil
		return err
	})
	return done, err
}

// migrateAuditIDs gives the audit events of an older database new ids,
// keeping each event's expiry, so that every key sorts by time again. It
// runs once per database; the marker makes later opens skip the scan.
func migrateAuditIDs(db *badger.DB) error {
	if done, err := migrated(db, kAuditSortable); err != nil || done {
		return err
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kAudit)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			cut := bytes.LastIndexByte(k, '/') + 1
			if len(k)-cut != legacyAuditIDLen {
				continue
			}
			var e storage.AuditEvent
			if err := item.Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return fmt.Errorf("audit event %s: %w", k, err)
			}
			e.ID = storage.SortableID(e.Time)
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			entry := badger.NewEntry(append(append([]byte{}, k[:cut]...), e.ID...), b)
			entry.ExpiresAt = item.ExpiresAt()
			if err := wb.SetEntry(entry); err != nil {
				return err
			}
			if err := wb.Delete(item.KeyCopy(nil)); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrating audit ids: %w", err)
	}
	if err := wb.Set([]byte(kAuditSortable), nil); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("migrating %d audit ids: %w", n, err)
	}
	return nil
}

// kAuditIndexed marks a database whose audit events of a contact all have
// their copy under the contact (kAuditIdx).
const kAuditIndexed = kMeta + "audit-contact-index"

// indexAuditContacts writes the copy under its contact of every audit
// event of a contact in an older database, with the event's expiry. It runs once per
// database; the marker makes later opens skip the scan.
func indexAuditContacts(db *badger.DB) error {
	if done, err := migrated(db, kAuditIndexed); err != nil || done {
		return err
	}
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kAudit), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var e storage.AuditEvent
			b, err := item.ValueCopy(nil)
			if err == nil {
				err = json.Unmarshal(b, &e)
			}
			if err != nil {
				return fmt.Errorf("audit event %s: %w", item.Key(), err)
			}
			if e.ContactID == "" {
				continue
			}
			entry := badger.NewEntry([]byte(kAuditIdx+e.Workspace+"/"+e.ContactID+"/"+e.ID), b)
			entry.ExpiresAt = item.ExpiresAt()
			if err := wb.SetEntry(entry); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("indexing audit events by contact: %w", err)
	}
	if err := wb.Set([]byte(kAuditIndexed), nil); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("indexing %d audit events by contact: %w", n, err)
	}
	return nil
}
