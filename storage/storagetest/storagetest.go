// Package storagetest is the conformance suite every storage backend must
// pass. A backend's tests call Run with a function that opens a fresh, empty
// store on a clock the suite controls, so expiry is tested without sleeping.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// Clock is a fake clock that only moves forward, by Advance. It starts at
// or after the real time, so backends that also hand TTLs to a database
// running on real time never see an entry vanish before the fake clock says
// it should.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to the next whole minute of real time, in UTC.
func NewClock() *Clock {
	return &Clock{t: time.Now().UTC().Truncate(time.Minute).Add(time.Minute)}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d; a negative d is a test bug.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		panic("storagetest: clock moved backwards")
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Opener returns a fresh, empty store that reads time from now. It registers
// its own cleanup on t.
type Opener func(t *testing.T, now func() time.Time) storage.Store

// Run runs the conformance suite against the stores open returns. Every
// subtest opens its own store.
func Run(t *testing.T, open func(t *testing.T, now func() time.Time) storage.Store) {
	o := Opener(open)
	t.Run("Secret", func(t *testing.T) { testSecret(t, o) })
	t.Run("Contacts", func(t *testing.T) { testContacts(t, o) })
	t.Run("Groups", func(t *testing.T) { testGroups(t, o) })
	t.Run("Flows", func(t *testing.T) { testFlows(t, o) })
	t.Run("Codes", func(t *testing.T) { testCodes(t, o) })
	t.Run("Once", func(t *testing.T) { testOnce(t, o) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, o) })
	t.Run("ContactLifecycle", func(t *testing.T) { testContactLifecycle(t, o) })
	t.Run("Hit", func(t *testing.T) { testHit(t, o) })
	t.Run("HitAll", func(t *testing.T) { testHitAll(t, o) })
	t.Run("Cooldown", func(t *testing.T) { testCooldown(t, o) })
	t.Run("Outbox", func(t *testing.T) { testOutbox(t, o) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, o) })
	t.Run("Links", func(t *testing.T) { testLinks(t, o) })
	t.Run("AuditActor", func(t *testing.T) { testAuditActor(t, o) })
	t.Run("LargeDirectory", func(t *testing.T) { testLargeDirectory(t, o) })
	t.Run("ReplaceBySource", func(t *testing.T) { testReplaceBySource(t, o) })
	t.Run("ContactsPage", func(t *testing.T) { testContactsPage(t, o) })
}

// setup opens a fresh store on a fresh clock.
func setup(t *testing.T, open Opener) (context.Context, storage.Store, *Clock) {
	t.Helper()
	clock := NewClock()
	s := open(t, clock.Now)
	if s == nil {
		t.Fatal("open returned a nil store")
	}
	return t.Context(), s, clock
}

// parallel runs fn(0) … fn(n-1) in n goroutines released at the same moment
// and waits for all of them.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newHash returns a random id hash such as a flow or session id hash.
func newHash(t *testing.T) string {
	t.Helper()
	return hex.EncodeToString(randomBytes(t, 32))
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// ---------------------------------------------------------------- secret

func testSecret(t *testing.T, open Opener) {
	generate := func() ([]byte, error) {
		b := make([]byte, 32)
		_, err := rand.Read(b)
		return b, err
	}

	t.Run("CreatedOnceAndStable", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		first, err := s.Secret(ctx, generate)
		must(t, "Secret", err)
		if len(first) != 32 {
			t.Fatalf("secret has %d bytes, want the 32 generate returned", len(first))
		}
		for range 3 {
			again, err := s.Secret(ctx, generate)
			must(t, "Secret again", err)
			if !bytes.Equal(again, first) {
				t.Fatalf("secret changed between calls")
			}
		}
	})

	t.Run("GenerateErrorStoresNothing", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		boom := errors.New("no entropy")
		if _, err := s.Secret(ctx, func() ([]byte, error) { return nil, boom }); err == nil {
			t.Fatal("Secret with a failing generate: no error")
		}
		want := []byte("0123456789abcdef0123456789abcdef")
		got, err := s.Secret(ctx, func() ([]byte, error) { return want, nil })
		must(t, "Secret", err)
		if !bytes.Equal(got, want) {
			t.Fatalf("Secret = %q, want %q (a failed generate must store nothing)", got, want)
		}
	})

	t.Run("ConcurrentCallersAgree", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		const n = 20
		got := make([][]byte, n)
		parallel(n, func(i int) {
			b, err := s.Secret(ctx, generate)
			if err != nil {
				t.Errorf("Secret #%d: %v", i, err)
			}
			got[i] = b
		})
		if t.Failed() {
			return
		}
		later, err := s.Secret(ctx, generate)
		must(t, "Secret after the race", err)
		if len(later) == 0 {
			t.Fatal("empty secret")
		}
		for i, b := range got {
			if !bytes.Equal(b, later) {
				t.Errorf("caller %d got a different secret than the one kept", i)
			}
		}
	})
}

// ---------------------------------------------------------------- contacts

func normalized(t *testing.T, cs ...storage.Contact) []storage.Contact {
	t.Helper()
	for i := range cs {
		if err := cs[i].Normalize(); err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

// sameContact compares contacts except UpdatedAt, which the store sets.
func sameContact(a, b storage.Contact) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	return a == b
}

func wantContact(t *testing.T, what string, got storage.Contact, err error, want storage.Contact) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !sameContact(got, want) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

func testContacts(t *testing.T, open Opener) {
	const ws, other = "acme", "globex"
	jane := storage.Contact{ID: "c-1", Email: "Jane@Acme.Example", Name: "Jane Doe", Source: storage.SourceDirectory, DirectoryID: "entra-1"}
	bob := storage.Contact{ID: "c-2", Email: "bob@acme.example", Name: "Bob"}

	// seed stores bob and jane (in that order) and returns them normalized.
	seed := func(t *testing.T) (context.Context, storage.Store, *Clock, storage.Contact, storage.Contact) {
		t.Helper()
		ctx, s, clock := setup(t, open)
		cs := normalized(t, bob, jane)
		must(t, "PutContacts", s.PutContacts(ctx, ws, cs))
		return ctx, s, clock, cs[1], cs[0]
	}

	t.Run("UpsertListLookup", func(t *testing.T) {
		ctx, s, clock, jane, bob := seed(t)

		list, err := s.Contacts(ctx, ws)
		must(t, "Contacts", err)
		if len(list) != 2 || !sameContact(list[0], jane) || !sameContact(list[1], bob) {
			t.Fatalf("Contacts = %+v, want jane (c-1) then bob (c-2), ordered by id", list)
		}
		for _, c := range list {
			if !c.UpdatedAt.Equal(clock.Now()) {
				t.Errorf("contact %s: UpdatedAt = %v, want the store clock %v", c.ID, c.UpdatedAt, clock.Now())
			}
		}

		c, err := s.Contact(ctx, ws, "c-1")
		wantContact(t, "Contact(c-1)", c, err, jane)
		for _, email := range []string{"jane@acme.example", "JANE@ACME.EXAMPLE", "Jane@Acme.Example"} {
			c, err := s.ContactByEmail(ctx, ws, email)
			wantContact(t, fmt.Sprintf("ContactByEmail(%q)", email), c, err, jane)
		}
		c, err = s.ContactByDirectoryID(ctx, ws, "entra-1")
		wantContact(t, "ContactByDirectoryID(entra-1)", c, err, jane)

		_, err = s.Contact(ctx, ws, "c-9")
		wantNotFound(t, "Contact(c-9)", err)
		_, err = s.ContactByEmail(ctx, ws, "nobody@acme.example")
		wantNotFound(t, "ContactByEmail(nobody)", err)
		_, err = s.ContactByDirectoryID(ctx, ws, "entra-2")
		wantNotFound(t, "ContactByDirectoryID(entra-2)", err)
		// Bob has no directory id: an empty id must not find him.
		_, err = s.ContactByDirectoryID(ctx, ws, "")
		wantNotFound(t, `ContactByDirectoryID("")`, err)
	})

	t.Run("WorkspacesAreSeparate", func(t *testing.T) {
		ctx, s, _, jane, _ := seed(t)
		_, err := s.Contact(ctx, other, "c-1")
		wantNotFound(t, "Contact in another workspace", err)
		_, err = s.ContactByEmail(ctx, other, jane.Email)
		wantNotFound(t, "ContactByEmail in another workspace", err)
		_, err = s.ContactByDirectoryID(ctx, other, jane.DirectoryID)
		wantNotFound(t, "ContactByDirectoryID in another workspace", err)
		list, err := s.Contacts(ctx, other)
		must(t, "Contacts", err)
		if len(list) != 0 {
			t.Fatalf("Contacts(%s) = %+v, want none", other, list)
		}

		// The same id and email may live in another workspace.
		janeG := jane
		janeG.Name = "Jane at Globex"
		must(t, "PutContacts in another workspace", s.PutContacts(ctx, other, []storage.Contact{janeG}))
		c, err := s.ContactByEmail(ctx, other, jane.Email)
		wantContact(t, "ContactByEmail(globex)", c, err, janeG)
		c, err = s.Contact(ctx, ws, "c-1")
		wantContact(t, "Contact(acme, c-1)", c, err, jane)
		c, err = s.ContactByEmail(ctx, ws, jane.Email)
		wantContact(t, "ContactByEmail(acme)", c, err, jane)
	})

	t.Run("UpdateReplaces", func(t *testing.T) {
		ctx, s, clock, jane, _ := seed(t)
		_, _ = s.Contact(ctx, ws, "c-1") // a cache, if any, holds the old record
		clock.Advance(time.Minute)
		jane.Name = "Jane Q. Doe"
		jane.Status = storage.StatusDisabled
		must(t, "PutContacts", s.PutContacts(ctx, ws, []storage.Contact{jane}))
		c, err := s.Contact(ctx, ws, "c-1")
		wantContact(t, "Contact after update", c, err, jane)
		if err == nil && !c.UpdatedAt.Equal(clock.Now()) {
			t.Errorf("UpdatedAt = %v, want %v", c.UpdatedAt, clock.Now())
		}
		c, err = s.ContactByEmail(ctx, ws, jane.Email)
		wantContact(t, "ContactByEmail after update", c, err, jane)
		list, err := s.Contacts(ctx, ws)
		must(t, "Contacts", err)
		if len(list) != 2 {
			t.Fatalf("Contacts has %d entries after an update, want 2", len(list))
		}
	})

	t.Run("EmailChangeReindexes", func(t *testing.T) {
		ctx, s, _, jane, _ := seed(t)
		_, _ = s.Contact(ctx, ws, "c-1")
		old := jane
		jane.Email = "jane.doe@acme.example"
		jane.DirectoryID = "entra-9"
		must(t, "PutContacts", s.PutContacts(ctx, ws, []storage.Contact{jane}))

		_, err := s.ContactByEmail(ctx, ws, old.Email)
		wantNotFound(t, "ContactByEmail(old email)", err)
		c, err := s.ContactByEmail(ctx, ws, "Jane.Doe@acme.example")
		wantContact(t, "ContactByEmail(new email)", c, err, jane)
		_, err = s.ContactByDirectoryID(ctx, ws, old.DirectoryID)
		wantNotFound(t, "ContactByDirectoryID(old id)", err)
		c, err = s.ContactByDirectoryID(ctx, ws, "entra-9")
		wantContact(t, "ContactByDirectoryID(new id)", c, err, jane)
		c, err = s.Contact(ctx, ws, "c-1")
		wantContact(t, "Contact(c-1)", c, err, jane)

		// The old email is free for someone else now.
		carol := normalized(t, storage.Contact{ID: "c-3", Email: old.Email, Name: "Carol"})[0]
		must(t, "PutContacts with the freed email", s.PutContacts(ctx, ws, []storage.Contact{carol}))
		c, err = s.ContactByEmail(ctx, ws, old.Email)
		wantContact(t, "ContactByEmail(freed email)", c, err, carol)

		// Dropping the directory id drops its index.
		jane.DirectoryID, jane.Source = "", storage.SourceManual
		must(t, "PutContacts without directory id", s.PutContacts(ctx, ws, []storage.Contact{jane}))
		_, err = s.ContactByDirectoryID(ctx, ws, "entra-9")
		wantNotFound(t, "ContactByDirectoryID after the id was removed", err)
	})

	t.Run("DuplicateEmailRejectsWholeBatch", func(t *testing.T) {
		ctx, s, _, jane, bob := seed(t)
		_, _ = s.Contact(ctx, ws, "c-1")
		renamed := jane
		renamed.Name = "Must Not Be Written"

		// Two new contacts with the same email (in different case) in one batch.
		batch := append([]storage.Contact{renamed}, normalized(t,
			storage.Contact{ID: "c-3", Email: "carol@acme.example"},
			storage.Contact{ID: "c-4", Email: "CAROL@acme.example"},
		)...)
		if err := s.PutContacts(ctx, ws, batch); err == nil {
			t.Fatal("PutContacts with two contacts sharing an email: no error")
		}
		// A new contact taking an email another contact holds.
		batch = append([]storage.Contact{renamed}, normalized(t,
			storage.Contact{ID: "c-5", Email: "Bob@Acme.Example"},
		)...)
		if err := s.PutContacts(ctx, ws, batch); err == nil {
			t.Fatal("PutContacts taking another contact's email: no error")
		}

		for _, id := range []string{"c-3", "c-4", "c-5"} {
			_, err := s.Contact(ctx, ws, id)
			wantNotFound(t, "Contact("+id+") from a rejected batch", err)
		}
		_, err := s.ContactByEmail(ctx, ws, "carol@acme.example")
		wantNotFound(t, "ContactByEmail(carol) from a rejected batch", err)
		c, err := s.Contact(ctx, ws, "c-1")
		wantContact(t, "Contact(c-1) after rejected batches", c, err, jane)
		c, err = s.ContactByEmail(ctx, ws, jane.Email)
		wantContact(t, "ContactByEmail(jane) after rejected batches", c, err, jane)
		c, err = s.ContactByEmail(ctx, ws, bob.Email)
		wantContact(t, "ContactByEmail(bob) after rejected batches", c, err, bob)
		list, err := s.Contacts(ctx, ws)
		must(t, "Contacts", err)
		if len(list) != 2 || !sameContact(list[0], jane) || !sameContact(list[1], bob) {
			t.Fatalf("Contacts after rejected batches = %+v, want only jane and bob unchanged", list)
		}

		// Indexes are intact: a valid batch still goes through.
		carol := normalized(t, storage.Contact{ID: "c-3", Email: "carol@acme.example"})[0]
		must(t, "PutContacts after rejected batches", s.PutContacts(ctx, ws, []storage.Contact{carol}))
		c, err = s.ContactByEmail(ctx, ws, "carol@acme.example")
		wantContact(t, "ContactByEmail(carol)", c, err, carol)
	})

	t.Run("DeleteRemovesIndexes", func(t *testing.T) {
		ctx, s, _, jane, bob := seed(t)
		_, _ = s.Contact(ctx, ws, "c-1")
		_, err := s.DeleteContact(ctx, ws, "c-1")
		must(t, "DeleteContact", err)

		_, err = s.Contact(ctx, ws, "c-1")
		wantNotFound(t, "Contact after delete", err)
		_, err = s.ContactByEmail(ctx, ws, jane.Email)
		wantNotFound(t, "ContactByEmail after delete", err)
		_, err = s.ContactByDirectoryID(ctx, ws, jane.DirectoryID)
		wantNotFound(t, "ContactByDirectoryID after delete", err)
		list, err := s.Contacts(ctx, ws)
		must(t, "Contacts", err)
		if len(list) != 1 || !sameContact(list[0], bob) {
			t.Fatalf("Contacts after delete = %+v, want only bob", list)
		}
		_, err = s.DeleteContact(ctx, ws, "c-1")
		wantNotFound(t, "DeleteContact twice", err)
		_, err = s.DeleteContact(ctx, other, "c-2")
		wantNotFound(t, "DeleteContact in the wrong workspace", err)
		c, err := s.Contact(ctx, ws, "c-2")
		wantContact(t, "Contact(c-2)", c, err, bob)

		// The email and directory id are free again.
		heir := normalized(t, storage.Contact{ID: "c-6", Email: jane.Email, Source: storage.SourceDirectory, DirectoryID: jane.DirectoryID})[0]
		must(t, "PutContacts reusing a deleted contact's email", s.PutContacts(ctx, ws, []storage.Contact{heir}))
		c, err = s.ContactByEmail(ctx, ws, jane.Email)
		wantContact(t, "ContactByEmail(reused)", c, err, heir)
		c, err = s.ContactByDirectoryID(ctx, ws, jane.DirectoryID)
		wantContact(t, "ContactByDirectoryID(reused)", c, err, heir)
	})
}

// ---------------------------------------------------------------- flows

func sameFlow(a, b storage.SignInFlow) bool {
	return a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt) &&
		a.IDHash == b.IDHash && a.Workspace == b.Workspace && a.ReturnTo == b.ReturnTo &&
		a.Email == b.Email && a.Method == b.Method
}

