package badgerstore

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

// kGroup keys directory groups: g/<ws>/<id>.
const kGroup = "g/"

// PutGroup implements storage.Store.
func (s *Store) PutGroup(_ context.Context, g storage.Group) error {
	g.UpdatedAt = s.now().UTC()
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, kGroup+g.Workspace+"/"+g.ID, g, 0) })
}

// Group implements storage.Store.
func (s *Store) Group(_ context.Context, ws, id string) (storage.Group, error) {
	var g storage.Group
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, kGroup+ws+"/"+id, &g) })
	return g, err
}

// Groups implements storage.Store.
func (s *Store) Groups(_ context.Context, ws string) ([]storage.Group, error) {
	var out []storage.Group
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(kGroup + ws + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var g storage.Group
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &g) }); err != nil {
				return err
			}
			out = append(out, g)
		}
		return nil
	})
	return out, err
}

// DeleteGroup implements storage.Store.
func (s *Store) DeleteGroup(_ context.Context, ws, id string) error {
	key := []byte(kGroup + ws + "/" + id)
	return s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(key); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return storage.ErrNotFound
			}
			return err
		}
		return txn.Delete(key)
	})
}
