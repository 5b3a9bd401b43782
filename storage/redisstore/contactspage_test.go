package redisstore_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// TestContactsPageIndex checks the sorted id index behind a page of
// contacts where it was not kept: a workspace written by a version
// without it, and one where an older instance added a contact and removed
// another behind its back. Each page is still right, and the index is in
// step again after it.
func TestContactsPageIndex(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	dir := storagetest.Directory(2500)
	if err := s.PutContacts(ctx, "acme", dir); err != nil {
		t.Fatal(err)
	}
	pre := prefix + "{ws:acme}:"
	ids := func() []string {
		var got []string
		for cursor := ""; ; {
			page, next, err := storage.ContactsPage(ctx, s, "acme", cursor, 700)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range page {
				got = append(got, c.ID)
			}
			if next == "" {
				return got
			}
			cursor = next
		}
	}
	want := make([]string, len(dir))
	for i, c := range dir {
		want[i] = c.ID
	}
	if got := ids(); !slices.Equal(got, want) {
		t.Fatalf("pages: %d ids, want %d", len(got), len(want))
	}
	zcard := func() string {
		n, err := command(srv.addr(), "ZCARD", pre+"idz")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// As a version without the index left it.
	if _, err := command(srv.addr(), "DEL", pre+"idz"); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, want) {
		t.Fatalf("pages without the index: %d ids, want %d", len(got), len(want))
	}
	if n := zcard(); n != fmt.Sprint(len(dir)) {
		t.Fatalf("index after the pages: %s ids, want %d", n, len(dir))
	}

	// An older instance: one contact added to the set only, another
	// removed from it only; the sizes still agree.
	extra := storage.Contact{ID: "c-000000a", Email: "extra@acme.example", Name: "Extra", Status: "active", Source: "manual"}
	if err := s.PutContacts(ctx, "acme", []storage.Contact{extra}); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"ZREM", pre + "idz", extra.ID},
		{"SREM", pre + "ids", dir[7].ID},
		{"DEL", pre + "c:" + dir[7].ID},
	} {
		if _, err := command(srv.addr(), cmd...); err != nil {
			t.Fatal(err)
		}
	}
	want = slices.Concat(want[:1], []string{extra.ID}, want[1:7], want[8:])
	if got := ids(); !slices.Equal(got, want) {
		t.Fatalf("pages after an older instance's writes: %d ids (%v …), want %d (%v …)", len(got), got[:3], len(want), want[:3])
	}
	if n := zcard(); n != fmt.Sprint(len(want)) {
		t.Fatalf("index after the pages: %s ids, want %d", n, len(want))
	}
	if _, err := s.DeleteContact(ctx, "acme", extra.ID); err != nil {
		t.Fatal(err)
	}
	if n := zcard(); n != fmt.Sprint(len(want)-1) {
		t.Fatalf("index after a delete: %s ids, want %d", n, len(want)-1)
	}
}