func testFlows(t *testing.T, open Opener) {
	newFlow := func(t *testing.T, now time.Time) storage.SignInFlow {
		return storage.SignInFlow{
			IDHash: newHash(t), Workspace: "acme", ReturnTo: "/tickets?page=2",
			Method: "code", CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute),
		}
	}

	t.Run("PutGetReplace", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		f := newFlow(t, clock.Now())
		must(t, "PutFlow", s.PutFlow(ctx, f))
		got, err := s.Flow(ctx, f.IDHash)
		must(t, "Flow", err)
		if !sameFlow(got, f) {
			t.Fatalf("Flow = %+v, want %+v", got, f)
		}
		f.Email = "jane@acme.example"
		must(t, "PutFlow again", s.PutFlow(ctx, f))
		got, err = s.Flow(ctx, f.IDHash)
		must(t, "Flow", err)
		if !sameFlow(got, f) {
			t.Fatalf("Flow after replace = %+v, want %+v", got, f)
		}
		_, err = s.Flow(ctx, newHash(t))
		wantNotFound(t, "Flow(unknown)", err)
	})

	t.Run("FlowContact", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		must(t, "PutContacts", s.PutContacts(ctx, "acme", []storage.Contact{
			{ID: "c-1", Email: "jane@acme.example", Name: "Jane"},
			{ID: "c-2", Email: "sam@acme.example", Name: "Sam"},
		}))
		must(t, "PutContacts", s.PutContacts(ctx, "globex", []storage.Contact{{ID: "g-1", Email: "jane@acme.example"}}))
		check := func(what string, f storage.SignInFlow, wantID string) {
			t.Helper()
			must(t, "PutFlow", s.PutFlow(ctx, f))
			got, c, err := s.FlowContact(ctx, f.IDHash)
			must(t, "FlowContact ("+what+")", err)
			if !sameFlow(got, f) {
				t.Fatalf("FlowContact (%s): flow %+v, want %+v", what, got, f)
			}
			if c.ID != wantID || (wantID == "c-1" && c.Name != "Jane") {
				t.Fatalf("FlowContact (%s): contact %+v, want %q", what, c, wantID)
			}
		}
		f := newFlow(t, clock.Now())
		check("no email yet", f, "")
		f.Email = "jane@acme.example"
		check("by email", f, "c-1")
		f.Email = "Jane@ACME.example "
		check("an email not normalized", f, "c-1")
		f.Email = "nobody@acme.example"
		check("an email of no contact", f, "")
		f.Email, f.ContactID = "jane@acme.example", "c-2"
		check("by contact id", f, "c-2")
		f.ContactID = "c-9"
		check("a contact id of no contact", f, "")
		f.ContactID, f.Workspace = "", "globex"
		check("in its own workspace", f, "g-1")
		f.Workspace = "acme"
		// The email changes: the flow for the old one finds nobody.
		must(t, "PutContacts", s.PutContacts(ctx, "acme", []storage.Contact{{ID: "c-1", Email: "jane.doe@acme.example"}}))
		check("an email no longer the contact's", f, "")
		_, _, err := s.FlowContact(ctx, newHash(t))
		wantNotFound(t, "FlowContact(unknown)", err)
		clock.Advance(15 * time.Minute)
		_, _, err = s.FlowContact(ctx, f.IDHash)
		wantNotFound(t, "FlowContact at its expiry", err)
	})

	t.Run("Expires", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		f := newFlow(t, clock.Now())
		must(t, "PutFlow", s.PutFlow(ctx, f))
		clock.Advance(15*time.Minute - time.Second)
		if _, err := s.Flow(ctx, f.IDHash); err != nil {
			t.Fatalf("Flow a second before expiry: %v", err)
		}
		clock.Advance(time.Second)
		_, err := s.Flow(ctx, f.IDHash)
		wantNotFound(t, "Flow at its expiry", err)
	})

	t.Run("Delete", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		f, g := newFlow(t, clock.Now()), newFlow(t, clock.Now())
		must(t, "PutFlow", s.PutFlow(ctx, f))
		must(t, "PutFlow", s.PutFlow(ctx, g))
		must(t, "DeleteFlow", s.DeleteFlow(ctx, f.IDHash))
		_, err := s.Flow(ctx, f.IDHash)
		wantNotFound(t, "Flow after delete", err)
		must(t, "DeleteFlow twice", s.DeleteFlow(ctx, f.IDHash))
		must(t, "DeleteFlow(unknown)", s.DeleteFlow(ctx, newHash(t)))
		if _, err := s.Flow(ctx, g.IDHash); err != nil {
			t.Fatalf("the other flow: %v", err)
		}
	})
}

// ---------------------------------------------------------------- codes

