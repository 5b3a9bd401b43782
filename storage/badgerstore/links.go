package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

// Link keys: the link under its workspace, and an empty index entry per
// contact, both with the link's expiry as their TTL.
const (
	kLink    = "l/"  // l/<ws>/<id>
	kLinkIdx = "li/" // li/<ws>/<contact id>/<id>
)

func linkKey(ws, id string) string { return kLink + ws + "/" + id }

func linkIdxKey(l storage.PortalLink) string {
	return kLinkIdx + l.Workspace + "/" + l.ContactID + "/" + l.ID
}

// PutLink implements storage.Store.
func (s *Store) PutLink(_ context.Context, l storage.PortalLink) error {
	ttl := l.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return errors.New("link already expired")
	}
	return s.update(func(txn *badger.Txn) error {
		if err := setJSON(txn, linkKey(l.Workspace, l.ID), l, ttl); err != nil {
			return err
		}
		return txn.SetEntry(badger.NewEntry([]byte(linkIdxKey(l)), nil).WithTTL(ttl + time.Second))
	})
}

// Link implements storage.Store.
func (s *Store) Link(_ context.Context, ws, id string) (storage.PortalLink, error) {
	var l storage.PortalLink
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, linkKey(ws, id), &l) })
	if err == nil && !l.Live(s.now()) {
		return storage.PortalLink{}, storage.ErrNotFound
	}
	return l, err
}

// Links implements storage.Store: a scan of the workspace's links, or of
// the contact's index.
func (s *Store) Links(_ context.Context, ws, contactID string) ([]storage.PortalLink, error) {
	now := s.now()
	var out []storage.PortalLink
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := kLink + ws + "/"
		if contactID != "" {
			prefix = kLinkIdx + ws + "/" + contactID + "/"
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: contactID == ""})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var l storage.PortalLink
			if contactID == "" {
				if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &l) }); err != nil {
					return err
				}
			} else {
				k := string(it.Item().Key())
				switch err := getJSON(txn, linkKey(ws, k[strings.LastIndexByte(k, '/')+1:]), &l); {
				case errors.Is(err, storage.ErrNotFound):
					continue
				case err != nil:
					return err
				}
			}
			if l.Live(now) {
				out = append(out, l)
			}
		}
		return nil
	})
	storage.SortLinks(out)
	return out, err
}

// DeleteLink implements storage.Store.
func (s *Store) DeleteLink(_ context.Context, ws, id string) error {
	return s.update(func(txn *badger.Txn) error {
		var l storage.PortalLink
		if err := getJSON(txn, linkKey(ws, id), &l); err != nil {
			return err
		}
		if err := txn.Delete([]byte(linkKey(ws, id))); err != nil {
			return err
		}
		if err := txn.Delete([]byte(linkIdxKey(l))); err != nil {
			return err
		}
		if !l.Live(s.now()) {
			return storage.ErrNotFound
		}
		return nil
	})
}

// DeleteContactLinks implements storage.Store, in one transaction.
func (s *Store) DeleteContactLinks(_ context.Context, ws, contactID string) (int, error) {
	prefix := []byte(kLinkIdx + ws + "/" + contactID + "/")
	n := 0
	err := s.update(func(txn *badger.Txn) error {
		n = 0
		now := s.now()
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		var keys [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			lk := linkKey(ws, string(k[len(prefix):]))
			var l storage.PortalLink
			switch err := getJSON(txn, lk, &l); {
			case err == nil:
				if l.Live(now) {
					n++
				}
			case !errors.Is(err, storage.ErrNotFound):
				return err
			}
			if err := txn.Delete(k); err != nil {
				return err
			}
			if err := txn.Delete([]byte(lk)); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// OpenLink implements storage.Store: read, check and count in one
// transaction; a concurrent open conflicts and is retried.
func (s *Store) OpenLink(_ context.Context, ws, id string) (storage.PortalLink, error) {
	key := linkKey(ws, id)
	var l storage.PortalLink
	err := s.update(func(txn *badger.Txn) error {
		l = storage.PortalLink{}
		if err := getJSON(txn, key, &l); err != nil {
			return err
		}
		now := s.now()
		if !l.Live(now) {
			return storage.ErrNotFound
		}
		l.Opens++
		l.LastOpenedAt = now.UTC()
		return setJSON(txn, key, l, l.ExpiresAt.Sub(now))
	})
	if err != nil {
		return storage.PortalLink{}, err
	}
	return l, nil
}
