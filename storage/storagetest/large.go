package storagetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// Directory returns n valid, normalized contacts c-000000… with emails
// p000000@acme.example…, the first half from the directory.
func Directory(n int) []storage.Contact {
	cs := make([]storage.Contact, n)
	for i := range cs {
		cs[i] = storage.Contact{ID: fmt.Sprintf("c-%06d", i), Email: fmt.Sprintf("p%06d@acme.example", i),
			Name: fmt.Sprintf("Person %d", i), Status: storage.StatusActive, Source: storage.SourceManual}
		if i < n/2 {
			cs[i].Source, cs[i].DirectoryID = storage.SourceDirectory, fmt.Sprintf("d-%06d", i)
		}
	}
	return cs
}

// largeDirectory is the size of the conformance suite's large imports:
// several of Badger's transactions, and still fast.
const largeDirectory = 5000

// testLargeDirectory: imports far larger than one transaction have the
// outcome a small one has, all or nothing.
func testLargeDirectory(t *testing.T, open Opener) {
	const ws = "acme"
	t.Run("PutContacts", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		dir := Directory(largeDirectory)
		must(t, "PutContacts", s.PutContacts(ctx, ws, dir))
		wantCount(t, ctx, s, ws, largeDirectory)
		last := dir[len(dir)-1]
		c, err := s.ContactByEmail(ctx, ws, last.Email)
		wantContact(t, "ContactByEmail of the last", c, err, last)

		// A conflict at the very end refuses the whole batch: nothing of
		// it is written.
		taken := Directory(largeDirectory)
		for i := range taken {
			taken[i].Name = "Changed"
		}
		taken = append(taken, storage.Contact{ID: "x-1", Email: dir[0].Email, Status: storage.StatusActive, Source: storage.SourceManual})
		if err := s.PutContacts(ctx, ws, taken); err == nil {
			t.Fatal("PutContacts with a taken email at the end succeeded")
		}
		for _, i := range []int{0, largeDirectory / 2, largeDirectory - 1} {
			c, err := s.Contact(ctx, ws, dir[i].ID)
			wantContact(t, "a contact after the refused batch", c, err, dir[i])
		}
		if _, err := s.Contact(ctx, ws, "x-1"); err == nil {
			t.Error("the refused batch's conflicting contact was written")
		}
	})

	t.Run("ReplaceContacts", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		dir := Directory(largeDirectory)
		res, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, dir)
		must(t, "ReplaceContacts", err)
		if res != (storage.ReplaceResult{Upserted: largeDirectory}) {
			t.Fatalf("first ReplaceContacts = %+v", res)
		}
		// A contact the next set leaves out is signed in.
		gone := dir[largeDirectory-1]
		now := clock.Now()
		sess := storage.Session{IDHash: newHash(t), Workspace: ws, ContactID: gone.ID, Method: "code", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
		must(t, "PutSession", s.PutSession(ctx, sess))

		// The next set: 1,000 left out, 500 changed, 500 new.
		next := append([]storage.Contact{}, dir[:largeDirectory-1000]...)
		for i := range 500 {
			next[i].Name = "Renamed"
		}
		next = append(next, Directory(largeDirectory + 500)[largeDirectory:]...)
		res, err = s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, next)
		must(t, "ReplaceContacts with the next set", err)
		if want := (storage.ReplaceResult{Upserted: 1000, Disabled: 1000, Unchanged: largeDirectory - 1500}); res != want {
			t.Fatalf("ReplaceContacts with the next set = %+v, want %+v", res, want)
		}
		wantCount(t, ctx, s, ws, largeDirectory+500)
		if c, err := s.Contact(ctx, ws, gone.ID); err != nil || c.Active() {
			t.Errorf("a contact left out = %+v, %v; want disabled", c, err)
		}
		if _, err := s.Session(ctx, ws, sess.IDHash); err == nil {
			t.Error("a contact left out kept its session")
		}
		if c, err := s.Contact(ctx, ws, dir[0].ID); err != nil || c.Name != "Renamed" {
			t.Errorf("a changed contact = %+v, %v", c, err)
		}

		// Refused at the end: nothing changes, not even the disabling.
		bad := append(append([]storage.Contact{}, dir[:100]...), storage.Contact{ID: "x-1", Email: dir[200].Email, Status: storage.StatusActive, Source: storage.SourceManual})
		if _, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, bad); err == nil {
			t.Fatal("ReplaceContacts with a taken email succeeded")
		}
		if c, err := s.Contact(ctx, ws, dir[300].ID); err != nil || !c.Active() {
			t.Errorf("after the refused replace, a contact = %+v, %v; want still active", c, err)
		}
	})
}