func testCodes(t *testing.T, open Opener) {
	const ws, id, maxTries = "acme", "c-1", 5
	flow := newHash(t)
	newCode := func(t *testing.T, now time.Time) storage.Code {
		return storage.Code{Hash: randomBytes(t, 32), IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	}
	redeemIn := func(t *testing.T, ctx context.Context, s storage.Store, ws, id, flow string, hash []byte, want storage.CodeResult) {
		t.Helper()
		got, err := s.RedeemCode(ctx, ws, id, flow, hash, maxTries)
		if err != nil {
			t.Fatalf("RedeemCode: %v", err)
		}
		if got != want {
			t.Fatalf("RedeemCode = %v, want %v", got, want)
		}
	}
	redeem := func(t *testing.T, ctx context.Context, s storage.Store, ws, id string, hash []byte, want storage.CodeResult) {
		t.Helper()
		redeemIn(t, ctx, s, ws, id, flow, hash, want)
	}

	t.Run("CountAndRedeemStartsSession", func(t *testing.T) {
		// With a session to start: only an accepted code starts it, in the
		// same step, ending the flow and the session it replaces and
		// storing the sign-in's event.
		ctx, s, clock := setup(t, open)
		now := clock.Now()
		f := storage.SignInFlow{IDHash: newHash(t), Workspace: ws, ReturnTo: "/tickets", Email: "jane@acme.example", Method: "code",
			CodesSent: 1, CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
		must(t, "PutFlow", s.PutFlow(ctx, f))
		c := newCode(t, now)
		must(t, "PutCode", s.PutCode(ctx, ws, id, f.IDHash, c))
		session := func() storage.Session {
			return storage.Session{IDHash: newHash(t), Workspace: ws, ContactID: id, Method: "code", CreatedAt: now, LastSeen: now,
				ExpiresAt: now.Add(12 * time.Hour), Idle: time.Hour}
		}
		old := session()
		must(t, "PutSession", s.PutSession(ctx, old))
		sess := session()
		start := &storage.SessionStart{Session: sess, EndFlow: f.IDHash, EndSession: old.IDHash,
			Events: []storage.AuditEvent{{Time: now, Workspace: ws, Event: "code_accepted", ContactID: id, Method: "code"}}}
		hits := []storage.Hit{{Key: "try/ip/y", Limit: 2, Window: time.Hour}}
		notStarted := func(what string) {
			t.Helper()
			if _, err := s.Session(ctx, ws, sess.IDHash); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("%s: the session exists (%v)", what, err)
			}
			if _, err := s.Flow(ctx, f.IDHash); err != nil {
				t.Fatalf("%s: the flow: %v", what, err)
			}
		}
		if _, got, err := s.CountAndRedeemCode(ctx, hits, ws, id, f.IDHash, []byte("wrong"), maxTries, start); err != nil || got != storage.CodeWrong {
			t.Fatalf("a wrong code: %v %v, want CodeWrong", got, err)
		}
		notStarted("after a wrong code")
		over := []storage.Hit{{Key: "try/ip/z", Limit: 0, Window: time.Hour}}
		if count, got, err := s.CountAndRedeemCode(ctx, over, ws, id, f.IDHash, c.Hash, maxTries, start); err != nil || count.Over != 0 || got != storage.CodeMissing {
			t.Fatalf("the right code over a limit: %+v %v %v, want over 0 and CodeMissing", count, got, err)
		}
		notStarted("after the right code over a limit")
		if _, got, err := s.CountAndRedeemCode(ctx, hits, ws, id, f.IDHash, c.Hash, maxTries, start); err != nil || got != storage.CodeAccepted {
			t.Fatalf("the right code: %v %v, want CodeAccepted", got, err)
		}
		if got, err := s.Session(ctx, ws, sess.IDHash); err != nil || got.ContactID != id {
			t.Fatalf("the session the accepted code started: %+v %v", got, err)
		}
		if _, err := s.Flow(ctx, f.IDHash); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the flow after the sign-in: %v, want storage.ErrNotFound", err)
		}
		if _, err := s.Session(ctx, ws, old.IDHash); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the replaced session: %v, want storage.ErrNotFound", err)
		}
		events, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: ws, Event: "code_accepted"})
		if err != nil || len(events) != 1 || events[0].ContactID != id {
			t.Fatalf("the sign-in's event: %+v %v", events, err)
		}
	})

	t.Run("CountAndRedeem", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		hits := []storage.Hit{{Key: "try/ip/x", Limit: 3, Window: time.Hour}, {Key: "try/flow/x", Limit: 9, Window: time.Hour}}
		try := func(hash []byte, wantCode storage.CodeResult, wantOver int, wantCounts ...int) {
			t.Helper()
			res, got, err := s.CountAndRedeemCode(ctx, hits, ws, id, flow, hash, maxTries, nil)
			must(t, "CountAndRedeemCode", err)
			if got != wantCode || res.Over != wantOver || fmt.Sprint(res.Counts) != fmt.Sprint(wantCounts) {
				t.Fatalf("CountAndRedeemCode = %+v %v, want over %d, counts %v, %v", res, got, wantOver, wantCounts, wantCode)
			}
			if wantOver >= 0 && res.RetryAfter <= 0 {
				t.Fatalf("over a limit without a wait: %+v", res)
			}
		}
		try([]byte("wrong-1"), storage.CodeWrong, -1, 1, 1)
		try([]byte("wrong-2"), storage.CodeWrong, -1, 2, 2)
		try([]byte("wrong-3"), storage.CodeWrong, -1, 3, 3)
		// Past the first counter's limit: the code is not touched (the
		// right one is refused, and the second counter is not counted).
		try(c.Hash, storage.CodeMissing, 0, 4)
		if n, _, err := s.Count(ctx, "try/flow/x", time.Hour); err != nil || n != 4 {
			t.Fatalf("the counter after the one over its limit: %d %v, want 4 (3, then this count)", n, err)
		}
		// The code still lives, with its three wrong tries: the right
		// one is accepted once, then it is gone.
		hits[0].Limit = 100
		try(c.Hash, storage.CodeAccepted, -1, 5, 5)
		try(c.Hash, storage.CodeMissing, -1, 6, 6)
	})

	t.Run("CountAndPutCode", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		hits := []storage.Hit{{Key: "send/email/x", Limit: 2, Window: time.Hour}, {Key: "send/ws/x", Limit: 9, Window: time.Hour}}
		put := func(flow string, c storage.Code, wantOver int, wantCounts ...int) {
			t.Helper()
			res, err := s.CountAndPutCode(ctx, hits, ws, id, flow, c)
			must(t, "CountAndPutCode", err)
			if res.Over != wantOver || fmt.Sprint(res.Counts) != fmt.Sprint(wantCounts) {
				t.Fatalf("CountAndPutCode = %+v, want over %d, counts %v", res, wantOver, wantCounts)
			}
			if wantOver >= 0 && res.RetryAfter <= 0 {
				t.Fatalf("over a limit without a wait: %+v", res)
			}
		}
		first, second := newCode(t, clock.Now()), newCode(t, clock.Now())
		put(flow, first, -1, 1, 1)
		redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		// The same code again (a redelivery) keeps its wrong try: the
		// code is dead after maxTries wrong tries in all.
		put(flow, first, -1, 2, 2)
		for range maxTries - 2 {
			redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		}
		redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeDead)
		// Past the first counter's limit: the other flow keeps the code
		// it had (the new one is not stored), and the second counter is
		// not counted.
		other := newHash(t)
		must(t, "PutCode", s.PutCode(ctx, ws, id, other, first))
		put(other, second, 0, 3)
		if n, _, err := s.Count(ctx, "send/ws/x", time.Hour); err != nil || n != 3 {
			t.Fatalf("the counter after the one over its limit: %d %v, want 3 (2, then this count)", n, err)
		}
		redeemIn(t, ctx, s, ws, id, other, second.Hash, storage.CodeWrong)
		redeemIn(t, ctx, s, ws, id, other, first.Hash, storage.CodeAccepted)
		// Without counters, the code is stored.
		hits = nil
		put(other, second, -1)
		redeemIn(t, ctx, s, ws, id, other, second.Hash, storage.CodeAccepted)
		expired := newCode(t, clock.Now().Add(-time.Hour))
		if _, err := s.CountAndPutCode(ctx, nil, ws, id, other, expired); err == nil {
			t.Fatal("CountAndPutCode stored an expired code")
		}
	})

	t.Run("RedeemedOnce", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeMissing)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeAccepted)
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeMissing)
	})

	t.Run("ScopedToContactAndWorkspace", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		redeem(t, ctx, s, ws, "c-2", c.Hash, storage.CodeMissing)
		redeem(t, ctx, s, "globex", id, c.Hash, storage.CodeMissing)
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeAccepted)
	})

	t.Run("WrongTriesCountedThenDead", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		for range maxTries - 1 {
			redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		}
		redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeDead)
		// Dead means dead, even for the right code.
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeMissing)
	})

	t.Run("RightCodeAfterWrongTries", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		for range maxTries - 1 {
			redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		}
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeAccepted)
	})

	t.Run("Expires", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		clock.Advance(10*time.Minute - time.Second)
		redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		clock.Advance(time.Second)
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeMissing)
	})

	t.Run("NewCodeReplacesOld", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		old := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, old))
		for range maxTries - 1 {
			redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		}
		clock.Advance(time.Minute)
		c := newCode(t, clock.Now())
		must(t, "PutCode (resend)", s.PutCode(ctx, ws, id, flow, c))
		// The old code no longer works, and the new one starts with no tries.
		redeem(t, ctx, s, ws, id, old.Hash, storage.CodeWrong)
		redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeAccepted)
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeMissing)
	})

	t.Run("ConcurrentRedeemAcceptsOnce", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		const n = 20
		results := make([]storage.CodeResult, n)
		parallel(n, func(i int) {
			r, err := s.RedeemCode(ctx, ws, id, flow, c.Hash, maxTries)
			if err != nil {
				t.Errorf("RedeemCode #%d: %v", i, err)
			}
			results[i] = r
		})
		counts := map[storage.CodeResult]int{}
		for _, r := range results {
			counts[r]++
		}
		if counts[storage.CodeAccepted] != 1 || counts[storage.CodeMissing] != n-1 {
			t.Fatalf("%d concurrent redeems of the right code: %v, want exactly one accepted and the rest missing", n, counts)
		}
	})

	t.Run("ConcurrentWrongTriesCountedExactly", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		const n = 20
		results := make([]storage.CodeResult, n)
		parallel(n, func(i int) {
			r, err := s.RedeemCode(ctx, ws, id, flow, []byte(fmt.Sprintf("wrong-%02d", i)), maxTries)
			if err != nil {
				t.Errorf("RedeemCode #%d: %v", i, err)
			}
			results[i] = r
		})
		counts := map[storage.CodeResult]int{}
		for _, r := range results {
			counts[r]++
		}
		if counts[storage.CodeWrong] != maxTries-1 || counts[storage.CodeDead] != 1 || counts[storage.CodeMissing] != n-maxTries {
			t.Fatalf("%d concurrent wrong tries: %v, want %d wrong, 1 dead, %d missing", n, counts, maxTries-1, n-maxTries)
		}
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeMissing)
	})

	t.Run("FlowsAreIndependent", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		other := newHash(t)
		mine, theirs := newCode(t, clock.Now()), newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, mine))
		must(t, "PutCode in another flow", s.PutCode(ctx, ws, id, other, theirs))
		// Each flow takes only its own code.
		redeemIn(t, ctx, s, ws, id, other, mine.Hash, storage.CodeWrong)
		redeemIn(t, ctx, s, ws, id, flow, theirs.Hash, storage.CodeWrong)
		redeemIn(t, ctx, s, ws, id, newHash(t), mine.Hash, storage.CodeMissing)
		redeemIn(t, ctx, s, ws, id, other, theirs.Hash, storage.CodeAccepted)
		redeemIn(t, ctx, s, ws, id, flow, mine.Hash, storage.CodeAccepted)
	})

	t.Run("WrongTriesInOneFlowSpareAnother", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		attacker := newHash(t)
		mine := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, mine))
		must(t, "PutCode in the attacker's flow", s.PutCode(ctx, ws, id, attacker, newCode(t, clock.Now())))
		for range maxTries - 1 {
			redeemIn(t, ctx, s, ws, id, attacker, randomBytes(t, 32), storage.CodeWrong)
		}
		redeemIn(t, ctx, s, ws, id, attacker, randomBytes(t, 32), storage.CodeDead)
		redeemIn(t, ctx, s, ws, id, attacker, mine.Hash, storage.CodeMissing)
		redeem(t, ctx, s, ws, id, mine.Hash, storage.CodeAccepted)
	})

	t.Run("NewCodeReplacesOnlyItsFlow", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		other := newHash(t)
		theirs := newCode(t, clock.Now())
		must(t, "PutCode in another flow", s.PutCode(ctx, ws, id, other, theirs))
		old := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, old))
		c := newCode(t, clock.Now())
		must(t, "PutCode (resend)", s.PutCode(ctx, ws, id, flow, c))
		redeem(t, ctx, s, ws, id, old.Hash, storage.CodeWrong)
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeAccepted)
		redeemIn(t, ctx, s, ws, id, other, theirs.Hash, storage.CodeAccepted)
	})

	t.Run("SameCodeAgainKeepsTries", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		c := newCode(t, clock.Now())
		must(t, "PutCode", s.PutCode(ctx, ws, id, flow, c))
		for range maxTries - 1 {
			redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeWrong)
		}
		// A redelivery stores the same code again: its tries stay.
		must(t, "PutCode (same code)", s.PutCode(ctx, ws, id, flow, c))
		redeem(t, ctx, s, ws, id, randomBytes(t, 32), storage.CodeDead)
		redeem(t, ctx, s, ws, id, c.Hash, storage.CodeMissing)
	})

	t.Run("DeleteContactRemovesEveryCode", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		jane := normalized(t, storage.Contact{ID: id, Email: "jane@acme.example"})[0]
		bob := normalized(t, storage.Contact{ID: "c-2", Email: "bob@acme.example"})[0]
		must(t, "PutContacts", s.PutContacts(ctx, ws, []storage.Contact{jane, bob}))
		flows := []string{flow, newHash(t), newHash(t)}
		codes := make([]storage.Code, len(flows))
		for i, f := range flows {
			codes[i] = newCode(t, clock.Now())
			must(t, "PutCode", s.PutCode(ctx, ws, id, f, codes[i]))
		}
		bobs := newCode(t, clock.Now())
		must(t, "PutCode for bob", s.PutCode(ctx, ws, "c-2", flow, bobs))
		_, err := s.DeleteContact(ctx, ws, id)
		must(t, "DeleteContact", err)
		for i, f := range flows {
			redeemIn(t, ctx, s, ws, id, f, codes[i].Hash, storage.CodeMissing)
		}
		redeemIn(t, ctx, s, ws, "c-2", flow, bobs.Hash, storage.CodeAccepted)
	})
}

// ---------------------------------------------------------------- once

func testOnce(t *testing.T, open Opener) {
	t.Run("TakenOnce", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		_, err := s.TakeOnce(ctx, "sso:missing")
		wantNotFound(t, "TakeOnce(missing)", err)
		must(t, "PutOnce", s.PutOnce(ctx, "sso:state-1", []byte("nonce+verifier"), 10*time.Minute))
		got, err := s.TakeOnce(ctx, "sso:state-1")
		must(t, "TakeOnce", err)
		if string(got) != "nonce+verifier" {
			t.Fatalf("TakeOnce = %q, want %q", got, "nonce+verifier")
		}
		_, err = s.TakeOnce(ctx, "sso:state-1")
		wantNotFound(t, "TakeOnce twice", err)
	})

	t.Run("Expires", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		must(t, "PutOnce", s.PutOnce(ctx, "link:a", []byte("a"), 10*time.Minute))
		must(t, "PutOnce", s.PutOnce(ctx, "link:b", []byte("b"), 10*time.Minute))
		clock.Advance(10*time.Minute - time.Second)
		if got, err := s.TakeOnce(ctx, "link:a"); err != nil || string(got) != "a" {
			t.Fatalf("TakeOnce a second before expiry = %q, %v", got, err)
		}
		clock.Advance(time.Second)
		_, err := s.TakeOnce(ctx, "link:b")
		wantNotFound(t, "TakeOnce at expiry", err)
	})

	t.Run("ConcurrentTakeHasOneWinner", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		must(t, "PutOnce", s.PutOnce(ctx, "link:race", []byte("prize"), 10*time.Minute))
		const n = 20
		var winners atomic.Int32
		parallel(n, func(i int) {
			v, err := s.TakeOnce(ctx, "link:race")
			switch {
			case err == nil:
				winners.Add(1)
				if string(v) != "prize" {
					t.Errorf("winner got %q", v)
				}
			case !errors.Is(err, storage.ErrNotFound):
				t.Errorf("TakeOnce #%d: %v", i, err)
			}
		})
		if w := winners.Load(); w != 1 {
			t.Fatalf("%d concurrent TakeOnce: %d winners, want exactly 1", n, w)
		}
	})
}

// ---------------------------------------------------------------- sessions

func sameSession(a, b storage.Session) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) || !a.LastSeen.Equal(b.LastSeen) || !a.ExpiresAt.Equal(b.ExpiresAt) {
		return false
	}
	a.CreatedAt, a.LastSeen, a.ExpiresAt = time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.LastSeen, b.ExpiresAt = time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func sessionHashes(ss []storage.Session) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, s.IDHash)
	}
	slices.Sort(out)
	return out
}

func sortedHashes(hs ...string) []string {
	hs = slices.Clone(hs)
	slices.Sort(hs)
	return hs
}

