package badgerstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

func open(t *testing.T, dir string, o badgerstore.Options) *badgerstore.Store {
	t.Helper()
	s, err := badgerstore.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, now func() time.Time) storage.Store {
		s := open(t, t.TempDir(), badgerstore.Options{Now: now})
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}

// TestReopen checks that everything a flow relies on survives a restart.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := storagetest.NewClock()
	now := clock.Now()
	s := open(t, dir, badgerstore.Options{Now: clock.Now})

	secret, err := s.Secret(ctx, func() ([]byte, error) { return []byte("kept-secret"), nil })
	if err != nil {
		t.Fatal(err)
	}
	jane := storage.Contact{ID: "c-1", Email: "jane@acme.example", Name: "Jane", Source: storage.SourceDirectory, DirectoryID: "entra-1"}
	if err := jane.Normalize(); err != nil {
		t.Fatal(err)
	}
	code := storage.Code{Hash: []byte("code-hash"), IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	flow := storage.SignInFlow{IDHash: "flow-1", Workspace: "acme", ReturnTo: "/t/1", CreatedAt: now, ExpiresAt: now.Add(15 * time.Minute)}
	sess := storage.Session{IDHash: "sess-1", Workspace: "acme", ContactID: "c-1", Method: "code", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(12 * time.Hour), Idle: time.Hour}
	for what, err := range map[string]error{
		"PutContacts": s.PutContacts(ctx, "acme", []storage.Contact{jane}),
		"PutCode":     s.PutCode(ctx, "acme", "c-1", "flow-1", code),
		"PutFlow":     s.PutFlow(ctx, flow),
		"PutSession":  s.PutSession(ctx, sess),
		"PutOnce":     s.PutOnce(ctx, "link:1", []byte("v"), time.Hour),
		"Enqueue":     s.Enqueue(ctx, storage.OutboxMessage{ID: "m1", Kind: "code", Payload: []byte("p")}),
		"AppendAudit": s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "code_sent", ContactID: "c-1"}),
	} {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	if ok, _, err := s.Cooldown(ctx, "resend:flow-1", time.Minute); err != nil || !ok {
		t.Fatalf("Cooldown: %v %v", ok, err)
	}
	if ok, _, err := s.Hit(ctx, "send:jane", 1, time.Hour); err != nil || !ok {
		t.Fatalf("Hit: %v %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, badgerstore.Options{Now: clock.Now})
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	got, err := s.Secret(ctx, func() ([]byte, error) { return nil, errors.New("must not generate again") })
	if err != nil || !bytes.Equal(got, secret) {
		t.Errorf("Secret after reopen = %q, %v; want %q", got, err, secret)
	}
	if c, err := s.ContactByEmail(ctx, "acme", "JANE@acme.example"); err != nil || c.ID != "c-1" {
		t.Errorf("ContactByEmail after reopen = %+v, %v", c, err)
	}
	if c, err := s.ContactByDirectoryID(ctx, "acme", "entra-1"); err != nil || c.ID != "c-1" {
		t.Errorf("ContactByDirectoryID after reopen = %+v, %v", c, err)
	}
	if f, err := s.Flow(ctx, "flow-1"); err != nil || f.ReturnTo != "/t/1" {
		t.Errorf("Flow after reopen = %+v, %v", f, err)
	}
	if got, err := s.Session(ctx, "acme", "sess-1"); err != nil || got.ContactID != "c-1" {
		t.Errorf("Session after reopen = %+v, %v", got, err)
	}
	if list, err := s.Sessions(ctx, "acme", "c-1"); err != nil || len(list) != 1 {
		t.Errorf("Sessions after reopen = %+v, %v", list, err)
	}
	if v, err := s.TakeOnce(ctx, "link:1"); err != nil || string(v) != "v" {
		t.Errorf("TakeOnce after reopen = %q, %v", v, err)
	}
	if ok, _, err := s.Cooldown(ctx, "resend:flow-1", time.Minute); err != nil || ok {
		t.Errorf("Cooldown after reopen: ok=%v err=%v, want still cooling down", ok, err)
	}
	if ok, _, err := s.Hit(ctx, "send:jane", 1, time.Hour); err != nil || ok {
		t.Errorf("Hit after reopen: ok=%v err=%v, want the earlier hit counted", ok, err)
	}
	if n, err := s.OutboxLen(ctx); err != nil || n != 1 {
		t.Errorf("OutboxLen after reopen = %d, %v", n, err)
	}
	if ms, err := s.ClaimOutbox(ctx, time.Minute, 10); err != nil || len(ms) != 1 || string(ms[0].Payload) != "p" {
		t.Errorf("ClaimOutbox after reopen = %+v, %v", ms, err)
	}
	if es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme"}); err != nil || len(es) != 1 || es[0].Event != "code_sent" {
		t.Errorf("Audit after reopen = %+v, %v", es, err)
	}
	if r, err := s.RedeemCode(ctx, "acme", "c-1", "flow-1", []byte("code-hash"), 5); err != nil || r != storage.CodeAccepted {
		t.Errorf("RedeemCode after reopen = %v, %v", r, err)
	}
}

// TestAuditRetention checks that events older than the retention, by the
// store's clock, are neither kept nor returned.
func TestAuditRetention(t *testing.T) {
	ctx := t.Context()
	clock := storagetest.NewClock()
	s := open(t, t.TempDir(), badgerstore.Options{Now: clock.Now, AuditRetention: time.Hour})
	t.Cleanup(func() { _ = s.Close() })

	if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signin"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "ancient", Time: clock.Now().Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme"})
	if err != nil || len(es) != 1 || es[0].Event != "signin" {
		t.Fatalf("Audit = %+v, %v; want only the recent event", es, err)
	}
	clock.Advance(time.Hour + time.Minute)
	es, _, err = s.Audit(ctx, storage.AuditQuery{Workspace: "acme"})
	if err != nil || len(es) != 0 {
		t.Fatalf("Audit past retention = %+v, %v; want none", es, err)
	}
}

