package redisstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
	"github.com/kdesk/portalgate/storage/storagetest"
)

// ---------------------------------------------------------------- a real redis-server

// redisServer is a redis-server the test runs on a free loopback port,
// without persistence.
type redisServer struct {
	t       *testing.T
	bin     string
	dir     string
	port    int
	cluster bool

	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts redis-server, or skips the test when it is not
// installed, except in CI (CI set), where that is a failure. cluster makes
// it a one-node Redis Cluster holding every slot.
func startRedis(t *testing.T, cluster bool) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("redis-server is not on PATH (apt-get install redis-server); skipped outside CI")
		}
		t.Fatal("redis-server is not on PATH; CI must install it (apt-get install redis-server)")
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), cluster: cluster}
	for attempt := 1; ; attempt++ {
		s.port = freePort(t)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 5 {
			t.Fatal(err)
		}
	}
	t.Cleanup(s.stop)
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// start runs redis-server on s.port and waits until it answers PING (and,
// for a cluster, reports cluster_state:ok).
func (s *redisServer) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
	}
	if s.cluster {
		args = append(args, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, fmt.Sprintf("nodes-%d.conf", s.port)))
	}
	logPath := filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.port))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("redis-server on port %d exited:\n%s", s.port, out)
		default:
		}
		if reply, err := command(s.addr(), "PING"); err == nil && reply == "PONG" {
			break
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("redis-server on port %d did not answer PING", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !s.cluster {
		return nil
	}
	if _, err := command(s.addr(), "CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil {
		return err
	}
	for {
		info, err := command(s.addr(), "CLUSTER", "INFO")
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("one-node cluster on port %d did not get ready: %q %v", s.port, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills redis-server and waits for it to exit.
func (s *redisServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// command sends one command and returns a simple, integer or bulk reply.
func command(addr string, args ...string) (string, error) {
	return commandWithin(5*time.Second, addr, args...)
}

// commandWithin is command for a command that may take up to d.
func commandWithin(d time.Duration, addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(d))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

// getCalls is how many GET commands Redis has executed.
func getCalls(t *testing.T, srv *redisServer) int {
	t.Helper()
	info, err := command(srv.addr(), "INFO", "commandstats")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_get:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

var prefixes atomic.Int64

// uniquePrefix keeps the stores of different tests on one server apart.
func uniquePrefix() string { return fmt.Sprintf("test%d:", prefixes.Add(1)) }

// open opens a store on srv and closes it when the test ends.
func open(t *testing.T, srv *redisServer, o redisstore.Options) *redisstore.Store {
	t.Helper()
	o.Address = []string{srv.addr()}
	if o.KeyPrefix == "" {
		o.KeyPrefix = uniquePrefix()
	}
	s, err := redisstore.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// eventually polls cond every millisecond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// ---------------------------------------------------------------- conformance

func TestConformance(t *testing.T) {
	srv := startRedis(t, false)
	storagetest.Run(t, func(t *testing.T, now func() time.Time) storage.Store {
		return open(t, srv, redisstore.Options{Now: now})
	})
}

// TestConformanceCluster runs the suite against a one-node Redis Cluster:
// rueidis then refuses any command or script whose keys span hash slots,
// so this checks that the key layout works on a real cluster.
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	srv := startRedis(t, true)
	storagetest.Run(t, func(t *testing.T, now func() time.Time) storage.Store {
		return open(t, srv, redisstore.Options{Now: now})
	})
}

func TestAuditRetention(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	clock := storagetest.NewClock()
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{Now: clock.Now, AuditRetention: time.Hour, KeyPrefix: prefix})

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
	// The next append trims what the retention dropped.
	if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signout"}); err != nil {
		t.Fatal(err)
	}
	n, err := command(srv.addr(), "ZCARD", prefix+"audit:acme")
	if err != nil || n != "2" {
		t.Fatalf("audit set after trimming holds %s members (%v), want 2: the event and the index marker", n, err)
	}
}

// TestAuditTrimIsBounded: after a quiet spell, each append removes a
// bounded number of expired events, from the trail and from the contacts'
// indexes, until none is left; reads skip them all along.
func TestAuditTrimIsBounded(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	clock := storagetest.NewClock()
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{Now: clock.Now, AuditRetention: time.Hour, KeyPrefix: prefix})
	var old []storage.AuditEvent
	for i := range 300 {
		old = append(old, storage.AuditEvent{Workspace: "acme", Event: "signin", ContactID: fmt.Sprintf("c-%d", i%3),
			Time: clock.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	if err := s.ImportAudit(ctx, old); err != nil {
		t.Fatal(err)
	}
	if es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: "c-1", Limit: 1000}); err != nil || len(es) != 100 {
		t.Fatalf("c-1's events = %d, %v; want 100", len(es), err)
	}
	clock.Advance(2 * time.Hour)
	card := func(key string) string {
		n, err := command(srv.addr(), "ZCARD", prefix+key)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i, want := range []string{"270", "239", "208", "177"} { // 300 expired + the marker + those appended, 32 expired removed at a time
		if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signout", ContactID: "c-9"}); err != nil {
			t.Fatal(err)
		}
		if got := card("audit:acme"); got != want {
			t.Fatalf("after append %d the trail holds %s members, want %s", i+1, got, want)
		}
		if es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: "c-1"}); err != nil || len(es) != 0 {
			t.Fatalf("c-1's events past the retention = %d, %v; want none", len(es), err)
		}
	}
	for range 6 { // the remaining 172
		if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signout", ContactID: "c-9"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := card("audit:acme"); got != "11" {
		t.Errorf("after 10 appends the trail holds %s members, want 11: the marker and the appended", got)
	}
	for _, c := range []string{"c-0", "c-1", "c-2"} {
		if got := card("audit:acme:c:" + c); got != "0" {
			t.Errorf("%s's index holds %s events past the retention, want 0", c, got)
		}
	}
}

// TestAuditLegacyTrail: a trail written before the contact indexes keeps
// answering queries for a contact, its older events from the trail and
// newer ones from the index.
func TestAuditLegacyTrail(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	clock := storagetest.NewClock()
	prefix := uniquePrefix()
	s := open(t, srv, redisstore.Options{Now: clock.Now, KeyPrefix: prefix})
	// As an older version wrote them: in the trail only.
	for i, c := range []string{"c-1", "c-2", "c-1"} {
		at := clock.Now().Add(time.Duration(i-10) * time.Minute).UTC()
		e := storage.AuditEvent{ID: storage.SortableID(at), Time: at, Workspace: "acme", Event: "signin", ContactID: c, Reason: fmt.Sprintf("old%d", i)}
		doc, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := command(srv.addr(), "ZADD", prefix+"audit:acme", strconv.FormatInt(at.UnixMicro(), 10), e.ID+string(doc)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"new0", "new1"} {
		clock.Advance(time.Second)
		if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signin", ContactID: "c-1", Reason: r}); err != nil {
			t.Fatal(err)
		}
	}
	reasons := func(q storage.AuditQuery) string {
		es, next, err := s.Audit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var rs []string
		for _, e := range es {
			rs = append(rs, e.Reason)
		}
		return fmt.Sprint(rs) + " next=" + fmt.Sprint(next != "")
	}
	if got := reasons(storage.AuditQuery{Workspace: "acme", ContactID: "c-1"}); got != "[new1 new0 old2 old0] next=false" {
		t.Errorf("c-1's events = %s", got)
	}
	// Paged one at a time across the two.
	var all []string
	q := storage.AuditQuery{Workspace: "acme", ContactID: "c-1", Limit: 1}
	for range 10 {
		es, next, err := s.Audit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			all = append(all, e.Reason)
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	if fmt.Sprint(all) != "[new1 new0 old2 old0]" {
		t.Errorf("c-1's events page by page = %v", all)
	}
	if got := reasons(storage.AuditQuery{Workspace: "acme", ContactID: "c-1", Until: clock.Now().Add(-time.Minute)}); got != "[old2 old0] next=false" {
		t.Errorf("c-1's events until a minute ago = %s", got)
	}
}

// TestAuditPagingManyAtOneInstant pages through more events of a single
// microsecond than one read fetches.
func TestAuditPagingManyAtOneInstant(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	clock := storagetest.NewClock()
	s := open(t, srv, redisstore.Options{Now: clock.Now})
	const n = 150
	for i := range n {
		if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "signin", Reason: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	q := storage.AuditQuery{Workspace: "acme", Limit: 7}
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("paging does not end")
		}
		es, next, err := s.Audit(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if seen[e.ID] {
				t.Fatalf("event %s on two pages", e.ID)
			}
			seen[e.ID] = true
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}
	if len(seen) != n {
		t.Fatalf("paged %d events, want %d", len(seen), n)
	}
	es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", Limit: 1000, Event: "signin"})
	if err != nil || len(es) != n {
		t.Fatalf("one page of all: %d events, %v", len(es), err)
	}
}

// ---------------------------------------------------------------- several instances

// TestTwoInstances checks two stores (two Caddy instances) on one Redis:
// each sees the other's writes, reads of sessions and contacts are served
// locally, and a change through one is refused by the other at once.
func TestTwoInstances(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	prefix := uniquePrefix()
	a := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	b := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	now := time.Now()

	jane := storage.Contact{ID: "c-1", Email: "jane@acme.example", Name: "Jane"}
	if err := jane.Normalize(); err != nil {
		t.Fatal(err)
	}
	if err := a.PutContacts(ctx, "acme", []storage.Contact{jane}); err != nil {
		t.Fatal(err)
	}
	if c, err := b.ContactByEmail(ctx, "acme", "Jane@acme.example"); err != nil || c.ID != "c-1" {
		t.Fatalf("b.ContactByEmail after a wrote it = %+v, %v", c, err)
	}
	sess := storage.Session{IDHash: "sess-1", Workspace: "acme", ContactID: "c-1", Method: "code",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(12 * time.Hour), Idle: time.Hour}
	if err := a.PutSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	other := sess
	other.IDHash = "sess-2"
	if err := b.PutSession(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*redisstore.Store{a, b} {
		if list, err := s.Sessions(ctx, "acme", "c-1"); err != nil || len(list) != 2 {
			t.Fatalf("Sessions = %+v, %v; want both instances' sessions", list, err)
		}
	}

	// The hot path: after the first read, no GET reaches Redis.
	if _, err := b.Session(ctx, "acme", "sess-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Contact(ctx, "acme", "c-1"); err != nil {
		t.Fatal(err)
	}
	before := getCalls(t, srv)
	for range 100 {
		if _, err := b.Session(ctx, "acme", "sess-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Contact(ctx, "acme", "c-1"); err != nil {
			t.Fatal(err)
		}
	}
	if calls := getCalls(t, srv) - before; calls > 0 {
		t.Errorf("200 cached Session and Contact reads made %d GETs, want 0", calls)
	}

	// Revoked through a: refused by b. Redis pushes the invalidation to b
	// before it answers a, but b reads it on its own goroutine, so allow
	// it the time to be scheduled.
	if err := a.DeleteSession(ctx, "acme", "sess-1"); err != nil {
		t.Fatal(err)
	}
	if !eventually(500*time.Millisecond, func() bool {
		_, err := b.Session(ctx, "acme", "sess-1")
		return errors.Is(err, storage.ErrNotFound)
	}) {
		t.Fatal("b still accepts a session a deleted")
	}
	if _, err := b.Session(ctx, "acme", "sess-2"); err != nil {
		t.Fatalf("the other session: %v", err)
	}

	// Disabled through a: b sees it.
	jane.Status = storage.StatusDisabled
	if err := a.PutContacts(ctx, "acme", []storage.Contact{jane}); err != nil {
		t.Fatal(err)
	}
	if !eventually(500*time.Millisecond, func() bool {
		c, err := b.Contact(ctx, "acme", "c-1")
		return err == nil && !c.Active()
	}) {
		t.Fatal("b still sees the contact a disabled as active")
	}
	// Disabling ended the contact's sessions, which b had cached.
	if !eventually(500*time.Millisecond, func() bool {
		_, err := b.Session(ctx, "acme", "sess-2")
		return errors.Is(err, storage.ErrNotFound)
	}) {
		t.Fatal("b still accepts a session of the contact a disabled")
	}

	// Revoking every session of the contact through b reaches a.
	jane.Status = storage.StatusActive
	if err := a.PutContacts(ctx, "acme", []storage.Contact{jane}); err != nil {
		t.Fatal(err)
	}
	third := sess
	third.IDHash = "sess-3"
	if err := a.PutSession(ctx, third); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Session(ctx, "acme", "sess-3"); err != nil {
		t.Fatal(err)
	}
	if n, err := b.DeleteContactSessions(ctx, "acme", "c-1"); err != nil || n != 1 {
		t.Fatalf("DeleteContactSessions = %d, %v; want 1", n, err)
	}
	if !eventually(500*time.Millisecond, func() bool {
		_, err := a.Session(ctx, "acme", "sess-3")
		return errors.Is(err, storage.ErrNotFound)
	}) {
		t.Fatal("a still accepts a session b revoked")
	}
}

// TestInvalidationReachesOtherInstanceAtOnce measures how often the very
// next read on the other instance still sees a revoked session. The
// invalidation is on the wire before the revoking call returns; this only
// guards against regressions that would make the window long: the
// window is the time b's reader goroutine takes to be scheduled.
func TestInvalidationReachesOtherInstanceAtOnce(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	prefix := uniquePrefix()
	a := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	b := open(t, srv, redisstore.Options{KeyPrefix: prefix})
	now := time.Now()
	const rounds = 200
	stale := 0
	for i := range rounds {
		sess := storage.Session{IDHash: fmt.Sprintf("s-%d", i), Workspace: "acme", ContactID: "c-1",
			CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
		if err := a.PutSession(ctx, sess); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Session(ctx, "acme", sess.IDHash); err != nil { // cached in b
			t.Fatal(err)
		}
		if err := a.DeleteSession(ctx, "acme", sess.IDHash); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Session(ctx, "acme", sess.IDHash); err == nil {
			stale++
		}
		if !eventually(500*time.Millisecond, func() bool {
			_, err := b.Session(ctx, "acme", sess.IDHash)
			return errors.Is(err, storage.ErrNotFound)
		}) {
			t.Fatalf("round %d: b accepts the deleted session for more than 500ms", i)
		}
	}
	t.Logf("%d of %d next reads on the other instance still saw the deleted session", stale, rounds)
	if stale > rounds/2 {
		t.Fatalf("%d of %d next reads on the other instance saw a deleted session", stale, rounds)
	}
}

// TestTwoInstancesRedeemOnce races 2 instances × 10 goroutines on one code.
func TestTwoInstancesRedeemOnce(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	prefix := uniquePrefix()
	stores := []*redisstore.Store{
		open(t, srv, redisstore.Options{KeyPrefix: prefix}),
		open(t, srv, redisstore.Options{KeyPrefix: prefix}),
	}
	for round := range 5 {
		now := time.Now()
		hash := []byte(fmt.Sprintf("code-hash-%d", round))
		if err := stores[0].PutCode(ctx, "acme", "c-1", "flow-1", storage.Code{Hash: hash, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		var accepted, missing atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range stores {
			for range 10 {
				wg.Go(func() {
					<-start
					r, err := s.RedeemCode(ctx, "acme", "c-1", "flow-1", hash, 5)
					switch {
					case err != nil:
						t.Errorf("RedeemCode: %v", err)
					case r == storage.CodeAccepted:
						accepted.Add(1)
					case r == storage.CodeMissing:
						missing.Add(1)
					default:
						t.Errorf("RedeemCode = %v", r)
					}
				})
			}
		}
		close(start)
		wg.Wait()
		if accepted.Load() != 1 || missing.Load() != 19 {
			t.Fatalf("round %d: %d accepted, %d missing; want exactly 1 and 19", round, accepted.Load(), missing.Load())
		}
	}
}

// ---------------------------------------------------------------- outages

func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.InfoLevel)
	return zap.New(core), logs
}

// TestCanceledCallIsNoOutage: a call whose caller has gone away fails
// closed, and logs no outage: a browser closing mid-request, or Caddy
// stopping, is not Redis failing.
func TestCanceledCallIsNoOutage(t *testing.T) {
	srv := startRedis(t, false)
	logger, logs := observed()
	s := open(t, srv, redisstore.Options{Logger: logger})
	if _, err := s.Flow(t.Context(), "f"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Flow: %v, want storage.ErrNotFound", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for range 3 {
		if _, err := s.Flow(ctx, "f"); !errors.Is(err, storage.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Flow with its context canceled: err = %v, want storage.ErrUnavailable and context.Canceled", err)
		}
	}
	if _, err := s.Flow(t.Context(), "f"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Flow after: %v, want storage.ErrNotFound", err)
	}
	if n := logs.FilterMessageSnippet("unavailable").Len() + logs.FilterMessageSnippet("available again").Len(); n != 0 {
		t.Errorf("%d outage lines logged for canceled calls, want none: %v", n, logs.All())
	}
}

// TestOutage stops Redis under a working store: calls fail with
// storage.ErrUnavailable, the outage is logged once, and the same store
// works again once Redis is back on the same port.
func TestOutage(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	logger, logs := observed()
	s := open(t, srv, redisstore.Options{Logger: logger})
	now := time.Now()
	sess := storage.Session{IDHash: "sess-1", Workspace: "acme", ContactID: "c-1",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.PutSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the own-write window: Session reads through the cache
	if _, err := s.Session(ctx, "acme", "sess-1"); err != nil {
		t.Fatal(err)
	}

	srv.stop()
	// rueidis drops its cache when it sees the connection close, on its
	// own goroutine: from then on nothing is served from memory.
	if !eventually(time.Second, func() bool {
		_, err := s.Session(ctx, "acme", "sess-1")
		return errors.Is(err, storage.ErrUnavailable)
	}) {
		t.Fatal("Session still answers from the cache a second after Redis stopped")
	}
	calls := map[string]func() error{
		"Session": func() error { _, err := s.Session(ctx, "acme", "sess-1"); return err },
		"Contact": func() error { _, err := s.Contact(ctx, "acme", "c-1"); return err },
		"RedeemCode": func() error {
			_, err := s.RedeemCode(ctx, "acme", "c-1", "flow-1", []byte("h"), 5)
			return err
		},
		"Enqueue": func() error { return s.Enqueue(ctx, storage.OutboxMessage{Kind: "code"}) },
		"Audit":   func() error { _, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme"}); return err },
		"Hit":     func() error { _, _, err := s.Hit(ctx, "k", 1, time.Minute); return err },
	}
	for range 5 {
		for name, call := range calls {
			if err := call(); !errors.Is(err, storage.ErrUnavailable) {
				t.Fatalf("%s with Redis stopped: err = %v, want storage.ErrUnavailable", name, err)
			}
		}
	}
	if n := logs.FilterMessageSnippet("unavailable").Len(); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}

	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return s.PutSession(ctx, sess) == nil }) {
		t.Fatal("the store did not recover after Redis came back")
	}
	if got, err := s.Session(ctx, "acme", "sess-1"); err != nil || got.ContactID != "c-1" {
		t.Fatalf("Session after recovery = %+v, %v", got, err)
	}
	if n := logs.FilterMessageSnippet("available again").Len(); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
}

// TestOpenWhileRedisDown opens a store before Redis runs: Open succeeds,
// calls fail with storage.ErrUnavailable, and the store connects by itself
// once Redis is up.
func TestOpenWhileRedisDown(t *testing.T) {
	srv := startRedis(t, false)
	srv.stop()
	ctx := t.Context()
	logger, logs := observed()
	s := open(t, srv, redisstore.Options{Logger: logger})
	for range 10 {
		if _, err := s.Flow(ctx, "f"); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("Flow with Redis down: err = %v, want storage.ErrUnavailable", err)
		}
	}
	if n := logs.FilterMessageSnippet("unavailable").Len(); n != 1 {
		t.Errorf("outage logged %d times, want once", n)
	}
	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool {
		_, err := s.Flow(ctx, "f")
		return errors.Is(err, storage.ErrNotFound)
	}) {
		t.Fatal("the store did not connect once Redis was up")
	}
	if _, err := s.Secret(ctx, func() ([]byte, error) { return []byte("0123456789abcdef0123456789abcdef"), nil }); err != nil {
		t.Fatal(err)
	}
}

// TestLostConnectionForgetsCachedRecords: while an instance's connection is
// down, Redis cannot tell it what changed, so everything it had cached is
// dropped; a session revoked meanwhile is refused once it is back.
func TestLostConnectionForgetsCachedRecords(t *testing.T) {
	srv := startRedis(t, false)
	ctx := t.Context()
	prefix := uniquePrefix()
	a := open(t, srv, redisstore.Options{KeyPrefix: prefix, CacheTTL: time.Hour})
	b := open(t, srv, redisstore.Options{KeyPrefix: prefix, CacheTTL: time.Hour})
	now := time.Now()
	sess := storage.Session{IDHash: "s-lost", Workspace: "acme", ContactID: "c-1",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
	if err := a.PutSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Session(ctx, "acme", sess.IDHash); err != nil { // cached in b
		t.Fatal(err)
	}
	// Every client connection is cut, then the session is deleted behind
	// b's back with a raw command: no invalidation can reach b for it.
	if _, err := command(srv.addr(), "CLIENT", "KILL", "TYPE", "normal"); err != nil {
		t.Fatal(err)
	}
	if _, err := command(srv.addr(), "DEL", prefix+"{ws:acme}:sess:"+sess.IDHash); err != nil {
		t.Fatal(err)
	}
	if !eventually(2*time.Second, func() bool {
		_, err := b.Session(ctx, "acme", sess.IDHash)
		return errors.Is(err, storage.ErrNotFound)
	}) {
		t.Fatal("after a lost connection, b still serves a session deleted meanwhile")
	}
}

// TestImportScale measures large imports and the memory a contact takes,
// outside CI: PORTALGATE_IMPORT_CONTACTS=100000 go test -run ImportScale -v ./storage/redisstore/
func memoryUsage(t *testing.T, srv *redisServer, key string) int {
	t.Helper()
	v, err := command(srv.addr(), "MEMORY", "USAGE", key, "SAMPLES", "0")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(v)
	return n
}

func usedMemory(t *testing.T, srv *redisServer) int {
	t.Helper()
	info, err := command(srv.addr(), "INFO", "memory")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(rest))
			return n
		}
	}
	return 0
}