func testSessions(t *testing.T, open Opener) {
	// newSession lasts 12 hours at most and 1 hour without activity.
	newSession := func(t *testing.T, now time.Time, ws, contactID string) storage.Session {
		return storage.Session{
			IDHash: newHash(t), Workspace: ws, ContactID: contactID, Method: "code",
			ClientIP: "192.0.2.7", UserAgent: "test", CreatedAt: now, LastSeen: now,
			ExpiresAt: now.Add(12 * time.Hour), Idle: time.Hour,
		}
	}
	live := func(t *testing.T, ctx context.Context, s storage.Store, sess storage.Session, what string) {
		t.Helper()
		got, err := s.Session(ctx, sess.Workspace, sess.IDHash)
		if err != nil {
			t.Fatalf("%s: Session: %v", what, err)
		}
		if !sameSession(got, sess) {
			t.Fatalf("%s: Session = %+v, want %+v", what, got, sess)
		}
	}
	gone := func(t *testing.T, ctx context.Context, s storage.Store, sess storage.Session, what string) {
		t.Helper()
		_, err := s.Session(ctx, sess.Workspace, sess.IDHash)
		if !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: Session err = %v, want ErrNotFound", what, err)
		}
	}

	t.Run("PutGetDelete", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		a := newSession(t, clock.Now(), "acme", "c-1")
		b := newSession(t, clock.Now(), "acme", "c-1")
		must(t, "PutSession", s.PutSession(ctx, a))
		must(t, "PutSession", s.PutSession(ctx, b))
		live(t, ctx, s, a, "after put")
		_, err := s.Session(ctx, "acme", newHash(t))
		wantNotFound(t, "Session(unknown)", err)
		must(t, "DeleteSession", s.DeleteSession(ctx, a.Workspace, a.IDHash))
		gone(t, ctx, s, a, "after delete")
		must(t, "DeleteSession twice", s.DeleteSession(ctx, a.Workspace, a.IDHash))
		must(t, "DeleteSession(unknown)", s.DeleteSession(ctx, "acme", newHash(t)))
		live(t, ctx, s, b, "the other session")
		list, err := s.Sessions(ctx, "acme", "c-1")
		must(t, "Sessions", err)
		if got, want := sessionHashes(list), sortedHashes(b.IDHash); !slices.Equal(got, want) {
			t.Fatalf("Sessions after delete = %v, want %v", got, want)
		}
	})

	t.Run("StartSessionEndsFlowAndOldSession", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		now := clock.Now()
		flow := storage.SignInFlow{IDHash: newHash(t), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
		other := storage.SignInFlow{IDHash: newHash(t), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
		must(t, "PutFlow", s.PutFlow(ctx, flow))
		must(t, "PutFlow", s.PutFlow(ctx, other))
		old := newSession(t, now, "acme", "c-1")
		kept := newSession(t, now, "acme", "c-1")
		must(t, "PutSession", s.PutSession(ctx, old))
		must(t, "PutSession", s.PutSession(ctx, kept))
		live(t, ctx, s, old, "the old session, read once (and cached)")

		started := newSession(t, now, "acme", "c-2")
		accepted := storage.AuditEvent{Time: now, Workspace: "acme", Event: "code_accepted", ContactID: "c-2", Method: "code"}
		must(t, "StartSession", s.StartSession(ctx, started, flow.IDHash, old.IDHash, accepted))
		live(t, ctx, s, started, "the started session")
		gone(t, ctx, s, old, "the browser's old session")
		live(t, ctx, s, kept, "another session of the contact")
		if _, err := s.Flow(ctx, flow.IDHash); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the sign-in's flow: err = %v, want ErrNotFound", err)
		}
		if _, err := s.Flow(ctx, other.IDHash); err != nil {
			t.Fatalf("another flow: %v", err)
		}
		list, err := s.Sessions(ctx, "acme", "c-1")
		must(t, "Sessions", err)
		if got, want := sessionHashes(list), sortedHashes(kept.IDHash); !slices.Equal(got, want) {
			t.Fatalf("c-1's sessions = %v, want %v (the old one unindexed)", got, want)
		}
		list, err = s.Sessions(ctx, "acme", "c-2")
		must(t, "Sessions", err)
		if got, want := sessionHashes(list), sortedHashes(started.IDHash); !slices.Equal(got, want) {
			t.Fatalf("c-2's sessions = %v, want %v", got, want)
		}

		// Nothing to end, or ends that are gone already: not an error.
		second := newSession(t, now, "acme", "c-2")
		must(t, "StartSession without ends", s.StartSession(ctx, second, "", ""))
		third := newSession(t, now, "acme", "c-2")
		must(t, "StartSession with missing ends", s.StartSession(ctx, third, flow.IDHash, old.IDHash))
		live(t, ctx, s, second, "a session started without ends")
		live(t, ctx, s, third, "a session started with missing ends")

		// A session of another workspace is not the browser's to end.
		beta := newSession(t, now, "beta", "c-9")
		must(t, "PutSession", s.PutSession(ctx, beta))
		fourth := newSession(t, now, "acme", "c-2")
		must(t, "StartSession", s.StartSession(ctx, fourth, "", beta.IDHash))
		live(t, ctx, s, beta, "another workspace's session named as the old one")

		expired := newSession(t, now.Add(-13*time.Hour), "acme", "c-2")
		refusedEvent := storage.AuditEvent{Time: now, Workspace: "acme", Event: "sso_success", ContactID: "c-2", Method: "sso:corp"}
		if err := s.StartSession(ctx, expired, other.IDHash, kept.IDHash, refusedEvent); err == nil {
			t.Fatal("StartSession of an expired session: no error")
		}
		// The event came with the session that was stored, and not with
		// the one that was refused.
		events, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: "c-2"})
		must(t, "Audit", err)
		if len(events) != 1 || events[0].Event != "code_accepted" || events[0].Method != "code" || events[0].ID == "" {
			t.Fatalf("c-2's audit trail after StartSession = %+v, want the one code_accepted it was given", events)
		}
		live(t, ctx, s, kept, "the old session named by a refused start")
		if _, err := s.Flow(ctx, other.IDHash); err != nil {
			t.Fatalf("the flow named by a refused start: %v", err)
		}
	})

	t.Run("IdleExpiry", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		sess := newSession(t, clock.Now(), "acme", "c-1")
		must(t, "PutSession", s.PutSession(ctx, sess))
		clock.Advance(time.Hour - time.Second)
		live(t, ctx, s, sess, "a second before idle expiry")
		clock.Advance(time.Second)
		gone(t, ctx, s, sess, "at idle expiry")
	})

	t.Run("TouchExtendsIdle", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		sess := newSession(t, clock.Now(), "acme", "c-1")
		must(t, "PutSession", s.PutSession(ctx, sess))
		live(t, ctx, s, sess, "after put")
		for range 3 {
			clock.Advance(50 * time.Minute)
			must(t, "TouchSession", s.TouchSession(ctx, sess.Workspace, sess.IDHash, clock.Now()))
			sess.LastSeen = clock.Now()
			live(t, ctx, s, sess, "after touch")
		}
		// An older timestamp (a slow request finishing late) does not
		// move LastSeen back.
		must(t, "TouchSession with an older time", s.TouchSession(ctx, sess.Workspace, sess.IDHash, clock.Now().Add(-10*time.Minute)))
		live(t, ctx, s, sess, "after an older touch")
		clock.Advance(time.Hour - time.Second)
		live(t, ctx, s, sess, "a second before the extended idle expiry")
		clock.Advance(time.Second)
		gone(t, ctx, s, sess, "at the extended idle expiry")
	})

	t.Run("TouchDoesNotRevive", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		sess := newSession(t, clock.Now(), "acme", "c-1")
		must(t, "PutSession", s.PutSession(ctx, sess))
		clock.Advance(time.Hour + time.Minute)
		if err := s.TouchSession(ctx, sess.Workspace, sess.IDHash, clock.Now()); err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("TouchSession on an expired session: %v", err)
		}
		gone(t, ctx, s, sess, "touched after idle expiry")

		if err := s.TouchSession(ctx, "acme", newHash(t), clock.Now()); err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("TouchSession(unknown): %v", err)
		}
	})

	t.Run("AbsoluteExpiry", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		sess := newSession(t, clock.Now(), "acme", "c-1")
		sess.ExpiresAt = clock.Now().Add(2 * time.Hour)
		must(t, "PutSession", s.PutSession(ctx, sess))
		for range 2 {
			clock.Advance(50 * time.Minute)
			must(t, "TouchSession", s.TouchSession(ctx, sess.Workspace, sess.IDHash, clock.Now()))
		}
		sess.LastSeen = clock.Now()
		clock.Advance(20*time.Minute - time.Second) // 1h59m59s after creation
		live(t, ctx, s, sess, "a second before absolute expiry")
		clock.Advance(time.Second)
		gone(t, ctx, s, sess, "at absolute expiry, despite recent activity")
		if err := s.TouchSession(ctx, sess.Workspace, sess.IDHash, clock.Now()); err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("TouchSession after absolute expiry: %v", err)
		}
		gone(t, ctx, s, sess, "touched after absolute expiry")
	})

	t.Run("NoIdleLimit", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		sess := newSession(t, clock.Now(), "acme", "c-1")
		sess.Idle = 0
		must(t, "PutSession", s.PutSession(ctx, sess))
		clock.Advance(12*time.Hour - time.Second)
		live(t, ctx, s, sess, "untouched, a second before absolute expiry")
		clock.Advance(time.Second)
		gone(t, ctx, s, sess, "at absolute expiry")
	})

	t.Run("ListPerContact", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		a1 := newSession(t, clock.Now(), "acme", "c-1")
		clock.Advance(time.Second)
		a2 := newSession(t, clock.Now(), "acme", "c-1")
		b := newSession(t, clock.Now(), "acme", "c-2")
		// c-10 shares c-1's prefix; it must not show up under c-1.
		b10 := newSession(t, clock.Now(), "acme", "c-10")
		g := newSession(t, clock.Now(), "globex", "c-1")
		short := newSession(t, clock.Now(), "acme", "c-1")
		short.Idle = 10 * time.Minute
		for _, sess := range []storage.Session{a1, a2, b, b10, g, short} {
			must(t, "PutSession", s.PutSession(ctx, sess))
		}

		check := func(ws, contactID string, want ...string) {
			t.Helper()
			list, err := s.Sessions(ctx, ws, contactID)
			must(t, "Sessions", err)
			if got := sessionHashes(list); !slices.Equal(got, sortedHashes(want...)) {
				t.Fatalf("Sessions(%q, %q) = %v, want %v", ws, contactID, got, sortedHashes(want...))
			}
			for _, sess := range list {
				if sess.Workspace != ws || contactID != "" && sess.ContactID != contactID {
					t.Fatalf("Sessions(%q, %q) returned %+v", ws, contactID, sess)
				}
			}
		}
		check("acme", "c-1", a1.IDHash, a2.IDHash, short.IDHash)
		check("acme", "c-2", b.IDHash)
		check("acme", "", a1.IDHash, a2.IDHash, short.IDHash, b.IDHash, b10.IDHash)
		check("globex", "c-1", g.IDHash)
		check("initech", "")

		clock.Advance(10 * time.Minute) // short idles out
		check("acme", "c-1", a1.IDHash, a2.IDHash)
		must(t, "DeleteSession", s.DeleteSession(ctx, a1.Workspace, a1.IDHash))
		check("acme", "c-1", a2.IDHash)
	})

	t.Run("DeleteContactSessions", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		a1 := newSession(t, clock.Now(), "acme", "c-1")
		a2 := newSession(t, clock.Now(), "acme", "c-1")
		expired := newSession(t, clock.Now(), "acme", "c-1")
		expired.Idle = time.Minute
		b := newSession(t, clock.Now(), "acme", "c-2")
		b10 := newSession(t, clock.Now(), "acme", "c-10")
		g := newSession(t, clock.Now(), "globex", "c-1")
		for _, sess := range []storage.Session{a1, a2, expired, b, b10, g} {
			must(t, "PutSession", s.PutSession(ctx, sess))
			live(t, ctx, s, sess, "after put") // a cache, if any, holds it
		}
		clock.Advance(time.Minute) // expired idles out

		n, err := s.DeleteContactSessions(ctx, "acme", "c-1")
		must(t, "DeleteContactSessions", err)
		if n != 2 {
			t.Errorf("DeleteContactSessions = %d, want 2 (the live sessions)", n)
		}
		gone(t, ctx, s, a1, "revoked")
		gone(t, ctx, s, a2, "revoked")
		gone(t, ctx, s, expired, "expired")
		live(t, ctx, s, b, "another contact's session")
		live(t, ctx, s, b10, "another contact's session")
		live(t, ctx, s, g, "the same contact id in another workspace")
		list, err := s.Sessions(ctx, "acme", "c-1")
		must(t, "Sessions", err)
		if len(list) != 0 {
			t.Fatalf("Sessions after DeleteContactSessions = %v", sessionHashes(list))
		}

		n, err = s.DeleteContactSessions(ctx, "acme", "c-1")
		must(t, "DeleteContactSessions twice", err)
		if n != 0 {
			t.Fatalf("DeleteContactSessions twice = %d, want 0", n)
		}
	})

	t.Run("RevokedStaysRevokedUnderConcurrentReads", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		for i := range 100 {
			sess := newSession(t, clock.Now(), "acme", "c-1")
			must(t, "PutSession", s.PutSession(ctx, sess))
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					_, _ = s.Session(ctx, sess.Workspace, sess.IDHash)
				}
			})
			runtime.Gosched()
			if i%2 == 0 {
				must(t, "DeleteSession", s.DeleteSession(ctx, sess.Workspace, sess.IDHash))
			} else if _, err := s.DeleteContactSessions(ctx, "acme", "c-1"); err != nil {
				t.Fatalf("DeleteContactSessions: %v", err)
			}
			close(stop)
			wg.Wait()
			gone(t, ctx, s, sess, fmt.Sprintf("round %d, after revocation during concurrent reads", i))
		}
	})
}

// ---------------------------------------------------------------- contact lifecycle

