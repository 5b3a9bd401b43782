package badgerstore_test

import (
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// benchContacts is the size of the contact benchmarks' workspace:
// PORTALGATE_BENCH_CONTACTS, default 1,000, in a store compressed as
// PORTALGATE_BENCH_COMPRESSION says (default: the store's, zstd).
//
//	PORTALGATE_BENCH_CONTACTS=1000000 go test -run '^$' -bench 'ContactByEmail|ContactsPage' ./storage/badgerstore/
func benchContacts(b *testing.B) (*badgerstore.Store, []storage.Contact) {
	n, _ := strconv.Atoi(os.Getenv("PORTALGATE_BENCH_CONTACTS"))
	if n <= 0 {
		n = 1000
	}
	s, err := badgerstore.Open(b.TempDir(), badgerstore.Options{Compression: os.Getenv("PORTALGATE_BENCH_COMPRESSION")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	cs := storagetest.Directory(n)
	for batch := range slices.Chunk(cs, 200) {
		if err := s.PutContacts(b.Context(), "acme", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "contacts")
	return s, cs
}

// BenchmarkContactByEmail looks contacts up by email, in a random order,
// as every emailed-code sign-in does (no cache: an index read and the
// record).
func BenchmarkContactByEmail(b *testing.B) {
	s, cs := benchContacts(b)
	order := mrand.Perm(len(cs))
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		want := cs[order[i%len(cs)]]
		c, err := s.ContactByEmail(ctx, "acme", want.Email)
		if err != nil || c.ID != want.ID {
			b.Fatalf("ContactByEmail(%s) = %+v, %v", want.Email, c, err)
		}
		i++
	}
}

// BenchmarkContactsPage reads one page of 100 contacts from a random
// place in the workspace, as GET contacts?limit=100&cursor= does.
func BenchmarkContactsPage(b *testing.B) {
	s, cs := benchContacts(b)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		after := cs[mrand.IntN(len(cs))].ID
		page, _, err := storage.ContactsPage(ctx, s, "acme", after, 100)
		if err != nil || len(page) == 0 && after != cs[len(cs)-1].ID {
			b.Fatalf("ContactsPage after %s = %d contacts, %v", after, len(page), err)
		}
	}
}