// testReplaceBySource: a scripted sync replaces every contact of a source,
// whatever imported it, and leaves the other source alone.
func testReplaceBySource(t *testing.T, open Opener) {
	const ws = "acme"
	ctx, s, clock := setup(t, open)
	dir := Directory(4) // c-000000 and c-000001 from the directory, then two manual
	must(t, "PutContacts", s.PutContacts(ctx, ws, dir[1:]))
	fromFile := dir[0]
	_, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, []storage.Contact{fromFile})
	must(t, "ReplaceContacts by origin", err)
	now := clock.Now()
	sess := storage.Session{IDHash: newHash(t), Workspace: ws, ContactID: dir[1].ID, Method: "code", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
	must(t, "PutSession", s.PutSession(ctx, sess))

	// The batch: c-000003 (manual until now) and a new one, both written
	// as directory contacts; c-000000 and c-000001 are directory contacts
	// it leaves out.
	newcomer := storage.Contact{ID: "c-new", Email: "new@acme.example", Status: storage.StatusActive, Source: storage.SourceManual}
	batch := []storage.Contact{dir[3], newcomer}
	set := storage.ContactSet{Source: storage.SourceDirectory}
	res, err := s.ReplaceContacts(ctx, ws, set, batch)
	must(t, "ReplaceContacts by source", err)
	if want := (storage.ReplaceResult{Upserted: 2, Disabled: 2}); res != want {
		t.Fatalf("ReplaceContacts by source = %+v, want %+v", res, want)
	}
	for _, id := range []string{dir[0].ID, dir[1].ID} {
		if c, err := s.Contact(ctx, ws, id); err != nil || c.Active() {
			t.Errorf("directory contact %s left out = %+v, %v; want disabled", id, c, err)
		}
	}
	if _, err := s.Session(ctx, ws, sess.IDHash); err == nil {
		t.Error("a directory contact left out kept its session")
	}
	if c, err := s.Contact(ctx, ws, dir[2].ID); err != nil || !c.Active() || c.Source != storage.SourceManual {
		t.Errorf("a manual contact = %+v, %v; want left alone", c, err)
	}
	for _, id := range []string{dir[3].ID, "c-new"} {
		if c, err := s.Contact(ctx, ws, id); err != nil || !c.Active() || c.Source != storage.SourceDirectory || c.Origin != "" {
			t.Errorf("batch contact %s = %+v, %v; want active, from the directory, of no import", id, c, err)
		}
	}
	res, err = s.ReplaceContacts(ctx, ws, set, batch)
	must(t, "ReplaceContacts by source again", err)
	if want := (storage.ReplaceResult{Unchanged: 2}); res != want {
		t.Fatalf("ReplaceContacts by source again = %+v, want %+v", res, want)
	}
	if _, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{}, batch); err == nil {
		t.Error("ReplaceContacts with an empty set succeeded")
	}
}

func wantCount(t *testing.T, ctx context.Context, s storage.Store, ws string, n int) {
	t.Helper()
	list, err := s.Contacts(ctx, ws)
	must(t, "Contacts", err)
	if len(list) != n {
		t.Fatalf("Contacts = %d, want %d", len(list), n)
	}
}