// testContactLifecycle: a contact disabled, deleted or whose email changes
// loses every session and code in the same store call; nothing revives
// them, and nobody else's are touched.
func testContactLifecycle(t *testing.T, open Opener) {
	const ws = "acme"
	// seed stores jane (c-1) and bob (c-2) in acme and jane's id in
	// globex, gives each two, one and one sessions, read once (so a cache,
	// if any, holds them), and jane a code in two flows.
	type seeded struct {
		ctx       context.Context
		s         storage.Store
		jane      storage.Contact
		janes     []storage.Session
		others    []storage.Session
		codes     []storage.Code
		codeFlows []string
	}
	seed := func(t *testing.T) seeded {
		t.Helper()
		ctx, s, clock := setup(t, open)
		cs := normalized(t,
			storage.Contact{ID: "c-1", Email: "jane@acme.example", Name: "Jane"},
			storage.Contact{ID: "c-2", Email: "bob@acme.example", Name: "Bob"})
		must(t, "PutContacts", s.PutContacts(ctx, ws, cs))
		must(t, "PutContacts globex", s.PutContacts(ctx, "globex", normalized(t, storage.Contact{ID: "c-1", Email: "jane@globex.example"})))
		now := clock.Now()
		mk := func(ws, id string) storage.Session {
			return storage.Session{IDHash: newHash(t), Workspace: ws, ContactID: id, Method: "code",
				CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(12 * time.Hour), Idle: time.Hour}
		}
		d := seeded{ctx: ctx, s: s, jane: cs[0],
			janes:  []storage.Session{mk(ws, "c-1"), mk(ws, "c-1")},
			others: []storage.Session{mk(ws, "c-2"), mk("globex", "c-1")}}
		for _, sess := range append(slices.Clone(d.janes), d.others...) {
			must(t, "PutSession", s.PutSession(ctx, sess))
			if _, err := s.Session(ctx, sess.Workspace, sess.IDHash); err != nil {
				t.Fatalf("Session after put: %v", err)
			}
		}
		for range 2 {
			c := storage.Code{Hash: randomBytes(t, 32), IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
			f := newHash(t)
			must(t, "PutCode", s.PutCode(ctx, ws, "c-1", f, c))
			d.codes, d.codeFlows = append(d.codes, c), append(d.codeFlows, f)
		}
		return d
	}
	janeEnded := func(t *testing.T, d seeded, what string) {
		t.Helper()
		for _, sess := range d.janes {
			if _, err := d.s.Session(d.ctx, ws, sess.IDHash); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("%s: jane's session: err = %v, want ErrNotFound", what, err)
			}
		}
		list, err := d.s.Sessions(d.ctx, ws, "c-1")
		must(t, "Sessions", err)
		if len(list) != 0 {
			t.Fatalf("%s: Sessions(c-1) = %v, want none", what, sessionHashes(list))
		}
		for i, c := range d.codes {
			if r, err := d.s.RedeemCode(d.ctx, ws, "c-1", d.codeFlows[i], c.Hash, 5); err != nil || r != storage.CodeMissing {
				t.Fatalf("%s: jane's code = %v, %v; want missing", what, r, err)
			}
		}
	}
	othersLive := func(t *testing.T, d seeded, what string) {
		t.Helper()
		for _, sess := range d.others {
			if _, err := d.s.Session(d.ctx, sess.Workspace, sess.IDHash); err != nil {
				t.Fatalf("%s: %s/%s's session: %v", what, sess.Workspace, sess.ContactID, err)
			}
		}
	}

	t.Run("DisableEndsSessions", func(t *testing.T) {
		d := seed(t)
		jane := d.jane
		jane.Status = storage.StatusDisabled
		must(t, "PutContacts (disable)", d.s.PutContacts(d.ctx, ws, []storage.Contact{jane}))
		janeEnded(t, d, "disabled")
		othersLive(t, d, "jane disabled")
		// Re-enabling revives nothing.
		jane.Status = storage.StatusActive
		must(t, "PutContacts (enable)", d.s.PutContacts(d.ctx, ws, []storage.Contact{jane}))
		janeEnded(t, d, "enabled again")
	})

	t.Run("EmailChangeEndsSessions", func(t *testing.T) {
		d := seed(t)
		jane := d.jane
		jane.Name = "Jane Q. Doe" // a name change keeps them
		must(t, "PutContacts (rename)", d.s.PutContacts(d.ctx, ws, []storage.Contact{jane}))
		for _, sess := range d.janes {
			if _, err := d.s.Session(d.ctx, ws, sess.IDHash); err != nil {
				t.Fatalf("after a name change: %v", err)
			}
		}
		jane.Email = "jane.doe@acme.example"
		must(t, "PutContacts (new email)", d.s.PutContacts(d.ctx, ws, []storage.Contact{jane}))
		janeEnded(t, d, "email changed")
		othersLive(t, d, "jane's email changed")
	})

	t.Run("DeleteEndsSessions", func(t *testing.T) {
		d := seed(t)
		n, err := d.s.DeleteContact(d.ctx, ws, "c-1")
		must(t, "DeleteContact", err)
		if n != 2 {
			t.Errorf("DeleteContact ended %d sessions, want 2", n)
		}
		janeEnded(t, d, "deleted")
		othersLive(t, d, "jane deleted")
		// The same contact again revives nothing.
		must(t, "PutContacts (again)", d.s.PutContacts(d.ctx, ws, []storage.Contact{d.jane}))
		janeEnded(t, d, "added again")
	})
	t.Run("ReplaceContactsFromFile", func(t *testing.T) {
		d := seed(t)
		ctx, s := d.ctx, d.s
		file := normalized(t,
			storage.Contact{ID: "c-1", Email: "jane@acme.example", Name: "Jane"},
			storage.Contact{ID: "f-1", Email: "fred@acme.example", Name: "Fred"})
		res, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, file)
		must(t, "ReplaceContacts", err)
		// jane and fred are the file's now (jane was written with no origin).
		if res != (storage.ReplaceResult{Upserted: 2}) {
			t.Fatalf("first ReplaceContacts = %+v, want 2 upserted", res)
		}
		c, err := s.Contact(ctx, ws, "f-1")
		if err != nil || c.Origin != storage.OriginFile || !c.Active() {
			t.Fatalf("Contact(f-1) = %+v, %v; want an active file contact", c, err)
		}
		res, err = s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, file)
		must(t, "ReplaceContacts again", err)
		if res != (storage.ReplaceResult{Unchanged: 2}) {
			t.Fatalf("the same file again = %+v, want 2 unchanged", res)
		}
		for _, sess := range d.janes {
			if _, err := s.Session(ctx, ws, sess.IDHash); err != nil {
				t.Fatalf("jane's session after an unchanged import: %v", err)
			}
		}

		// The file drops jane: she is disabled and signed out; bob (no
		// origin: the admin API's) and globex are left alone.
		res, err = s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, file[1:])
		must(t, "ReplaceContacts without jane", err)
		if res != (storage.ReplaceResult{Disabled: 1, Unchanged: 1}) {
			t.Fatalf("ReplaceContacts without jane = %+v, want 1 disabled, 1 unchanged", res)
		}
		janeEnded(t, d, "dropped from the file")
		othersLive(t, d, "jane dropped from the file")
		c, err = s.Contact(ctx, ws, "c-1")
		if err != nil || c.Active() {
			t.Fatalf("Contact(c-1) = %+v, %v; want disabled", c, err)
		}
		c, err = s.ContactByEmail(ctx, ws, "jane@acme.example")
		if err != nil || c.ID != "c-1" || c.Active() {
			t.Fatalf("ContactByEmail(jane) = %+v, %v; want her, disabled", c, err)
		}
		c, err = s.Contact(ctx, ws, "c-2")
		if err != nil || !c.Active() {
			t.Fatalf("Contact(c-2) = %+v, %v; want bob untouched", c, err)
		}
		// Already disabled: nothing more to do.
		res, err = s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, file[1:])
		must(t, "ReplaceContacts without jane again", err)
		if res != (storage.ReplaceResult{Unchanged: 1}) {
			t.Fatalf("again = %+v, want 1 unchanged", res)
		}
		// Back in the file: active again, with no old session.
		res, err = s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, file)
		must(t, "ReplaceContacts with jane back", err)
		if res != (storage.ReplaceResult{Upserted: 1, Unchanged: 1}) {
			t.Fatalf("jane back = %+v, want 1 upserted, 1 unchanged", res)
		}
		janeEnded(t, d, "back in the file")

		// A conflict changes nothing: fred's email taken by bob.
		clash := normalized(t, storage.Contact{ID: "f-1", Email: "bob@acme.example"})
		if _, err := s.ReplaceContacts(ctx, ws, storage.ContactSet{Origin: storage.OriginFile}, clash); err == nil {
			t.Fatal("ReplaceContacts taking bob's email: no error")
		}
		c, err = s.Contact(ctx, ws, "c-1")
		if err != nil || !c.Active() {
			t.Fatalf("Contact(c-1) after a refused replace = %+v, %v; want active", c, err)
		}
	})
}

// ---------------------------------------------------------------- hit

func testHit(t *testing.T, open Opener) {
	t.Run("LimitAndWindow", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		const limit, window = 3, time.Minute
		for i := range limit {
			ok, retry, err := s.Hit(ctx, "send:email:jane@acme.example", limit, window)
			must(t, "Hit", err)
			if !ok || retry != 0 {
				t.Fatalf("hit %d of %d: ok=%v retryAfter=%v, want ok and no wait", i+1, limit, ok, retry)
			}
		}
		ok, retry, err := s.Hit(ctx, "send:email:jane@acme.example", limit, window)
		must(t, "Hit", err)
		if ok || retry <= 0 || retry > window {
			t.Fatalf("hit over the limit: ok=%v retryAfter=%v, want refused with a wait in (0, %v]", ok, retry, window)
		}
		// Other keys count on their own.
		if ok, _, err := s.Hit(ctx, "send:email:bob@acme.example", limit, window); err != nil || !ok {
			t.Fatalf("another key: ok=%v err=%v", ok, err)
		}
		// Still refused just before the window resets …
		clock.Advance(retry - time.Millisecond)
		if ok, r, err := s.Hit(ctx, "send:email:jane@acme.example", limit, window); err != nil || ok || r <= 0 || r > time.Millisecond {
			t.Fatalf("a millisecond before the reset: ok=%v retryAfter=%v err=%v", ok, r, err)
		}
		// … and counting starts over once it has.
		clock.Advance(time.Millisecond)
		for i := range limit {
			ok, _, err := s.Hit(ctx, "send:email:jane@acme.example", limit, window)
			must(t, "Hit", err)
			if !ok {
				t.Fatalf("new window, hit %d: refused", i+1)
			}
		}
		if ok, _, err := s.Hit(ctx, "send:email:jane@acme.example", limit, window); err != nil || ok {
			t.Fatalf("new window, over the limit: ok=%v err=%v", ok, err)
		}
	})

	t.Run("CountSharesHitsCounters", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		const window = time.Minute
		for want := 1; want <= 3; want++ {
			n, reset, err := s.Count(ctx, "audited:k", window)
			must(t, "Count", err)
			if n != want || reset <= 0 || reset > window {
				t.Fatalf("count %d: n=%d reset=%v, want n=%d and a reset in (0, %v]", want, n, reset, want, window)
			}
		}
		if ok, _, err := s.Hit(ctx, "audited:k", 3, window); err != nil || ok {
			t.Fatalf("Hit after 3 counts with limit 3: ok=%v err=%v, want refused", ok, err)
		}
		if n, _, err := s.Count(ctx, "audited:other", window); err != nil || n != 1 {
			t.Fatalf("another key: n=%d err=%v, want 1", n, err)
		}
		_, reset, _ := s.Count(ctx, "audited:k", window)
		clock.Advance(reset)
		if n, _, err := s.Count(ctx, "audited:k", window); err != nil || n != 1 {
			t.Fatalf("next window: n=%d err=%v, want 1", n, err)
		}
	})

	t.Run("ConcurrentHitsCountedExactly", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		const n, limit = 20, 10
		var allowed atomic.Int32
		parallel(n, func(i int) {
			ok, retry, err := s.Hit(ctx, "try:ip:192.0.2.7", limit, time.Hour)
			if err != nil {
				t.Errorf("Hit #%d: %v", i, err)
				return
			}
			if ok {
				allowed.Add(1)
			} else if retry <= 0 {
				t.Errorf("Hit #%d refused with retryAfter %v", i, retry)
			}
		})
		if a := allowed.Load(); a != limit {
			t.Fatalf("%d concurrent hits with limit %d: %d allowed", n, limit, a)
		}

		// Many hits from a few goroutines: none lost.
		const workers, each = 4, 25
		parallel(workers, func(i int) {
			for range each {
				if _, _, err := s.Hit(ctx, "try:workspace:acme", workers*each, time.Hour); err != nil {
					t.Errorf("Hit: %v", err)
					return
				}
			}
		})
		if ok, _, err := s.Hit(ctx, "try:workspace:acme", workers*each+1, time.Hour); err != nil || !ok {
			t.Fatalf("hit number %d with limit %d: ok=%v err=%v", workers*each+1, workers*each+1, ok, err)
		}
		if ok, _, err := s.Hit(ctx, "try:workspace:acme", workers*each+1, time.Hour); err != nil || ok {
			t.Fatalf("hit number %d with limit %d: ok=%v err=%v", workers*each+2, workers*each+1, ok, err)
		}
	})
}

func testHitAll(t *testing.T, open Opener) {
	t.Run("InOrderStopsAtFirstOver", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		// A second into an hour: every window below starts fresh, and
		// the hour-long one outlasts the minutes the test moves on.
		clock.Advance(clock.Now().Truncate(time.Hour).Add(time.Hour + time.Second).Sub(clock.Now()))
		hits := []storage.Hit{
			{Key: "try:ip:192.0.2.7", Limit: 2, Window: time.Minute},
			{Key: "try:email:jane@acme.example", Limit: 5, Window: time.Minute},
			{Key: "try:flow:f1", Limit: 3, Window: time.Hour},
		}
		for want := 1; want <= 2; want++ {
			res, err := s.HitAll(ctx, hits...)
			must(t, "HitAll", err)
			if res.Over != -1 || res.RetryAfter != 0 || !slices.Equal(res.Counts, []int{want, want, want}) {
				t.Fatalf("HitAll %d: %+v, want every counter at %d and none over", want, res, want)
			}
		}
		// The third is over the first counter's limit: it is counted,
		// the two after it are not.
		res, err := s.HitAll(ctx, hits...)
		must(t, "HitAll", err)
		if res.Over != 0 || !slices.Equal(res.Counts, []int{3}) || res.RetryAfter <= 0 || res.RetryAfter > time.Minute {
			t.Fatalf("HitAll over the first limit: %+v, want Over 0, Counts [3], a wait in (0, 1m]", res)
		}
		// The counters are Count's: the two not touched are still at 2.
		if n, _, err := s.Count(ctx, "try:email:jane@acme.example", time.Minute); err != nil || n != 3 {
			t.Fatalf("Count of the second counter: %d, %v; want 3 (2 from HitAll, this one)", n, err)
		}
		if n, _, err := s.Count(ctx, "try:flow:f1", time.Hour); err != nil || n != 3 {
			t.Fatalf("Count of the third counter: %d, %v; want 3 (2 from HitAll, this one)", n, err)
		}
		// Without the first, the last goes over: Over names it, with
		// its own (hour-long) window's wait.
		res, err = s.HitAll(ctx, hits[1:]...)
		must(t, "HitAll", err)
		if res.Over != 1 || !slices.Equal(res.Counts, []int{4, 4}) || res.RetryAfter <= 58*time.Minute || res.RetryAfter > time.Hour {
			t.Fatalf("HitAll over the last limit: %+v, want Over 1, Counts [4 4], a wait in (58m, 1h]", res)
		}
		// Each counter keeps its own window: a minute later the short
		// ones start over, the hour-long one does not.
		clock.Advance(time.Minute)
		res, err = s.HitAll(ctx, hits...)
		must(t, "HitAll", err)
		if res.Over != 2 || !slices.Equal(res.Counts, []int{1, 1, 5}) {
			t.Fatalf("HitAll in the next minute: %+v, want Counts [1 1 5], Over 2", res)
		}
		// A key given twice counts twice.
		res, err = s.HitAll(ctx, storage.Hit{Key: "k", Limit: 1, Window: time.Minute}, storage.Hit{Key: "k", Limit: 1, Window: time.Minute})
		must(t, "HitAll", err)
		if res.Over != 1 || !slices.Equal(res.Counts, []int{1, 2}) {
			t.Fatalf("HitAll of one key twice: %+v, want Counts [1 2], Over 1", res)
		}
	})

	t.Run("ConcurrentCountedExactly", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		// Every caller shares the first counter and has one of two
		// second counters of its own, so the calls overlap crosswise.
		const n, limit = 24, 16
		var allowed atomic.Int32
		parallel(n, func(i int) {
			res, err := s.HitAll(ctx,
				storage.Hit{Key: "send:ws:acme", Limit: limit, Window: time.Hour},
				storage.Hit{Key: fmt.Sprintf("send:email:%d", i%2), Limit: n, Window: time.Hour},
			)
			if err != nil {
				t.Errorf("HitAll #%d: %v", i, err)
				return
			}
			if res.Over == -1 {
				allowed.Add(1)
			}
		})
		if a := allowed.Load(); a != limit {
			t.Fatalf("%d concurrent HitAll with a shared limit of %d: %d allowed", n, limit, a)
		}
		// Only the allowed calls reached the second counters.
		sum := 0
		for i := range 2 {
			c, _, err := s.Count(ctx, fmt.Sprintf("send:email:%d", i), time.Hour)
			must(t, "Count", err)
			sum += c - 1
		}
		if sum != limit {
			t.Fatalf("second counters counted %d, want %d (only the calls within the first limit)", sum, limit)
		}
	})
}