// TestOpenReleasesLeases: Badger has one process per directory, so what a
// crashed process had leased is claimable as soon as the database opens
// again, not after the lease.
func TestOpenReleasesLeases(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	clock := storagetest.NewClock()
	s := open(t, dir, badgerstore.Options{Now: clock.Now})
	for _, id := range []string{"m1", "m2"} {
		if err := s.Enqueue(ctx, storage.OutboxMessage{ID: id, Kind: "code", Payload: []byte(id)}); err != nil {
			t.Fatal(err)
		}
	}
	if ms, err := s.ClaimOutbox(ctx, 2*time.Minute, 1); err != nil || len(ms) != 1 {
		t.Fatalf("ClaimOutbox = %+v, %v", ms, err)
	}
	// The process dies mid-delivery: no ack, no retry.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, badgerstore.Options{Now: clock.Now})
	t.Cleanup(func() { _ = s.Close() })
	ms, err := s.ClaimOutbox(ctx, 2*time.Minute, 10)
	if err != nil || len(ms) != 2 {
		t.Fatalf("ClaimOutbox after reopen = %+v, %v; want both messages at once", ms, err)
	}
	if n := ms[0].Attempts + ms[1].Attempts; n != 3 {
		t.Errorf("attempts after reopen = %d and %d, want the crashed claim counted (1 and 2)", ms[0].Attempts, ms[1].Attempts)
	}
}

// TestImportScale measures large imports, outside CI:
// PORTALGATE_IMPORT_CONTACTS=100000 go test -run ImportScale -v ./storage/badgerstore/
func TestImportScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PORTALGATE_IMPORT_CONTACTS"))
	if n <= 0 {
		t.Skip("set PORTALGATE_IMPORT_CONTACTS to the number of contacts")
	}
	s := open(t, t.TempDir(), badgerstore.Options{})
	t.Cleanup(func() { _ = s.Close() })
	storagetest.MeasureImport(t, s, "acme", n)
}

// TestCompression checks the compression option: zstd tables take a
// fraction of the space of uncompressed ones for the same records, and
// a database written compressed opens and reads back without it (and
// the other way round). An unknown name is refused at open.
func TestCompression(t *testing.T) {
	ctx := t.Context()
	const n = 4000
	write := func(t *testing.T, dir, c string) {
		s := open(t, dir, badgerstore.Options{Compression: c})
		var cs []storage.Contact
		for i := range n {
			cs = append(cs, storage.Contact{ID: "c-" + strconv.Itoa(i), Email: "user" + strconv.Itoa(i) + "@acme.example", Name: "User " + strconv.Itoa(i), Status: "active", Source: "manual"})
		}
		if err := s.PutContacts(ctx, "acme", cs); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		for i := range n {
			if err := s.PutSession(ctx, storage.Session{IDHash: fmt.Sprintf("%064x", i), Workspace: "acme", ContactID: "c-" + strconv.Itoa(i), Method: "code",
				CSRF: fmt.Sprintf("%043d", i), UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	readBack := func(t *testing.T, dir, c string) {
		s := open(t, dir, badgerstore.Options{Compression: c})
		defer s.Close()
		for _, i := range []int{0, n / 2, n - 1} {
			if _, err := s.ContactByEmail(ctx, "acme", "user"+strconv.Itoa(i)+"@acme.example"); err != nil {
				t.Fatalf("contact %d: %v", i, err)
			}
			if _, err := s.Session(ctx, "acme", fmt.Sprintf("%064x", i)); err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		}
	}
	tables := func(dir string) (sum int64) {
		ms, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		for _, m := range ms {
			if st, err := os.Stat(m); err == nil {
				sum += st.Size()
			}
		}
		return sum
	}
	plain, zstd, def := t.TempDir(), t.TempDir(), t.TempDir()
	write(t, plain, "none")
	write(t, zstd, "zstd")
	write(t, def, "")
	p, z, d := tables(plain), tables(zstd), tables(def)
	t.Logf("tables: %d bytes uncompressed, %d with zstd, %d by default", p, z, d)
	if p == 0 || z*2 > p {
		t.Fatalf("tables: %d bytes uncompressed, %d with zstd; want zstd under half", p, z)
	}
	if d*2 > p {
		t.Fatalf("tables: %d bytes by default, %d uncompressed; want the default (zstd) under half", d, p)
	}
	readBack(t, zstd, "none")
	readBack(t, plain, "snappy")
	if _, err := badgerstore.Open(t.TempDir(), badgerstore.Options{Compression: "gzip"}); err == nil || !strings.Contains(err.Error(), `compression "gzip"`) {
		t.Fatalf("Open with compression gzip: %v, want an error naming it", err)
	}
}