// MeasureImport imports n contacts into an empty store three ways (PutContacts, ReplaceContacts of a
// new set, ReplaceContacts of the same set again) and logs how long each
// took. Backends' tests run it outside CI, when PORTALGATE_IMPORT_CONTACTS
// names n.
func MeasureImport(t *testing.T, s storage.Store, ws string, n int) {
	ctx := t.Context()
	dir := Directory(n)
	start := time.Now()
	must(t, "PutContacts", s.PutContacts(ctx, ws, dir))
	put := time.Since(start)
	next := Directory(n)
	for i := range next {
		next[i].Name = "Renamed"
	}
	start = time.Now()
	res, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, next)
	must(t, "ReplaceContacts", err)
	replace := time.Since(start)
	start = time.Now()
	again, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, next)
	must(t, "ReplaceContacts again", err)
	same := time.Since(start)
	wantCount(t, ctx, s, ws, n)
	t.Logf("%d contacts: PutContacts %s; ReplaceContacts, every one changed, %s (%+v); the same set again %s (%+v)",
		n, put.Round(time.Millisecond), replace.Round(time.Millisecond), res, same.Round(time.Millisecond), again)
}

// testContactsPage: pages of contacts, by id, add up to the whole list,
// with the store's own paging and with the fallback that reads them all.
func testContactsPage(t *testing.T, open Opener) {
	ctx, s, _ := setup(t, open)
	dir := Directory(450)
	must(t, "PutContacts", s.PutContacts(ctx, "acme", dir))
	must(t, "PutContacts other", s.PutContacts(ctx, "other", Directory(3)))
	for name, st := range map[string]storage.Contacts{"store": s, "fallback": onlyContacts{s}} {
		var got []string
		cursor := ""
		for range 10 {
			page, next, err := storage.ContactsPage(ctx, st, "acme", cursor, 100)
			must(t, name+": ContactsPage", err)
			for _, c := range page {
				got = append(got, c.ID)
			}
			if next == "" {
				break
			}
			if next != page[len(page)-1].ID || len(page) != 100 {
				t.Fatalf("%s: a page of %d ending %s has next cursor %q", name, len(page), page[len(page)-1].ID, next)
			}
			cursor = next
		}
		if len(got) != len(dir) {
			t.Fatalf("%s: pages hold %d contacts, want %d", name, len(got), len(dir))
		}
		for i, id := range got {
			if id != dir[i].ID {
				t.Fatalf("%s: contact %d of the pages is %s, want %s", name, i, id, dir[i].ID)
			}
		}
		// A cursor between ids, and one past the last.
		page, _, err := storage.ContactsPage(ctx, st, "acme", "c-000099x", 2)
		must(t, name+": ContactsPage between", err)
		if len(page) != 2 || page[0].ID != "c-000100" {
			t.Errorf("%s: after c-000099x = %+v, want c-000100 first", name, page)
		}
		page, next, err := storage.ContactsPage(ctx, st, "acme", dir[len(dir)-1].ID, 100)
		must(t, name+": ContactsPage past the end", err)
		if len(page) != 0 || next != "" {
			t.Errorf("%s: past the last = %d contacts, next %q", name, len(page), next)
		}
	}
}

// onlyContacts hides every method of a store but those of storage.Contacts.
type onlyContacts struct{ c storage.Contacts }

func (o onlyContacts) PutContacts(ctx context.Context, ws string, cs []storage.Contact) error {
	return o.c.PutContacts(ctx, ws, cs)
}

func (o onlyContacts) ReplaceContacts(ctx context.Context, ws string, set storage.ContactSet, cs []storage.Contact) (storage.ReplaceResult, error) {
	return o.c.ReplaceContacts(ctx, ws, set, cs)
}

func (o onlyContacts) Contact(ctx context.Context, ws, id string) (storage.Contact, error) {
	return o.c.Contact(ctx, ws, id)
}

func (o onlyContacts) ContactByEmail(ctx context.Context, ws, email string) (storage.Contact, error) {
	return o.c.ContactByEmail(ctx, ws, email)
}

func (o onlyContacts) ContactByDirectoryID(ctx context.Context, ws, id string) (storage.Contact, error) {
	return o.c.ContactByDirectoryID(ctx, ws, id)
}

func (o onlyContacts) Contacts(ctx context.Context, ws string) ([]storage.Contact, error) {
	return o.c.Contacts(ctx, ws)
}

func (o onlyContacts) DeleteContact(ctx context.Context, ws, id string) (int, error) {
	return o.c.DeleteContact(ctx, ws, id)
}
