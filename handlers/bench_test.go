package handlers

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/badgerstore"
)

type nullSender struct{ n atomic.Int64 }

func (s *nullSender) Send(context.Context, mail.Message) error {
	s.n.Add(1)
	return nil
}

// benchGate is a started portal on real Badger with one workspace.
func benchGate(b *testing.B, contacts int) (*Gate, storage.Store, *nullSender) {
	b.Helper()
	store, err := badgerstore.Open(b.TempDir(), badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	pages, err := LoadPages("")
	if err != nil {
		b.Fatal(err)
	}
	ws := &Workspace{Name: "acme", Title: "Acme", AuthPath: "/_portal", CodeTTL: 10 * time.Minute,
		ResendCooldown: 30 * time.Second, SessionTTL: 12 * time.Hour, SessionIdle: 2 * time.Hour}
	sender := &nullSender{}
	p := &Portal{
		Workspaces: map[string]*Workspace{"acme": ws},
		Sender:     sender,
		Pages:      pages,
		Logger:     zap.NewNop(),
		Limits:     Limits{SendsPerEmail: 1 << 30, SendsPerIP: 1 << 30, SendsPerWorkspace: 1 << 30, TriesPerIP: 1 << 30, TriesPerContact: 1 << 30, RequestsPerIP: 1 << 30},
	}
	var cs []storage.Contact
	for i := range contacts {
		cs = append(cs, storage.Contact{ID: fmt.Sprintf("c-%d", i), Email: fmt.Sprintf("u%d@acme.example", i), Name: "U", Status: "active", Source: "manual"})
	}
	// Calls of 200: one transaction each (a larger call reads the stored
	// contacts first, to check its emails).
	for len(cs) > 0 {
		n := min(len(cs), 200)
		if err := store.PutContacts(context.Background(), "acme", cs[:n]); err != nil {
			b.Fatal(err)
		}
		cs = cs[n:]
	}
	if err := p.Start(context.Background(), store); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Stop)
	return NewGate(p, ws), store, sender
}

// rssMB is this process's resident set size, from /proc.
func rssMB(b *testing.B) float64 {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	for line := range strings.SplitSeq(string(st), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(rest), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

type nopHandler struct{}

func (nopHandler) ServeHTTP(http.ResponseWriter, *http.Request) {}

// BenchmarkSessionCheck measures the gate's hot path: a signed-in request
// checked and passed to the next handler (storage reads come from the
// store's cache; no write).
func BenchmarkSessionCheck(b *testing.B) {
	g, store, _ := benchGate(b, 1)
	id := NewID()
	now := time.Now()
	if err := store.PutSession(context.Background(), storage.Session{IDHash: HashID(id), Workspace: "acme", ContactID: "c-0",
		CSRF: "x", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour), Idle: time.Hour}); err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "/tickets/1", nil)
	req.Header.Set("Accept", "text/html")
	// The gate strips its cookie before the portal sees the request: put
	// it back for every iteration.
	cookie := []string{"portal_session=" + id}
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req.Header["Cookie"] = cookie
		delete(req.Header, HeaderContactID)
		_ = serve(g, w, req, nopHandler{})
	}
	b.StopTimer()
	if req.Header.Get(HeaderContactID) != "c-0" || req.Header.Get("Cookie") != "" {
		b.Fatalf("not passed as c-0 with the cookie stripped: %v", req.Header)
	}
}

// BenchmarkSessionCheck100k is the same with 100,000 live sessions in the
// store, most of them outside the cache.
func BenchmarkSessionCheck100k(b *testing.B) { benchSessionsAtScale(b, 1, 100_000) }

// BenchmarkSessionCheckScale is the same with PORTALGATE_BENCH_SESSIONS
// contacts (default 100,000), each with one live session, read in a
// random order: nearly every request misses both caches.
//
//	PORTALGATE_BENCH_SESSIONS=1000000 go test -run '^$' -bench SessionCheckScale -benchtime 2000000x ./handlers/
func BenchmarkSessionCheckScale(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("PORTALGATE_BENCH_SESSIONS"))
	if n <= 0 {
		n = 100_000
	}
	benchSessionsAtScale(b, n, n)
}

// benchSessionsAtScale measures the session check with sessions live
// sessions spread over contacts contacts.
func benchSessionsAtScale(b *testing.B, contacts, sessions int) {
	g, store, _ := benchGate(b, contacts)
	now := time.Now()
	cookies := make([][]string, sessions)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < sessions; i = int(next.Add(1)) - 1 {
				id := NewID()
				if err := store.PutSession(context.Background(), storage.Session{IDHash: HashID(id), Workspace: "acme", ContactID: fmt.Sprintf("c-%d", i%contacts),
					CSRF: "x", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour), Idle: time.Hour}); err != nil {
					b.Error(err)
					return
				}
				cookies[i] = []string{"portal_session=" + id}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	// A random order, drawn before the timer starts.
	order := mrand.Perm(sessions)
	r := httptest.NewRequest(http.MethodGet, "/tickets/1", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		r.Header["Cookie"] = cookies[order[i%sessions]]
		delete(r.Header, HeaderContactID)
		_ = serve(g, w, r, nopHandler{})
		i++
	}
	b.StopTimer()
	if r.Header.Get(HeaderContactID) == "" {
		b.Fatal("not signed in")
	}
	goruntime.GC()
	b.ReportMetric(rssMB(b), "MB-rss")
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
}

// BenchmarkCodeIssuance measures the request side of a code sign-in: the
// email form answered with the mail queued (rate limits, cooldown, flow,
// outbox, audit), for a new address each time. ns/op gives issuances per
// second per core; the outbox worker runs concurrently with a null sender.
func BenchmarkCodeIssuance(b *testing.B) {
	g, store, sender := benchGate(b, 10_000)
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	// Parallel: requests arrive concurrently, and Badger batches their
	// commits; ns/op is then wall time per issuance on all cores.
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			id := NewID()
			now := time.Now()
			if err := store.PutFlow(ctx, storage.SignInFlow{IDHash: HashID(id), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				b.Error(err)
				return
			}
			form := url.Values{"csrf": {csrfFor(g, id)}, "email": {fmt.Sprintf("u%d@acme.example", i%10_000)}}
			req := httptest.NewRequest(http.MethodPost, "/_portal/signin", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Cookie", "portal_flow="+id)
			w := httptest.NewRecorder()
			if err := serve(g, w, req, nopHandler{}); err != nil || w.Code != http.StatusSeeOther {
				b.Errorf("submit: %v %d", err, w.Code)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
	b.ReportMetric(float64(sender.n.Load()), "mails")
}

// BenchmarkDeliverCode measures the outbox worker's side: look the contact
// up, make and store a code, render both parts of the email.
func BenchmarkDeliverCode(b *testing.B) {
	g, _, _ := benchGate(b, 10_000)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		job := fmt.Appendf(nil, `{"workspace":"acme","email":"u%d@acme.example","flow_hash":"%064x","method":"code"}`, i%10_000, i)
		if _, err := g.portal.deliver(ctx, storage.OutboxMessage{ID: strconv.Itoa(i), Kind: kindCode, Payload: job}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
