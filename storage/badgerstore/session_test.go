package badgerstore

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

func testSession(now time.Time) storage.Session {
	return storage.Session{
		IDHash: strings.Repeat("ab", 32), Workspace: "acme", ContactID: "c-1", Method: "sso:microsoft",
		CSRF: strings.Repeat("x", 43), ClientIP: "2001:db8::7", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
		CreatedAt: now, LastSeen: now.Add(90 * time.Second), ExpiresAt: now.Add(12 * time.Hour), Idle: 2 * time.Hour,
	}
}

func sameSession(a, b storage.Session) bool {
	return a.IDHash == b.IDHash && a.Workspace == b.Workspace && a.ContactID == b.ContactID &&
		a.Method == b.Method && a.CSRF == b.CSRF && a.ClientIP == b.ClientIP && a.UserAgent == b.UserAgent &&
		a.CreatedAt.Equal(b.CreatedAt) && a.LastSeen.Equal(b.LastSeen) && a.ExpiresAt.Equal(b.ExpiresAt) && a.Idle == b.Idle
}

// TestSessionRecord checks the binary session record: every field back
// as written (nanoseconds, zero times and empty strings included), a
// third of the JSON's size or less, and a refusal, not a panic, for
// every record cut short or followed by bytes.
func TestSessionRecord(t *testing.T) {
	now := time.Date(2026, 12, 1, 13, 4, 5, 123456789, time.FixedZone("CET", 3600))
	for _, sess := range []storage.Session{testSession(now), {IDHash: "h"}, {IDHash: "h", Workspace: "w", LastSeen: time.Unix(-1, 5)}} {
		b := encodeSession(sess)
		got, err := decodeSession(b, sess.IDHash)
		if err != nil || !sameSession(got, sess) {
			t.Fatalf("round trip of %+v: %+v, %v", sess, got, err)
		}
		for i := range len(b) {
			if _, err := decodeSession(b[:i], sess.IDHash); err == nil {
				t.Fatalf("a record cut to %d of %d bytes was read", i, len(b))
			}
		}
		if _, err := decodeSession(append(b, 0), sess.IDHash); err == nil {
			t.Fatal("a record with a byte after it was read")
		}
	}
	sess := testSession(now)
	js, _ := json.Marshal(sess)
	t.Logf("a session record: %d bytes binary, %d JSON", len(encodeSession(sess)), len(js))
	if b := encodeSession(sess); len(b)*2 > len(js) {
		t.Fatalf("binary record %d bytes, JSON %d: want at most half", len(b), len(js))
	}
}

// TestSessionWrittenAsJSON checks that sessions an earlier version wrote
// as JSON are read, listed and ended as before, and that a touch
// rewrites them in binary.
func TestSessionWrittenAsJSON(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	sess := testSession(now)
	if err := s.db.Update(func(txn *badger.Txn) error {
		if err := setJSON(txn, kSession+sess.IDHash, sess, time.Hour); err != nil {
			return err
		}
		return txn.Set([]byte(kSessIdx+sess.Workspace+"/"+sess.ContactID+"/"+sess.IDHash), nil)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Session(ctx, "acme", sess.IDHash)
	if err != nil || !sameSession(got, sess) {
		t.Fatalf("Session of a JSON record: %+v, %v", got, err)
	}
	list, err := s.Sessions(ctx, "acme", "c-1")
	if err != nil || len(list) != 1 || !sameSession(list[0], sess) {
		t.Fatalf("Sessions with a JSON record: %+v, %v", list, err)
	}
	seen := sess.LastSeen.Add(time.Minute)
	if err := s.TouchSession(ctx, "acme", sess.IDHash, seen); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kSession + sess.IDHash))
		if err != nil {
			return err
		}
		raw, err = item.ValueCopy(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || raw[0] != sessionFormat {
		t.Fatalf("after a touch the record starts %q, want the binary format", raw[:min(len(raw), 8)])
	}
	sess.LastSeen = seen
	if got, err := s.Session(ctx, "acme", sess.IDHash); err != nil || !sameSession(got, sess) {
		t.Fatalf("Session after the touch: %+v, %v", got, err)
	}
	if n, err := s.DeleteContactSessions(ctx, "acme", "c-1"); err != nil || n != 1 {
		t.Fatalf("DeleteContactSessions: %d, %v", n, err)
	}
}

// FuzzSessionRecord feeds arbitrary bytes to the session decoder: never a
// panic, and whatever it reads survives a round trip.
func FuzzSessionRecord(f *testing.F) {
	f.Add(encodeSession(testSession(time.Now())))
	f.Add([]byte{sessionFormat})
	f.Add([]byte(`{"workspace":"acme"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sess, err := decodeSession(b, "h")
		if err != nil || b[0] == '{' {
			return
		}
		if again, err := decodeSession(encodeSession(sess), "h"); err != nil || !sameSession(again, sess) {
			t.Fatalf("read %+v from %x, then %+v, %v", sess, b, again, err)
		}
	})
}
