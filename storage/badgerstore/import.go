package badgerstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/kdesk/portalgate/storage"
)

// Imports larger than one transaction. Badger caps a transaction at a
// share of the memtable (8 MB here): about 4,000 contacts. A write of
// contacts is therefore planned first, against one snapshot and under
// contactsMu (so nothing else writes contacts until it is done): the plan
// is the list of final records, and an email conflict is found before
// anything is written, so a refused import changes nothing. A plan of one
// chunk is written in one transaction. A larger one goes through a
// journal:
//
//	m/import/<ws>/<seq>   a chunk of the plan (JSON list of contacts)
//	m/import/<ws>         the commit mark, written after every chunk
//
// then each chunk is applied in a transaction of its own that also
// deletes it, and the mark goes last. A crash before the mark rolls back
// (the chunks are deleted at the next open); a crash after it rolls
// forward (the next open applies the chunks left). Readers may see a
// large import half applied while it runs; its outcome is all or nothing.

// kImport prefixes the journal of an import in several transactions.
const kImport = kMeta + "import/"

// Chunk bounds: well inside Badger's transaction limit, counting the
// indexes and the sessions and codes a disabled contact loses.
const (
	chunkContacts = 200
	chunkBytes    = 96 << 10
)

// PutContacts implements storage.Store.
func (s *Store) PutContacts(_ context.Context, ws string, contacts []storage.Contact) error {
	s.contactsMu.Lock()
	defer s.contactsMu.Unlock()
	if len(contacts) == 0 {
		return nil
	}
	if err := s.finishImports(); err != nil {
		return err
	}
	chunks, err := split(contacts)
	if err != nil {
		return err
	}
	if len(chunks) > 1 {
		stored, err := s.storedContacts(ws)
		if err != nil {
			return err
		}
		if err := storage.CheckEmails(stored, contacts); err != nil {
			return err
		}
	}
	return s.writePlan(ws, chunks)
}

// ReplaceContacts implements storage.Store.
func (s *Store) ReplaceContacts(_ context.Context, ws string, set storage.ContactSet, contacts []storage.Contact) (storage.ReplaceResult, error) {
	if err := set.Validate(); err != nil {
		return storage.ReplaceResult{}, err
	}
	s.contactsMu.Lock()
	defer s.contactsMu.Unlock()
	if err := s.finishImports(); err != nil {
		return storage.ReplaceResult{}, err
	}
	stored, err := s.storedContacts(ws)
	if err != nil {
		return storage.ReplaceResult{}, err
	}
	write, res := storage.PlanReplace(stored, set, contacts)
	if err := storage.CheckEmails(stored, write); err != nil {
		return storage.ReplaceResult{}, err
	}
	chunks, err := split(write)
	if err != nil {
		return storage.ReplaceResult{}, err
	}
	return res, s.writePlan(ws, chunks)
}

// storedContacts reads every contact of ws from one snapshot, by id.
func (s *Store) storedContacts(ws string) (map[string]storage.Contact, error) {
	stored := map[string]storage.Contact{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kContact + ws + "/"), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var c storage.Contact
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &c) }); err != nil {
				return err
			}
			stored[c.ID] = c
		}
		return nil
	})
	return stored, err
}

// split cuts a plan into chunks that each fit in one transaction.
func split(cs []storage.Contact) ([][]storage.Contact, error) {
	var chunks [][]storage.Contact
	start, size := 0, 0
	for i, c := range cs {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, err
		}
		if i > start && (i-start == chunkContacts || size+len(b) > chunkBytes) {
			chunks = append(chunks, cs[start:i])
			start, size = i, 0
		}
		size += len(b)
	}
	if start < len(cs) {
		chunks = append(chunks, cs[start:])
	}
	return chunks, nil
}

// writePlan writes the chunks of a checked plan: one in one transaction,
// more through the journal.
func (s *Store) writePlan(ws string, chunks [][]storage.Contact) error {
	switch len(chunks) {
	case 0:
		return nil
	case 1:
		return s.applyChunk(ws, chunks[0], "")
	}
	mark := kImport + ws
	keys := make([]string, len(chunks))
	for i, c := range chunks {
		keys[i] = fmt.Sprintf("%s/%08d", mark, i)
		if err := s.update(func(txn *badger.Txn) error { return setJSON(txn, keys[i], c, 0) }); err != nil {
			s.rollBack(mark)
			return fmt.Errorf("staging contacts: %w", err)
		}
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Set([]byte(mark), []byte(ws)) }); err != nil {
		s.rollBack(mark)
		return fmt.Errorf("staging contacts: %w", err)
	}
	for i, c := range chunks {
		if err := s.applyChunk(ws, c, keys[i]); err != nil {
			return fmt.Errorf("writing contacts (finished at the next write or start): %w", err)
		}
	}
	return s.update(func(txn *badger.Txn) error { return txn.Delete([]byte(mark)) })
}

// applyChunk writes contacts in one transaction, deleting the journal
// entry key with them when there is one.
func (s *Store) applyChunk(ws string, cs []storage.Contact, key string) error {
	now := s.now().UTC()
	var ended []string
	err := s.update(func(txn *badger.Txn) error {
		var err error
		if ended, err = s.putContacts(txn, ws, cs, now); err != nil {
			return err
		}
		if key != "" {
			return txn.Delete([]byte(key))
		}
		return nil
	})
	return s.contactsWritten(ws, len(cs), ended, err)
}

// rollBack deletes the staged chunks of an import that was not committed.
func (s *Store) rollBack(mark string) {
	if err := s.update(func(txn *badger.Txn) error { return deletePrefix(txn, mark+"/") }); err != nil {
		s.log.Load().Warn("discarding staged contacts (again at the next write or start)", zap.Error(err))
	}
}

// finishImports completes what an interrupted import left in the journal:
// a committed one rolls forward, an uncommitted one back. The caller holds
// contactsMu, or is Open.
func (s *Store) finishImports() error {
	type pending struct {
		committed bool
		chunks    []string
	}
	found := map[string]*pending{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kImport)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			ws, seq, isChunk := strings.Cut(strings.TrimPrefix(k, kImport), "/")
			p := found[ws]
			if p == nil {
				p = &pending{}
				found[ws] = p
			}
			if isChunk && seq != "" {
				p.chunks = append(p.chunks, k)
			} else {
				p.committed = true
			}
		}
		return nil
	})
	if err != nil || len(found) == 0 {
		return err
	}
	for ws, p := range found {
		mark := kImport + ws
		if !p.committed {
			s.log.Load().Info("discarding an import of contacts that was not committed", zap.String("workspace", ws))
			if err := s.update(func(txn *badger.Txn) error { return deletePrefix(txn, mark+"/") }); err != nil {
				return err
			}
			continue
		}
		for _, k := range p.chunks { // in order: keys sort by sequence
			var cs []storage.Contact
			if err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, k, &cs) }); err != nil {
				return err
			}
			if err := s.applyChunk(ws, cs, k); err != nil {
				return err
			}
		}
		if err := s.update(func(txn *badger.Txn) error { return txn.Delete([]byte(mark)) }); err != nil {
			return err
		}
		s.log.Load().Info("finished an interrupted import of contacts", zap.String("workspace", ws), zap.Int("chunks_left", len(p.chunks)))
	}
	return nil
}