// TestCallsBeyondThePool: more calls at once than the pool has
// connections all succeed, the rest waiting for a connection, and the
// instance never holds more than the pool's bound (64) and its shared
// connection open. Redis is kept busy (a script that spins for half a
// second) while the calls start, so that they are all under way at once.
func TestCallsBeyondThePool(t *testing.T) {
	srv := startRedis(t, false)
	s := open(t, srv, redisstore.Options{})
	ctx := t.Context()
	if err := s.PutOnce(ctx, "warm", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	raw, err := net.DialTimeout("tcp", srv.addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	r := bufio.NewReader(raw)
	const calls = 300
	const spin = `local t0 = redis.call('TIME') repeat local t = redis.call('TIME') until (t[1] - t0[1]) * 1000000 + t[2] - t0[2] > 500000 return 1`
	if _, err := fmt.Fprintf(raw, "EVAL \"%s\" 0\r\n", spin); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			if err := s.PutOnce(ctx, fmt.Sprintf("burst-%d", i), []byte("x"), time.Minute); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a call beyond the pool: %v", err)
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":1") {
		t.Fatalf("the spinning script: %q %v", line, err)
	}
	info, err := command(srv.addr(), "INFO", "clients")
	if err != nil {
		t.Fatal(err)
	}
	var connected int
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "connected_clients:"); ok {
			connected, _ = strconv.Atoi(v)
		}
	}
	// 64 pooled, the shared connection, the spinning script's, and the
	// one asking.
	if connected == 0 || connected > 64+4 {
		t.Fatalf("%d clients connected to Redis after %d calls at once; want at most the pool's 64 and a few", connected, calls)
	}
	t.Logf("%d clients connected after %d calls at once", connected, calls)
}
