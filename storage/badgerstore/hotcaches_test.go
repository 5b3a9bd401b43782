package badgerstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// TestContactByIndexCacheFollowsWrites reads contacts by email and by
// directory id (so they are cached), then changes them every way the store
// can: each read after a write sees the write.
func TestContactByIndexCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := func(when, email, dirID, status string) {
		t.Helper()
		for _, read := range []func() (storage.Contact, error){
			func() (storage.Contact, error) { return s.ContactByEmail(ctx, "acme", email) },
			func() (storage.Contact, error) { return s.ContactByDirectoryID(ctx, "acme", dirID) },
		} {
			for range 2 { // the second read comes from the cache
				c, err := read()
				switch {
				case status == "" && !errors.Is(err, storage.ErrNotFound):
					t.Fatalf("%s: %+v, %v; want not found", when, c, err)
				case status != "" && (err != nil || c.Status != status || c.Email != email):
					t.Fatalf("%s: %+v, %v; want %s with status %s", when, c, err, email, status)
				}
			}
		}
	}
	jane := storage.Contact{ID: "c-1", Email: "jane@acme.example", Name: "Jane", Status: storage.StatusActive, DirectoryID: "d-1"}
	if err := s.PutContacts(ctx, "acme", []storage.Contact{jane}); err != nil {
		t.Fatal(err)
	}
	want("after PutContacts", jane.Email, "d-1", storage.StatusActive)

	jane.Status = storage.StatusDisabled
	if err := s.PutContacts(ctx, "acme", []storage.Contact{jane}); err != nil {
		t.Fatal(err)
	}
	want("after disabling", jane.Email, "d-1", storage.StatusDisabled)

	jane.Status = storage.StatusActive
	if _, err := s.ReplaceContacts(ctx, "acme", storage.ContactSet{Source: storage.SourceManual}, []storage.Contact{jane}); err != nil {
		t.Fatal(err)
	}
	want("after ReplaceContacts", jane.Email, "d-1", storage.StatusActive)

	if _, err := s.DeleteContact(ctx, "acme", jane.ID); err != nil {
		t.Fatal(err)
	}
	want("after DeleteContact", jane.Email, "d-1", "")
}

// TestFlowCacheFollowsWrites reads a sign-in flow (so it is cached), then
// writes it every way the store can: each read after a write sees it.
func TestFlowCacheFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := func(when, email string) {
		t.Helper()
		for range 2 { // the second read comes from the cache
			f, err := s.Flow(ctx, "flow-1")
			switch {
			case email == "" && !errors.Is(err, storage.ErrNotFound):
				t.Fatalf("%s: %+v, %v; want not found", when, f, err)
			case email != "" && (err != nil || f.Email != email):
				t.Fatalf("%s: %+v, %v; want the flow of %s", when, f, err, email)
			}
		}
	}
	now := time.Now()
	f := storage.SignInFlow{IDHash: "flow-1", Workspace: "acme", ReturnTo: "/", Email: "a@acme.example", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.PutFlow(ctx, f); err != nil {
		t.Fatal(err)
	}
	want("after PutFlow", "a@acme.example")
	f.Email = "b@acme.example"
	if err := s.PutFlow(ctx, f); err != nil {
		t.Fatal(err)
	}
	want("after PutFlow again", "b@acme.example")
	f.Email = "c@acme.example"
	if err := s.EnqueueForFlow(ctx, storage.OutboxMessage{Kind: "code"}, f); err != nil {
		t.Fatal(err)
	}
	want("after EnqueueForFlow", "c@acme.example")
	sess := storage.Session{IDHash: "sess-1", Workspace: "acme", ContactID: "c-1", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour), Idle: time.Hour}
	if err := s.StartSession(ctx, sess, "flow-1", ""); err != nil {
		t.Fatal(err)
	}
	want("after StartSession ended it", "")
	if err := s.PutFlow(ctx, f); err != nil {
		t.Fatal(err)
	}
	want("after PutFlow once more", "c@acme.example")
	if err := s.DeleteFlow(ctx, "flow-1"); err != nil {
		t.Fatal(err)
	}
	want("after DeleteFlow", "")
}
