package redisstore_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
)

// TestLateScriptsTakeNoEffect: a script that Redis gets to only after its
// caller gave up does nothing. Redis is frozen (SIGSTOP) while a request
// counts a counter; the caller is told "unavailable" at its deadline, and
// when Redis resumes and runs the script, the script refuses: the counter
// was never counted. Without the guard it would be (a code request
// answered 503 would still send its code). The clocks' offset is measured,
// and a store that believes Redis's clock far behind its own is refused
// every script rather than served late.
func TestLateScriptsTakeNoEffect(t *testing.T) {
	srv := startRedis(t, false)
	s := open(t, srv, redisstore.Options{CallTimeout: 300 * time.Millisecond})
	ctx := t.Context()
	hit := storage.Hit{Key: "late/1", Limit: 10, Window: time.Hour}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.HitAll(ctx, storage.Hit{Key: "warm", Limit: 10, Window: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if d, ok := s.ClockOffset(); ok {
			if d < -100*time.Millisecond || d > 100*time.Millisecond {
				t.Fatalf("clock offset to a Redis on this machine: %s", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the clocks' offset was never measured")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := s.PutOnce(ctx, "late/state", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	flow := storage.SignInFlow{IDHash: hash(), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = srv.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	if _, err := s.HitAll(ctx, hit); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("HitAll with Redis frozen: %v, want storage.ErrUnavailable", err)
	}
	// Single commands too: a flow stored, a one-time value taken.
	if err := s.PutFlow(ctx, flow); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("PutFlow with Redis frozen: %v, want storage.ErrUnavailable", err)
	}
	if _, err := s.TakeOnce(ctx, "late/state"); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("TakeOnce with Redis frozen: %v, want storage.ErrUnavailable", err)
	}
	// Past the deadlines and their slack, Redis resumes and runs the calls.
	time.Sleep(time.Second)
	resume()
	var n int
	var err error
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, _, err = s.Count(ctx, hit.Key, hit.Window); err == nil || time.Now().After(end) {
			break
		}
	}
	if err != nil || n != 1 {
		t.Fatalf("the counter after the late call and this count: %d %v, want 1 (the late call refused)", n, err)
	}
	if _, err := s.Flow(ctx, flow.IDHash); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the flow stored late: %v, want storage.ErrNotFound", err)
	}
	if v, err := s.TakeOnce(ctx, "late/state"); err != nil || string(v) != "v" {
		t.Fatalf("the one-time value after a late take: %q %v, want it still there", v, err)
	}

	s.SetClockOffset(-time.Hour)
	if _, err := s.HitAll(ctx, hit); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("HitAll with Redis's clock believed an hour behind: %v, want storage.ErrUnavailable", err)
	}
	// The refusal makes the store measure the clocks again, and serve.
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if d, _ := s.ClockOffset(); d > -time.Minute {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the clocks' offset was not measured again after a refusal")
		}
		_, _, _ = s.Count(ctx, "warm", time.Hour)
	}
	if n, _, err := s.Count(ctx, hit.Key, hit.Window); err != nil || n != 2 {
		t.Fatalf("the counter after the refused call and this count: %d %v, want 2", n, err)
	}
}

// TestClockMeasuredAgainAfterAFailure: a measure of the clocks that fails
// (Redis frozen while TIME waits) is tried again a second later, not at
// the next 30 s: until then every script runs unguarded.
func TestClockMeasuredAgainAfterAFailure(t *testing.T) {
	srv := startRedis(t, false)
	s := open(t, srv, redisstore.Options{CallTimeout: 300 * time.Millisecond})
	ctx := t.Context()
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The first call starts the first measure; both wait in Redis.
	_, _ = s.HitAll(ctx, storage.Hit{Key: "first", Limit: 10, Window: time.Hour})
	time.Sleep(400 * time.Millisecond)
	if err := srv.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ClockOffset(); ok {
		t.Fatal("the clocks' offset was known from a measure Redis never answered in time")
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, ok := s.ClockOffset(); ok {
			return
		}
		if time.Now().After(end) {
			t.Fatal("the clocks' offset was not measured again within 5 s of a failed measure")
		}
		_, _ = s.HitAll(ctx, storage.Hit{Key: "again", Limit: 1000, Window: time.Hour})
	}
}