// ---------------------------------------------------------------- cooldown

func testCooldown(t *testing.T, open Opener) {
	t.Run("RefusedThenAllowed", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		const d = 30 * time.Second
		ok, wait, err := s.Cooldown(ctx, "resend:flow-1", d)
		must(t, "Cooldown", err)
		if !ok || wait != 0 {
			t.Fatalf("first Cooldown: ok=%v wait=%v, want allowed", ok, wait)
		}
		ok, wait, err = s.Cooldown(ctx, "resend:flow-1", d)
		must(t, "Cooldown", err)
		if ok || wait <= 0 || wait > d {
			t.Fatalf("second Cooldown: ok=%v wait=%v, want refused with a wait in (0, %v]", ok, wait, d)
		}
		if ok, _, err := s.Cooldown(ctx, "resend:flow-2", d); err != nil || !ok {
			t.Fatalf("another key: ok=%v err=%v", ok, err)
		}
		clock.Advance(d / 3)
		ok, wait, err = s.Cooldown(ctx, "resend:flow-1", d)
		must(t, "Cooldown", err)
		if ok || wait <= 0 || wait > d-d/3 {
			t.Fatalf("Cooldown after %v: ok=%v wait=%v, want refused with a wait in (0, %v]", d/3, ok, wait, d-d/3)
		}
		clock.Advance(wait)
		ok, _, err = s.Cooldown(ctx, "resend:flow-1", d)
		must(t, "Cooldown", err)
		if !ok {
			t.Fatal("Cooldown once the wait has passed: refused")
		}
		// That started a new cooldown.
		if ok, _, err := s.Cooldown(ctx, "resend:flow-1", d); err != nil || ok {
			t.Fatalf("Cooldown right after a new one started: ok=%v err=%v", ok, err)
		}
	})

	t.Run("ConcurrentCallersOneAllowed", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		const n = 20
		var allowed atomic.Int32
		parallel(n, func(i int) {
			ok, _, err := s.Cooldown(ctx, "resend:race", time.Minute)
			if err != nil {
				t.Errorf("Cooldown #%d: %v", i, err)
			}
			if ok {
				allowed.Add(1)
			}
		})
		if a := allowed.Load(); a != 1 {
			t.Fatalf("%d concurrent Cooldown calls: %d allowed, want 1", n, a)
		}
	})
}

// ---------------------------------------------------------------- outbox

func testOutbox(t *testing.T, open Opener) {
	msg := func(id string) storage.OutboxMessage {
		return storage.OutboxMessage{ID: id, Kind: "code", Payload: []byte(`{"to":"` + id + `@acme.example"}`)}
	}
	claim := func(t *testing.T, ctx context.Context, s storage.Store, lease time.Duration, max int) map[string]storage.OutboxMessage {
		t.Helper()
		ms, err := s.ClaimOutbox(ctx, lease, max)
		must(t, "ClaimOutbox", err)
		out := make(map[string]storage.OutboxMessage, len(ms))
		for _, m := range ms {
			if _, dup := out[m.ID]; dup {
				t.Fatalf("ClaimOutbox returned %s twice", m.ID)
			}
			out[m.ID] = m
		}
		return out
	}
	outboxLen := func(t *testing.T, ctx context.Context, s storage.Store, want int) {
		t.Helper()
		n, err := s.OutboxLen(ctx)
		must(t, "OutboxLen", err)
		if n != want {
			t.Fatalf("OutboxLen = %d, want %d", n, want)
		}
	}

	t.Run("EnqueueForFlow", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		now := clock.Now()
		f := storage.SignInFlow{IDHash: newHash(t), Workspace: "acme", ReturnTo: "/tickets", Email: "jane@acme.example",
			Method: "code", CodesSent: 1, CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
		requested := storage.AuditEvent{Time: now, Workspace: "acme", Event: "code_requested", Email: f.Email, Method: "code"}
		must(t, "EnqueueForFlow", s.EnqueueForFlow(ctx, msg("m1"), f, requested))
		got, err := s.Flow(ctx, f.IDHash)
		must(t, "Flow", err)
		if !sameFlow(got, f) {
			t.Fatalf("Flow = %+v, want %+v", got, f)
		}
		if c := claim(t, ctx, s, time.Minute, 10); len(c) != 1 || string(c["m1"].Payload) != string(msg("m1").Payload) {
			t.Fatalf("claim after EnqueueForFlow: %v", c)
		}
		// A flow past its expiry is refused, and nothing is queued.
		old := f
		old.IDHash, old.ExpiresAt = newHash(t), now.Add(-time.Second)
		if err := s.EnqueueForFlow(ctx, msg("m2"), old, storage.AuditEvent{Time: now, Workspace: "acme", Event: "code_resent", Method: "code"}); err == nil {
			t.Fatal("EnqueueForFlow with an expired flow: no error")
		}
		outboxLen(t, ctx, s, 1)
		// The event came with the message that was queued, and not with
		// the one that was refused.
		events, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme"})
		must(t, "Audit", err)
		if len(events) != 1 || events[0].Event != "code_requested" || events[0].Email != f.Email || events[0].ID == "" {
			t.Fatalf("the audit trail after EnqueueForFlow = %+v, want the one code_requested it was given", events)
		}
		if _, err := s.Flow(ctx, old.IDHash); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the expired flow: err = %v, want ErrNotFound", err)
		}
	})

	t.Run("RequestCode", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		now := clock.Now()
		f := storage.SignInFlow{IDHash: newHash(t), Workspace: "acme", ReturnTo: "/tickets", Email: "jane@acme.example",
			Method: "code", CodesSent: 1, CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
		const cool, cooldown = "resend/acme/jane@acme.example", 30 * time.Second
		hits := []storage.Hit{{Key: "req/ip/192.0.2.0/24", Limit: 2, Window: time.Hour}, {Key: "req/other", Limit: 9, Window: time.Hour}}
		event := func(name string) storage.AuditEvent {
			return storage.AuditEvent{Time: clock.Now(), Workspace: "acme", Event: name, Email: f.Email, Method: "code"}
		}
		count := func(key string) int {
			t.Helper()
			n, _, err := s.Count(ctx, key, time.Hour)
			must(t, "Count", err)
			return n
		}
		// Queued: the cooldown starts, both counters count, and the
		// message, the flow and the event are stored.
		res, err := s.RequestCode(ctx, cool, cooldown, hits, msg("m1"), f, event("code_requested"))
		must(t, "RequestCode", err)
		if !res.Queued() || res.Wait != 0 || res.Hits.Over != -1 || len(res.Hits.Counts) != 2 || res.Hits.Counts[0] != 1 {
			t.Fatalf("first RequestCode = %+v, want queued with counts [1 1]", res)
		}
		if got, err := s.Flow(ctx, f.IDHash); err != nil || !sameFlow(got, f) {
			t.Fatalf("Flow after RequestCode = %+v, %v", got, err)
		}
		outboxLen(t, ctx, s, 1)
		// Within the cooldown: its wait, and nothing counted or queued.
		clock.Advance(10 * time.Second)
		res, err = s.RequestCode(ctx, cool, cooldown, hits, msg("m2"), f, event("code_resent"))
		must(t, "RequestCode", err)
		if res.Queued() || res.Wait <= 0 || res.Wait > 20*time.Second {
			t.Fatalf("RequestCode in the cooldown = %+v, want a wait of at most 20 s", res)
		}
		outboxLen(t, ctx, s, 1)
		if n := count("req/other"); n != 2 {
			t.Fatalf("a counter after a request in the cooldown: %d, want 2 (the first request and this count)", n)
		}
		// Past the cooldown but over the first counter's limit: the
		// first counter counts, the second is not touched, nothing is
		// queued, and no cooldown starts: a client over its limit
		// cannot hold back another's code.
		clock.Advance(cooldown)
		count("req/ip/192.0.2.0/24")
		res, err = s.RequestCode(ctx, cool, cooldown, hits, msg("m3"), f, event("code_resent"))
		must(t, "RequestCode", err)
		if res.Queued() || res.Wait != 0 || res.Hits.Over != 0 || res.Hits.RetryAfter <= 0 || len(res.Hits.Counts) != 1 || res.Hits.Counts[0] != 3 {
			t.Fatalf("RequestCode over a limit = %+v, want over the first counter at 3", res)
		}
		outboxLen(t, ctx, s, 1)
		if n := count("req/other"); n != 3 {
			t.Fatalf("the counter after the one over its limit: %d, want 3 (untouched, then this count)", n)
		}
		if res, err := s.RequestCode(ctx, cool, cooldown, nil, msg("m4"), f, event("code_resent")); err != nil || !res.Queued() {
			t.Fatalf("RequestCode right after one over a limit = %+v, %v; want it queued, no cooldown running", res, err)
		}
		if res, err := s.RequestCode(ctx, cool, cooldown, nil, msg("m5"), f); err != nil || res.Wait <= 0 {
			t.Fatalf("RequestCode right after a queued one = %+v, %v; want the cooldown it started", res, err)
		}
		// Only the queued requests' events are in the trail.
		events, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme"})
		must(t, "Audit", err)
		if len(events) != 2 || events[0].Event == events[1].Event {
			t.Fatalf("the audit trail after RequestCode = %+v, want code_requested and one code_resent", events)
		}
		if c := claim(t, ctx, s, time.Minute, 10); len(c) != 2 || c["m1"].ID != "m1" || c["m4"].ID != "m4" {
			t.Fatalf("claim after RequestCode: %v, want m1 and m4", c)
		}
	})

	t.Run("ClaimFindsEveryLiveMessage", func(t *testing.T) {
		// Claims never miss a message, whatever order ids arrive in
		// and whatever was delivered before (a backend may remember
		// where the live messages start).
		ctx, s, clock := setup(t, open)
		must(t, "Enqueue", s.Enqueue(ctx, msg("m5")))
		must(t, "Enqueue", s.Enqueue(ctx, msg("m7")))
		if got := claim(t, ctx, s, time.Minute, 1); len(got) != 1 {
			t.Fatalf("first claim: %d messages, want 1", len(got))
		}
		must(t, "AckOutbox", s.AckOutbox(ctx, "m5"))
		must(t, "Enqueue", s.Enqueue(ctx, msg("m1")))
		got := claim(t, ctx, s, time.Minute, 10)
		if _, ok := got["m1"]; !ok || len(got) != 2 {
			t.Fatalf("claim after a lower id was enqueued: %v, want m1 and m7", slices.Sorted(maps.Keys(got)))
		}
		must(t, "AckOutbox", s.AckOutbox(ctx, "m1"))
		// An ack carries its delivery's audit events.
		sent := storage.AuditEvent{Time: clock.Now(), Workspace: "acme", Event: "code_sent", ContactID: "c-7", Method: "code"}
		must(t, "AckOutbox", s.AckOutbox(ctx, "m7", sent))
		events, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: "c-7"})
		must(t, "Audit", err)
		if len(events) != 1 || events[0].Event != "code_sent" || events[0].ID == "" {
			t.Fatalf("the audit trail after AckOutbox with an event = %+v, want its code_sent", events)
		}
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 0 {
			t.Fatalf("claim of an empty outbox: %v", slices.Sorted(maps.Keys(got)))
		}
		must(t, "Enqueue", s.Enqueue(ctx, msg("m0")))
		must(t, "RetryOutbox", s.RetryOutbox(ctx, "m0", clock.Now().Add(time.Minute), "later"))
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 0 {
			t.Fatalf("claim before the retry is due: %v", slices.Sorted(maps.Keys(got)))
		}
		clock.Advance(time.Minute)
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 1 {
			t.Fatalf("claim once the retry is due: %v, want m0", slices.Sorted(maps.Keys(got)))
		}
		must(t, "AckOutbox", s.AckOutbox(ctx, "m0"))

		// Enqueues racing a claimer, ids in random order: each message
		// is claimed exactly once.
		const writers, each = 4, 40
		var enqueued sync.WaitGroup
		enqueued.Add(writers)
		for w := range writers {
			go func() {
				defer enqueued.Done()
				for i := range each {
					id := fmt.Sprintf("r%02d-%03d", (i*7+w*13)%97, w*each+i)
					if err := s.Enqueue(ctx, msg(id)); err != nil {
						t.Errorf("Enqueue: %v", err)
					}
				}
			}()
		}
		writing := make(chan struct{})
		go func() { enqueued.Wait(); close(writing) }()
		claimed := map[string]bool{}
		for done := false; ; {
			select {
			case <-writing:
				done = true
			default:
			}
			ms, err := s.ClaimOutbox(ctx, time.Hour, 8)
			must(t, "ClaimOutbox", err)
			for _, m := range ms {
				if claimed[m.ID] {
					t.Fatalf("%s claimed twice", m.ID)
				}
				claimed[m.ID] = true
				must(t, "AckOutbox", s.AckOutbox(ctx, m.ID))
			}
			if done && len(ms) == 0 {
				break
			}
		}
		if len(claimed) != writers*each {
			t.Fatalf("claimed %d messages, want %d", len(claimed), writers*each)
		}
	})

	t.Run("ClaimLeaseAck", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		outboxLen(t, ctx, s, 0)
		for _, id := range []string{"m1", "m2", "m3"} {
			must(t, "Enqueue", s.Enqueue(ctx, msg(id)))
		}
		outboxLen(t, ctx, s, 3)

		got := claim(t, ctx, s, time.Minute, 10)
		if len(got) != 3 {
			t.Fatalf("claimed %d messages, want 3", len(got))
		}
		for id, m := range got {
			want := msg(id)
			if m.Kind != want.Kind || !bytes.Equal(m.Payload, want.Payload) {
				t.Errorf("claimed %s = %+v, want kind and payload of %+v", id, m, want)
			}
			if m.Attempts != 1 {
				t.Errorf("claimed %s: Attempts = %d, want 1", id, m.Attempts)
			}
			if !m.LeaseUntil.Equal(clock.Now().Add(time.Minute)) {
				t.Errorf("claimed %s: LeaseUntil = %v, want %v", id, m.LeaseUntil, clock.Now().Add(time.Minute))
			}
		}
		if again := claim(t, ctx, s, time.Minute, 10); len(again) != 0 {
			t.Fatalf("leased messages claimed again: %v", slices.Collect(maps.Keys(again)))
		}
		outboxLen(t, ctx, s, 3)

		must(t, "AckOutbox", s.AckOutbox(ctx, "m2"))
		outboxLen(t, ctx, s, 2)
		clock.Advance(time.Minute)
		again := claim(t, ctx, s, time.Minute, 10)
		if _, ok := again["m2"]; ok || len(again) != 2 {
			t.Fatalf("after the lease lapsed, claimed %v, want m1 and m3", slices.Collect(maps.Keys(again)))
		}
	})

	t.Run("ClaimRespectsMax", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		for i := range 5 {
			must(t, "Enqueue", s.Enqueue(ctx, msg(fmt.Sprintf("m%d", i))))
		}
		first := claim(t, ctx, s, time.Minute, 2)
		if len(first) != 2 {
			t.Fatalf("claimed %d with max 2", len(first))
		}
		rest := claim(t, ctx, s, time.Minute, 10)
		if len(rest) != 3 {
			t.Fatalf("claimed %d of the remaining 3", len(rest))
		}
		for id := range rest {
			if _, dup := first[id]; dup {
				t.Fatalf("%s claimed twice", id)
			}
		}
	})

	t.Run("EnqueueFillsID", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		must(t, "Enqueue", s.Enqueue(ctx, msg("")))
		must(t, "Enqueue", s.Enqueue(ctx, msg("")))
		got := claim(t, ctx, s, time.Minute, 10)
		if len(got) != 2 {
			t.Fatalf("claimed %d messages enqueued without id, want 2 with distinct ids", len(got))
		}
		for id, m := range got {
			if id == "" {
				t.Fatal("a message was claimed without an id")
			}
			if m.CreatedAt.IsZero() {
				t.Errorf("message %s: CreatedAt not set", id)
			}
			must(t, "AckOutbox", s.AckOutbox(ctx, id))
		}
		outboxLen(t, ctx, s, 0)
	})

	t.Run("FutureDue", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		m := msg("later")
		m.Due = clock.Now().Add(time.Hour)
		must(t, "Enqueue", s.Enqueue(ctx, m))
		outboxLen(t, ctx, s, 1)
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 0 {
			t.Fatal("a message was claimed before it was due")
		}
		clock.Advance(time.Hour)
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 1 {
			t.Fatalf("claimed %d once due, want 1", len(got))
		}
	})

	t.Run("RetryLater", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		must(t, "Enqueue", s.Enqueue(ctx, msg("m1")))
		if got := claim(t, ctx, s, time.Hour, 10); len(got) != 1 {
			t.Fatalf("claimed %d, want 1", len(got))
		}
		must(t, "RetryOutbox", s.RetryOutbox(ctx, "m1", clock.Now().Add(5*time.Minute), "smtp: 421 try later"))
		outboxLen(t, ctx, s, 1)
		clock.Advance(5*time.Minute - time.Second)
		if got := claim(t, ctx, s, time.Hour, 10); len(got) != 0 {
			t.Fatal("a retried message was claimed before its new due time")
		}
		clock.Advance(time.Second)
		got := claim(t, ctx, s, time.Hour, 10)
		m, ok := got["m1"]
		if !ok || len(got) != 1 {
			t.Fatalf("claimed %v once due again, want m1", slices.Collect(maps.Keys(got)))
		}
		if m.Attempts != 2 || m.LastError != "smtp: 421 try later" {
			t.Fatalf("retried message: Attempts=%d LastError=%q, want 2 and the error", m.Attempts, m.LastError)
		}
		must(t, "AckOutbox", s.AckOutbox(ctx, "m1"))
		outboxLen(t, ctx, s, 0)
	})

	t.Run("ReclaimedAfterLeaseLapses", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		must(t, "Enqueue", s.Enqueue(ctx, msg("m1")))
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 1 {
			t.Fatalf("claimed %d, want 1", len(got))
		}
		// The worker died without acking or retrying.
		clock.Advance(time.Minute - time.Second)
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 0 {
			t.Fatal("claimed while still leased")
		}
		clock.Advance(time.Second)
		got := claim(t, ctx, s, time.Minute, 10)
		if m, ok := got["m1"]; !ok || m.Attempts != 2 {
			t.Fatalf("after the lease lapsed: %+v, want m1 with Attempts 2", got)
		}
	})

	t.Run("ReleaseLeases", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		for _, id := range []string{"m1", "m2", "m3"} {
			must(t, "Enqueue", s.Enqueue(ctx, msg(id)))
		}
		if got := claim(t, ctx, s, 2*time.Minute, 10); len(got) != 3 {
			t.Fatalf("claimed %d, want 3", len(got))
		}
		// m2 failed and waits for its retry; m3 was delivered.
		must(t, "RetryOutbox", s.RetryOutbox(ctx, "m2", clock.Now().Add(time.Hour), "smtp: 421"))
		must(t, "AckOutbox", s.AckOutbox(ctx, "m3"))
		n, err := s.ReleaseLeases(ctx)
		must(t, "ReleaseLeases", err)
		if n != 1 {
			t.Errorf("ReleaseLeases = %d, want 1 (m1)", n)
		}
		got := claim(t, ctx, s, 2*time.Minute, 10)
		if m, ok := got["m1"]; !ok || len(got) != 1 || m.Attempts != 2 {
			t.Fatalf("after ReleaseLeases claimed %+v, want m1 at once with Attempts 2", got)
		}
		if n, err := s.ReleaseLeases(ctx); err != nil || n != 1 {
			t.Errorf("ReleaseLeases again = %d, %v; want 1", n, err)
		}
		must(t, "AckOutbox", s.AckOutbox(ctx, "m1"))
		if n, err := s.ReleaseLeases(ctx); err != nil || n != 0 {
			t.Errorf("ReleaseLeases with nothing leased = %d, %v; want 0", n, err)
		}
		clock.Advance(time.Hour)
		if got := claim(t, ctx, s, time.Minute, 10); len(got) != 1 || got["m2"].ID != "m2" {
			t.Fatalf("at its retry time claimed %v, want m2", slices.Collect(maps.Keys(got)))
		}
	})

	t.Run("ConcurrentClaimsExactlyOnce", func(t *testing.T) {
		ctx, s, _ := setup(t, open)
		const total, workers = 30, 6
		for i := range total {
			must(t, "Enqueue", s.Enqueue(ctx, msg(fmt.Sprintf("m%02d", i))))
		}
		var (
			mu      sync.Mutex
			claimed = map[string]int{}
			count   atomic.Int32
		)
		deadline := time.Now().Add(30 * time.Second)
		parallel(workers, func(int) {
			for count.Load() < total && time.Now().Before(deadline) {
				ms, err := s.ClaimOutbox(ctx, time.Hour, 4)
				if err != nil {
					t.Errorf("ClaimOutbox: %v", err)
					return
				}
				mu.Lock()
				for _, m := range ms {
					claimed[m.ID]++
				}
				mu.Unlock()
				count.Add(int32(len(ms)))
				if len(ms) == 0 {
					runtime.Gosched()
				}
			}
		})
		if len(claimed) != total {
			t.Errorf("%d distinct messages claimed, want %d", len(claimed), total)
		}
		for id, n := range claimed {
			if n != 1 {
				t.Errorf("message %s claimed %d times under one lease", id, n)
			}
		}
		if got := claim(t, ctx, s, time.Hour, total); len(got) != 0 {
			t.Fatalf("%d messages claimed again while leased", len(got))
		}
		outboxLen(t, ctx, s, total)
	})
}

