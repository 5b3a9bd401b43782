package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// TestAuditScale writes PORTALGATE_AUDIT_EVENTS events over 100 times
// fewer contacts, spread over 60 days, then measures Redis's memory per
// event, the newest 50 events of one contact, and what the retention's
// deletion costs: with the clock moved on 60 days, the older half is past
// the 90-day retention, and the round trips of a gate under load (the
// rate-limit counter script every sign-in page runs) are timed while
// nothing happens, while one ZREMRANGEBYSCORE drops a copy of the expired
// half at once (what the store did before), and while appends trim it
// 32 events at a time until it is gone, against as many appends that
// have nothing to trim.
//
//	PORTALGATE_AUDIT_EVENTS=1000000 go test -run AuditScale -v -timeout 1h ./storage/redisstore/
func TestAuditScale(t *testing.T) {
	n := storagetest.AuditScaleEvents(t)
	srv := startRedis(t, false)
	ctx := t.Context()
	clock := storagetest.NewClock()
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{Now: clock.Now, KeyPrefix: prefix, CallTimeout: time.Minute})
	contacts := storagetest.AuditScaleContacts(n)
	before := usedMemory(t, srv)

	t0 := time.Now()
	storagetest.FillAudit(t, func(es []storage.AuditEvent) error { return s.ImportAudit(ctx, es) },
		0, n, n, clock.Now().Add(-60*24*time.Hour), 60*24*time.Hour)
	fill := time.Since(t0)
	used := usedMemory(t, srv) - before
	trail := prefix + "audit:acme"
	t.Logf("wrote %d events of %d contacts in %v (%.0f events/s); used_memory +%.0f MB: %.0f bytes per event (trail %.0f, contact indexes %.0f)",
		n, contacts, fill.Round(time.Millisecond), float64(n)/fill.Seconds(), float64(used)/(1<<20), float64(used)/float64(n),
		float64(memoryUsage(t, srv, trail))/float64(n), float64(memoryUsage(t, srv, trail+":c:c-0000000"))/float64(n/contacts))

	newest := func(when string, want int) {
		var l storagetest.Latencies
		for range 200 {
			c := fmt.Sprintf("c-%07d", rand.IntN(contacts))
			t1 := time.Now()
			es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: c, Limit: 50})
			l = append(l, time.Since(t1))
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != want || es[0].ContactID != c {
				t.Fatalf("newest 50 of %s: %d events, want %d of the contact", c, len(es), want)
			}
		}
		t.Logf("newest 50 events of one contact (%s, 200 random contacts): %v", when, l)
		if p := l.Pct(0.99); p > 20*time.Millisecond {
			t.Errorf("newest 50 events of one contact: p99 %v, want < 20 ms", p)
		}
	}
	newest("all events live", min(50, n/contacts))

	gate := func(ctx context.Context) storagetest.Latencies {
		return storagetest.Load(t, ctx, 4, func(w, _ int) error {
			_, _, err := s.Count(ctx, "probe:"+strconv.Itoa(w), time.Minute)
			if ctx.Err() != nil {
				return nil
			}
			return err
		})
	}
	clock.Advance(60 * 24 * time.Hour)
	oldest := clock.Now().Add(-90 * 24 * time.Hour) // the default retention
	expired, err := command(srv.addr(), "ZCOUNT", trail, "(0", "("+strconv.FormatInt(oldest.UnixMicro(), 10))
	if err != nil {
		t.Fatal(err)
	}
	quiet, cancel := context.WithTimeout(ctx, 5*time.Second)
	t.Logf("gate round trips, %s events past the retention, nothing else running: %v", expired, gate(quiet))
	cancel()

	// The old way, on a copy: one command for the whole expired half.
	if _, err := commandWithin(5*time.Minute, srv.addr(), "COPY", trail, trail+":copy"); err != nil {
		t.Fatal(err)
	}
	loaded, stop := context.WithCancel(ctx)
	done := make(chan storagetest.Latencies)
	go func() { done <- gate(loaded) }()
	time.Sleep(time.Second)
	t1 := time.Now()
	if _, err := commandWithin(5*time.Minute, srv.addr(), "ZREMRANGEBYSCORE", trail+":copy", "-inf", "("+strconv.FormatInt(oldest.UnixMicro(), 10)); err != nil {
		t.Fatal(err)
	}
	once := time.Since(t1)
	time.Sleep(time.Second)
	stop()
	t.Logf("gate round trips while one ZREMRANGEBYSCORE drops the expired half of a copy (%v): %v", once.Round(time.Millisecond), <-done)
	if _, err := commandWithin(5*time.Minute, srv.addr(), "UNLINK", trail+":copy"); err != nil {
		t.Fatal(err)
	}

	// The store's way: each append trims 32. Seconds of appends (at
	// appendRate, a sign-in rush's worth of events) to the
	// trail alternate with seconds of as many appends to another
	// workspace's trail, which has nothing to trim: the same load without
	// the deletion, and the machine's drift (other jobs on the same cores)
	// weighs on both alike.
	var plainL, trimL storagetest.Latencies
	t1 = time.Now()
	var trimming time.Duration
	appends := 0
	left := expired
	appendFor := func(ws string, d time.Duration) storagetest.Latencies {
		loaded, stop := context.WithTimeout(ctx, d)
		defer stop()
		go func() { done <- gate(loaded) }()
		pace := time.NewTicker(time.Second / appendRate)
		defer pace.Stop()
		for i := 0; loaded.Err() == nil && left != "0"; i++ {
			<-pace.C
			if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: ws, Event: "signin", ContactID: "c-live"}); err != nil {
				t.Fatal(err)
			}
			if ws == "acme" {
				if appends++; appends%100 == 0 {
					var err error
					if left, err = command(srv.addr(), "ZCOUNT", trail, "(0", "("+strconv.FormatInt(oldest.UnixMicro(), 10)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		stop()
		return <-done
	}
	var plainBusy, trimBusy time.Duration
	plainAppends := 0
	for left != "0" {
		u0, a0 := redisBusy(t, srv), appends
		plainL = append(plainL, appendFor("other", time.Second)...)
		u1 := redisBusy(t, srv)
		plainBusy += u1 - u0
		t2 := time.Now()
		trimL = append(trimL, appendFor("acme", time.Second)...)
		trimming += time.Since(t2)
		trimBusy += redisBusy(t, srv) - u1
		plainAppends += appends - a0 // as many, at the same pace
	}
	t.Logf("%d appends (paced at most %d a second; %.0f a second reached) trimmed the expired half 32 at a time in %v of appending (%.0f events deleted/s; %v with the seconds of appends elsewhere between)",
		appends, appendRate, float64(appends)/trimming.Seconds(), trimming.Round(time.Millisecond), mustFloat(t, expired)/trimming.Seconds(), time.Since(t1).Round(time.Millisecond))
	t.Logf("gate round trips while appends go to a trail with nothing to trim: %v; Redis CPU %v per second", plainL, (plainBusy / time.Duration(max(1, trimming/time.Second))).Round(time.Millisecond))
	t.Logf("gate round trips while appends trim the expired half:            %v; Redis CPU %v per second (%.0f µs more per append)", trimL,
		(trimBusy / time.Duration(max(1, trimming/time.Second))).Round(time.Millisecond), float64((trimBusy-plainBusy).Microseconds())/float64(max(1, plainAppends)))
	if left := memoryUsage(t, srv, trail+":c:c-0000000"); left == 0 {
		t.Error("a contact's index vanished with its expired events; its newer half should stay")
	}
	t.Logf("used_memory after the retention: +%.0f MB", float64(usedMemory(t, srv)-before)/(1<<20))
	newest("older half expired", min(50, n/contacts/2))
}

// redisBusy is the CPU time Redis has used so far (INFO cpu: its main
// thread and any other, user and system).
func redisBusy(t *testing.T, srv *redisServer) time.Duration {
	t.Helper()
	info, err := command(srv.addr(), "INFO", "cpu")
	if err != nil {
		t.Fatal(err)
	}
	var sec float64
	for _, line := range strings.Split(info, "\n") {
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
				x, _ := strconv.ParseFloat(v, 64)
				sec += x
			}
		}
	}
	return time.Duration(sec * float64(time.Second))
}

// appendRate is the pace of the appends that trim: about 250 full
// sign-ins a second, each recording a few events.
const appendRate = 1000

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
