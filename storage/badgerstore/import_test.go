package badgerstore

import (
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage/storagetest"
)

// TestInterruptedImport: an import in several transactions that a crash
// cut short is rolled forward at the next open once committed, and rolled
// back (its staged chunks dropped, nothing applied) before.
func TestInterruptedImport(t *testing.T) {
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			ctx := t.Context()
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			cs := storagetest.Directory(3 * chunkContacts)
			chunks, err := split(cs)
			if err != nil || len(chunks) != 3 {
				t.Fatalf("split = %d chunks, %v", len(chunks), err)
			}
			// What writePlan leaves when the process dies after staging
			// (and committing) and applying the first chunk.
			mark := kImport + "acme"
			for i, c := range chunks {
				key := fmt.Sprintf("%s/%08d", mark, i)
				if err := s.update(func(txn *badger.Txn) error { return setJSON(txn, key, c, 0) }); err != nil {
					t.Fatal(err)
				}
			}
			if committed {
				if err := s.update(func(txn *badger.Txn) error { return txn.Set([]byte(mark), []byte("acme")) }); err != nil {
					t.Fatal(err)
				}
				if err := s.applyChunk("acme", chunks[0], mark+"/00000000"); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s, err = Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			list, err := s.Contacts(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if committed {
				want = len(cs)
			}
			if len(list) != want {
				t.Fatalf("after reopen: %d contacts, want %d", len(list), want)
			}
			if c, err := s.ContactByEmail(ctx, "acme", cs[len(cs)-1].Email); committed && (err != nil || c.ID != cs[len(cs)-1].ID) {
				t.Errorf("the last contact after roll-forward = %+v, %v", c, err)
			}
			left := 0
			_ = s.db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kImport)})
				defer it.Close()
				for it.Rewind(); it.Valid(); it.Next() {
					left++
				}
				return nil
			})
			if left != 0 {
				t.Errorf("%d journal keys left after reopen", left)
			}
			if _, err := s.Contact(ctx, "acme", cs[0].ID); committed != (err == nil) {
				t.Errorf("first contact after reopen: %v", err)
			}
		})
	}
}