// ---------------------------------------------------------------- audit

func sameEvent(a, b storage.AuditEvent) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	a.ID, b.ID = "", ""
	return a == b
}

func testAudit(t *testing.T, open Opener) {
	const ws = "acme"
	events := []string{"code_sent", "signin", "signin_failed"}

	// seed appends ten events one second apart (oldest first) to acme and
	// five at one instant to globex, and returns acme's as appended.
	seed := func(t *testing.T) (context.Context, storage.Store, *Clock, []storage.AuditEvent) {
		t.Helper()
		ctx, s, clock := setup(t, open)
		var appended []storage.AuditEvent
		for i := range 10 {
			clock.Advance(time.Second)
			e := storage.AuditEvent{
				Time: clock.Now(), Workspace: ws, Event: events[i%3],
				ContactID: fmt.Sprintf("c-%d", i%2+1), Email: fmt.Sprintf("user%d@acme.example", i%2+1),
				Method: "code", ClientIP: "192.0.2.7", UserAgent: "test", Reason: fmt.Sprintf("r%d", i),
			}
			must(t, "AppendAudit", s.AppendAudit(ctx, e))
			appended = append(appended, e)
		}
		for i := range 5 {
			must(t, "AppendAudit", s.AppendAudit(ctx, storage.AuditEvent{
				Time: clock.Now(), Workspace: "globex", Event: "signin", ContactID: "g-1", Reason: fmt.Sprintf("g%d", i),
			}))
		}
		return ctx, s, clock, appended
	}
	// newestFirst returns the events matching keep, newest first.
	newestFirst := func(es []storage.AuditEvent, keep func(storage.AuditEvent) bool) []storage.AuditEvent {
		var out []storage.AuditEvent
		for i := len(es) - 1; i >= 0; i-- {
			if keep(es[i]) {
				out = append(out, es[i])
			}
		}
		return out
	}
	query := func(t *testing.T, ctx context.Context, s storage.Store, q storage.AuditQuery) []storage.AuditEvent {
		t.Helper()
		got, next, err := s.Audit(ctx, q)
		must(t, "Audit", err)
		if next != "" {
			t.Fatalf("Audit(%+v): cursor %q on a single page", q, next)
		}
		return got
	}
	check := func(t *testing.T, what string, got, want []storage.AuditEvent) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
		}
		for i := range got {
			if !sameEvent(got[i], want[i]) {
				t.Fatalf("%s: event %d = %+v, want %+v", what, i, got[i], want[i])
			}
		}
	}
	// page reads every page of q and checks that each event comes exactly once.
	page := func(t *testing.T, ctx context.Context, s storage.Store, q storage.AuditQuery) []storage.AuditEvent {
		t.Helper()
		var all []storage.AuditEvent
		seen := map[string]bool{}
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("paging does not end")
			}
			got, next, err := s.Audit(ctx, q)
			must(t, "Audit", err)
			if len(got) > q.Limit {
				t.Fatalf("page of %d events with limit %d", len(got), q.Limit)
			}
			for _, e := range got {
				if e.ID == "" {
					t.Fatal("event without id")
				}
				if seen[e.ID] {
					t.Fatalf("event %s on two pages", e.ID)
				}
				seen[e.ID] = true
			}
			all = append(all, got...)
			if next == "" {
				return all
			}
			if len(got) == 0 {
				t.Fatal("empty page with a cursor")
			}
			q.Cursor = next
		}
	}

	t.Run("NewestFirst", func(t *testing.T) {
		ctx, s, _, appended := seed(t)
		got := query(t, ctx, s, storage.AuditQuery{Workspace: ws})
		check(t, "all events", got, newestFirst(appended, func(storage.AuditEvent) bool { return true }))
		ids := map[string]bool{}
		for _, e := range got {
			if e.ID == "" || ids[e.ID] {
				t.Fatalf("event ids are not unique and non-empty: %q", e.ID)
			}
			ids[e.ID] = true
		}
		if got := query(t, ctx, s, storage.AuditQuery{Workspace: "initech"}); len(got) != 0 {
			t.Fatalf("another workspace has %d events", len(got))
		}
	})

	// IDs checks the one id format of every backend (storage.SortableID):
	// each id names its event's time, ids are unique even at one instant,
	// and newest first is descending id order.
	t.Run("IDs", func(t *testing.T) {
		ctx, s, _, _ := seed(t)
		for _, w := range []string{ws, "globex"} {
			got := query(t, ctx, s, storage.AuditQuery{Workspace: w})
			seen := map[string]bool{}
			for i, e := range got {
				at, ok := storage.SortableIDTime(e.ID)
				if !ok {
					t.Fatalf("%s event %d: id %q is not a storage.SortableID", w, i, e.ID)
				}
				if !at.Equal(e.Time) {
					t.Errorf("%s event %d: id %q is of %v, the event of %v", w, i, e.ID, at, e.Time)
				}
				if seen[e.ID] {
					t.Errorf("%s: id %q twice", w, e.ID)
				}
				seen[e.ID] = true
				if i > 0 && e.ID >= got[i-1].ID {
					t.Errorf("%s: id %q after %q; newest first must be descending ids", w, e.ID, got[i-1].ID)
				}
			}
			if len(seen) == 0 {
				t.Fatalf("%s: no events", w)
			}
		}
	})

	t.Run("TimeFilledIn", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		must(t, "AppendAudit", s.AppendAudit(ctx, storage.AuditEvent{Workspace: ws, Event: "signout", ContactID: "c-1"}))
		got := query(t, ctx, s, storage.AuditQuery{Workspace: ws})
		if len(got) != 1 || !got[0].Time.Equal(clock.Now()) {
			t.Fatalf("event without a time: got %+v, want one event at %v", got, clock.Now())
		}
	})

	t.Run("Filters", func(t *testing.T) {
		ctx, s, _, appended := seed(t)
		got := query(t, ctx, s, storage.AuditQuery{Workspace: ws, ContactID: "c-2"})
		check(t, "contact c-2", got, newestFirst(appended, func(e storage.AuditEvent) bool { return e.ContactID == "c-2" }))
		got = query(t, ctx, s, storage.AuditQuery{Workspace: ws, Event: "signin_failed"})
		check(t, "event signin_failed", got, newestFirst(appended, func(e storage.AuditEvent) bool { return e.Event == "signin_failed" }))
		got = query(t, ctx, s, storage.AuditQuery{Workspace: ws, ContactID: "c-1", Event: "code_sent"})
		check(t, "contact c-1 and event code_sent", got, newestFirst(appended, func(e storage.AuditEvent) bool {
			return e.ContactID == "c-1" && e.Event == "code_sent"
		}))

		// Bounds between events, so inclusive or exclusive does not matter.
		since := appended[3].Time.Add(-500 * time.Millisecond)
		until := appended[7].Time.Add(500 * time.Millisecond)
		inRange := func(e storage.AuditEvent) bool { return !e.Time.Before(since) && e.Time.Before(until) }
		got = query(t, ctx, s, storage.AuditQuery{Workspace: ws, Since: since, Until: until})
		check(t, "time range", got, newestFirst(appended, inRange))
		got = query(t, ctx, s, storage.AuditQuery{Workspace: ws, Since: since})
		check(t, "since", got, newestFirst(appended, func(e storage.AuditEvent) bool { return !e.Time.Before(since) }))
		got = query(t, ctx, s, storage.AuditQuery{Workspace: ws, Until: until})
		check(t, "until", got, newestFirst(appended, func(e storage.AuditEvent) bool { return e.Time.Before(until) }))
		got = query(t, ctx, s, storage.AuditQuery{Workspace: ws, ContactID: "c-1", Since: since, Until: until})
		check(t, "contact and time range", got, newestFirst(appended, func(e storage.AuditEvent) bool {
			return e.ContactID == "c-1" && inRange(e)
		}))
	})

	t.Run("Paging", func(t *testing.T) {
		ctx, s, _, appended := seed(t)
		all := newestFirst(appended, func(storage.AuditEvent) bool { return true })
		for _, limit := range []int{1, 3, 5, 10} {
			got := page(t, ctx, s, storage.AuditQuery{Workspace: ws, Limit: limit})
			check(t, fmt.Sprintf("pages of %d", limit), got, all)
		}
		got := page(t, ctx, s, storage.AuditQuery{Workspace: ws, ContactID: "c-1", Limit: 2})
		check(t, "pages of contact c-1", got, newestFirst(appended, func(e storage.AuditEvent) bool { return e.ContactID == "c-1" }))
		since := appended[2].Time.Add(-500 * time.Millisecond)
		until := appended[8].Time.Add(500 * time.Millisecond)
		got = page(t, ctx, s, storage.AuditQuery{Workspace: ws, Since: since, Until: until, Limit: 2})
		check(t, "pages of a time range", got, newestFirst(appended, func(e storage.AuditEvent) bool {
			return !e.Time.Before(since) && e.Time.Before(until)
		}))

		// Events at the same instant are still each paged exactly once.
		got = page(t, ctx, s, storage.AuditQuery{Workspace: "globex", Limit: 2})
		reasons := map[string]bool{}
		for _, e := range got {
			reasons[e.Reason] = true
		}
		if len(got) != 5 || len(reasons) != 5 {
			t.Fatalf("paging events at one instant: %d events, %d distinct, want 5", len(got), len(reasons))
		}
	})
}

// ---------------------------------------------------------------- links

func samePortalLink(a, b storage.PortalLink) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) || !a.ExpiresAt.Equal(b.ExpiresAt) || !a.LastOpenedAt.Equal(b.LastOpenedAt) {
		return false
	}
	a.CreatedAt, a.ExpiresAt, a.LastOpenedAt = time.Time{}, time.Time{}, time.Time{}
	b.CreatedAt, b.ExpiresAt, b.LastOpenedAt = time.Time{}, time.Time{}, time.Time{}
	return a == b
}

func linkIDs(ls []storage.PortalLink) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.ID
	}
	return ids
}

func testLinks(t *testing.T, open Opener) {
	const ws = "acme"
	newLink := func(t *testing.T, clock *Clock, ws, contactID string, ttl time.Duration) storage.PortalLink {
		t.Helper()
		now := clock.Now()
		return storage.PortalLink{ID: hex.EncodeToString(randomBytes(t, 16)), Workspace: ws, ContactID: contactID,
			ReturnTo: "/tickets/42?tab=1", CreatedAt: now, ExpiresAt: now.Add(ttl), CreatedBy: "127.0.0.1:5555"}
	}
	wantLinks := func(t *testing.T, what string, got []storage.PortalLink, err error, want ...storage.PortalLink) {
		t.Helper()
		must(t, what, err)
		if len(got) != len(want) {
			t.Fatalf("%s: links %v, want %v", what, linkIDs(got), linkIDs(want))
		}
		for i := range got {
			if !samePortalLink(got[i], want[i]) {
				t.Fatalf("%s: link %d = %+v, want %+v", what, i, got[i], want[i])
			}
		}
	}

	t.Run("PutGetListNewestFirst", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		var jane []storage.PortalLink
		for range 3 {
			l := newLink(t, clock, ws, "c-1", time.Hour)
			must(t, "PutLink", s.PutLink(ctx, l))
			jane = append([]storage.PortalLink{l}, jane...)
			clock.Advance(time.Second)
		}
		sam := newLink(t, clock, ws, "c-2", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, sam))
		foreign := newLink(t, clock, "globex", "c-1", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, foreign))

		got, err := s.Link(ctx, ws, jane[0].ID)
		must(t, "Link", err)
		if !samePortalLink(got, jane[0]) {
			t.Fatalf("Link = %+v, want %+v", got, jane[0])
		}
		ls, err := s.Links(ctx, ws, "c-1")
		wantLinks(t, "Links of c-1", ls, err, jane...)
		ls, err = s.Links(ctx, ws, "")
		wantLinks(t, "Links of the workspace", ls, err, append([]storage.PortalLink{sam}, jane...)...)
		ls, err = s.Links(ctx, "globex", "")
		wantLinks(t, "Links of globex", ls, err, foreign)
		ls, err = s.Links(ctx, ws, "c-404")
		wantLinks(t, "Links of a contact without links", ls, err)
		_, err = s.Link(ctx, ws, foreign.ID)
		wantNotFound(t, "Link of another workspace", err)
		_, err = s.OpenLink(ctx, ws, foreign.ID)
		wantNotFound(t, "OpenLink of another workspace", err)
		_, err = s.Link(ctx, ws, "0123456789abcdef0123456789abcdef")
		wantNotFound(t, "Link never made", err)
	})

	t.Run("OpenCountsAndRecords", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		l := newLink(t, clock, ws, "c-1", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, l))
		for i := 1; i <= 3; i++ {
			clock.Advance(time.Minute + 1500*time.Microsecond)
			got, err := s.OpenLink(ctx, ws, l.ID)
			must(t, "OpenLink", err)
			want := l
			want.Opens, want.LastOpenedAt = i, clock.Now()
			if !samePortalLink(got, want) {
				t.Fatalf("open %d: OpenLink = %+v, want %+v", i, got, want)
			}
			again, err := s.Link(ctx, ws, l.ID)
			must(t, "Link", err)
			if !samePortalLink(again, want) {
				t.Fatalf("open %d: Link = %+v, want %+v", i, again, want)
			}
			ls, err := s.Links(ctx, ws, "c-1")
			wantLinks(t, "Links after an open", ls, err, want)
		}
	})

	t.Run("Expires", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		l := newLink(t, clock, ws, "c-1", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, l))
		clock.Advance(time.Hour - time.Millisecond)
		_, err := s.OpenLink(ctx, ws, l.ID)
		must(t, "OpenLink a moment before expiry", err)
		clock.Advance(time.Millisecond)
		_, err = s.OpenLink(ctx, ws, l.ID)
		wantNotFound(t, "OpenLink at expiry", err)
		_, err = s.Link(ctx, ws, l.ID)
		wantNotFound(t, "Link at expiry", err)
		ls, err := s.Links(ctx, ws, "")
		wantLinks(t, "Links at expiry", ls, err)
		wantNotFound(t, "DeleteLink of an expired link", s.DeleteLink(ctx, ws, l.ID))
		n, err := s.DeleteContactLinks(ctx, ws, "c-1")
		must(t, "DeleteContactLinks", err)
		if n != 0 {
			t.Fatalf("DeleteContactLinks counted %d expired links", n)
		}
		if err := s.PutLink(ctx, newLink(t, clock, ws, "c-1", 0)); err == nil {
			t.Fatal("PutLink of an already expired link: no error")
		}
	})

	t.Run("DeleteRevokesAtOnce", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		l := newLink(t, clock, ws, "c-1", time.Hour)
		keep := newLink(t, clock, ws, "c-1", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, l))
		must(t, "PutLink", s.PutLink(ctx, keep))
		wantNotFound(t, "DeleteLink of another workspace", s.DeleteLink(ctx, "globex", l.ID))
		must(t, "DeleteLink", s.DeleteLink(ctx, ws, l.ID))
		_, err := s.OpenLink(ctx, ws, l.ID)
		wantNotFound(t, "OpenLink after DeleteLink", err)
		_, err = s.Link(ctx, ws, l.ID)
		wantNotFound(t, "Link after DeleteLink", err)
		wantNotFound(t, "DeleteLink twice", s.DeleteLink(ctx, ws, l.ID))
		wantNotFound(t, "DeleteLink never made", s.DeleteLink(ctx, ws, "0123456789abcdef0123456789abcdef"))
		ls, err := s.Links(ctx, ws, "c-1")
		wantLinks(t, "Links after DeleteLink", ls, err, keep)
		ls, err = s.Links(ctx, ws, "")
		wantLinks(t, "workspace Links after DeleteLink", ls, err, keep)
	})

	t.Run("DeleteContactLinks", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		short := newLink(t, clock, ws, "c-1", time.Minute)
		must(t, "PutLink", s.PutLink(ctx, short))
		for range 3 {
			must(t, "PutLink", s.PutLink(ctx, newLink(t, clock, ws, "c-1", time.Hour)))
		}
		sam := newLink(t, clock, ws, "c-2", time.Hour)
		foreign := newLink(t, clock, "globex", "c-1", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, sam))
		must(t, "PutLink", s.PutLink(ctx, foreign))
		clock.Advance(time.Minute)
		n, err := s.DeleteContactLinks(ctx, ws, "c-1")
		must(t, "DeleteContactLinks", err)
		if n != 3 {
			t.Fatalf("DeleteContactLinks = %d, want the 3 live links", n)
		}
		ls, err := s.Links(ctx, ws, "c-1")
		wantLinks(t, "Links after DeleteContactLinks", ls, err)
		ls, err = s.Links(ctx, ws, "")
		wantLinks(t, "workspace Links after DeleteContactLinks", ls, err, sam)
		ls, err = s.Links(ctx, "globex", "c-1")
		wantLinks(t, "another workspace's links", ls, err, foreign)
		if n, err := s.DeleteContactLinks(ctx, ws, "c-1"); err != nil || n != 0 {
			t.Fatalf("DeleteContactLinks again = %d, %v; want 0", n, err)
		}
		// A link made after the revocation works.
		l := newLink(t, clock, ws, "c-1", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, l))
		_, err = s.OpenLink(ctx, ws, l.ID)
		must(t, "OpenLink of a new link", err)
	})

	t.Run("ConcurrentOpensCountedExactly", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		l := newLink(t, clock, ws, "c-1", time.Hour)
		must(t, "PutLink", s.PutLink(ctx, l))
		const n = 16
		counts := make([]int, n)
		parallel(n, func(i int) {
			got, err := s.OpenLink(ctx, ws, l.ID)
			if err != nil {
				t.Errorf("OpenLink #%d: %v", i, err)
			}
			counts[i] = got.Opens
		})
		slices.Sort(counts)
		for i, c := range counts {
			if c != i+1 {
				t.Fatalf("concurrent opens saw counts %v, want 1..%d each once", counts, n)
			}
		}
		got, err := s.Link(ctx, ws, l.ID)
		must(t, "Link", err)
		if got.Opens != n {
			t.Fatalf("Opens = %d after %d concurrent opens", got.Opens, n)
		}
	})

	t.Run("ConcurrentRevocationsCountOnce", func(t *testing.T) {
		ctx, s, clock := setup(t, open)
		for range 5 {
			must(t, "PutLink", s.PutLink(ctx, newLink(t, clock, ws, "c-1", time.Hour)))
		}
		var total atomic.Int64
		parallel(8, func(i int) {
			n, err := s.DeleteContactLinks(ctx, ws, "c-1")
			if err != nil {
				t.Errorf("DeleteContactLinks #%d: %v", i, err)
			}
			total.Add(int64(n))
		})
		if total.Load() != 5 {
			t.Fatalf("concurrent DeleteContactLinks counted %d links, want 5", total.Load())
		}
	})
}

// testAuditActor checks that an event's actor is kept.
func testAuditActor(t *testing.T, open Opener) {
	ctx, s, clock := setup(t, open)
	e := storage.AuditEvent{Time: clock.Now(), Workspace: "acme", Event: "link_created", ContactID: "c-1",
		Actor: "CN=ops,O=Acme", Reason: "link 0123", Count: 3}
	must(t, "AppendAudit", s.AppendAudit(ctx, e))
	got, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme"})
	must(t, "Audit", err)
	if len(got) != 1 || !sameEvent(got[0], e) {
		t.Fatalf("Audit = %+v, want %+v", got, e)
	}
}
