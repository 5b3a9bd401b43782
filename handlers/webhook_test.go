package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
)

// receiver is a webhook endpoint that records what it gets; fail makes
// it answer 500 to that many requests first.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	fail int
}

type received struct {
	id, ts, sig string
	body        []byte
}

func startReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.fail > 0 {
			rc.fail--
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		rc.got = append(rc.got, received{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body})
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

var webhookKey = []byte("0123456789abcdef0123456789abcdef")

func webhookPortal(t *testing.T, rc *receiver, events ...string) *testPortal {
	return newTestPortal(t, func(p *Portal) {
		p.Workspaces["acme"].Webhooks = []*Webhook{{URL: rc.URL, Key: webhookKey, Events: events}}
	})
}

// event decodes a delivery and checks its Standard Webhooks signature.
func (r received) event(t *testing.T) (typ string, data map[string]any) {
	t.Helper()
	m := hmac.New(sha256.New, webhookKey)
	m.Write([]byte(r.id + "." + r.ts + "."))
	m.Write(r.body)
	if want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)); r.sig != want || r.id == "" || r.ts == "" {
		t.Fatalf("webhook-signature %q (id %q, ts %q), want %q", r.sig, r.id, r.ts, want)
	}
	var v struct {
		Type      string         `json:"type"`
		Timestamp time.Time      `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.Timestamp.IsZero() {
		t.Fatalf("webhook body %s: %v", r.body, err)
	}
	return v.Type, v.Data
}

func TestWebhookSignInAndOut(t *testing.T) {
	rc := startReceiver(t)
	tp := webhookPortal(t, rc, WebhookSignIn, WebhookSignOut)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "sign-in", tp.signIn(b, "/"), "/")
	waitFor(t, "the sign_in webhook", func() bool { return len(rc.all()) == 1 })
	typ, data := rc.all()[0].event(t)
	if typ != WebhookSignIn || data["contact_id"] != jane.ID || data["method"] != "code" || data["workspace"] != "acme" {
		t.Fatalf("sign_in webhook: %s %v", typ, data)
	}
	// Received is not yet acknowledged: an event queued before that waits
	// its turn behind it, rescheduled on the portal's clock, which this
	// test moves by hand. Let the sign_in settle first.
	tp.settle(t)
	b.do(http.MethodPost, "/_portal/signout", url.Values{}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	waitFor(t, "the sign_out webhook", func() bool { return len(rc.all()) == 2 })
	if typ, data := rc.all()[1].event(t); typ != WebhookSignOut || data["contact_id"] != jane.ID {
		t.Fatalf("sign_out webhook: %s %v", typ, data)
	}
	// Nothing else was subscribed: no code_requested, no code_sent.
	tp.settle(t)
	if n := len(rc.all()); n != 2 {
		t.Fatalf("%d webhooks, want 2", n)
	}
}

// TestWebhookRetriedInOrder: a receiver that fails gets the event again
// (same webhook-id) after backoff, and a contact's later event waits
// behind the failing one.
func TestWebhookRetriedInOrder(t *testing.T) {
	rc := startReceiver(t)
	rc.fail = 2
	tp := webhookPortal(t, rc, WebhookSignIn, WebhookSignOut)
	b := tp.browser(t, tp.acme)
	wantRedirect(t, "sign-in", tp.signIn(b, "/"), "/")
	b.do(http.MethodPost, "/_portal/signout", url.Values{}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
	deadline := time.Now().Add(mailWait)
	for len(rc.all()) < 2 && time.Now().Before(deadline) {
		tp.clock.Advance(10 * time.Second) // past each backoff
		time.Sleep(20 * time.Millisecond)
	}
	got := rc.all()
	if len(got) < 2 {
		t.Fatalf("%d webhooks delivered after retries", len(got))
	}
	first, _ := got[0].event(t)
	second, _ := got[1].event(t)
	if first != WebhookSignIn || second != WebhookSignOut {
		t.Fatalf("delivered %s then %s, want sign_in then sign_out", first, second)
	}
	if got[0].id == got[1].id {
		t.Fatal("two events share a webhook-id")
	}
}

func TestParseWebhookSecret(t *testing.T) {
	good := "whsec_" + base64.StdEncoding.EncodeToString(webhookKey)
	if key, err := ParseWebhookSecret(good); err != nil || string(key) != string(webhookKey) {
		t.Fatalf("%q: %v", good, err)
	}
	for _, bad := range []string{"", "secret", "whsec_!!!", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := ParseWebhookSecret(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestWebhookConnectionsKept: deliveries to one receiver reuse their
// connections, as many as the outbox has under way at once, from one
// burst of events to the next. Go's default transport keeps 2 idle
// connections a host: after each burst of 16 it closed 14, and the next
// burst opened them again (a TCP and TLS handshake each).
func TestWebhookConnectionsKept(t *testing.T) {
	const burst, bursts = 16, 10
	srv, opened := countingServer(t)
	tp := newTestPortal(t, func(p *Portal) {
		p.Workspaces["acme"].Webhooks = []*Webhook{{URL: srv.URL, Key: webhookKey, Events: []string{WebhookSignIn}}}
	})
	for b := range bursts {
		before := opened.Load()
		var setup atomic.Int64 // what the burst's deliveries reported to the outbox
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				ctx, report := mail.WithReport(t.Context())
				job, _ := json.Marshal(webhookJob{Workspace: "acme", Hook: srv.URL, ID: fmt.Sprintf("msg_%d_%d", b, i), Body: json.RawMessage(`{}`)})
				if err := tp.portal.deliverWebhook(ctx, storage.OutboxMessage{Kind: kindWebhook, Payload: job}); err != nil {
					t.Error(err)
				}
				setup.Add(int64(report.Setup()))
			})
		}
		wg.Wait()
		switch n := opened.Load() - before; {
		case n > 0 && setup.Load() == 0:
			t.Fatalf("burst %d opened %d connections and reported no setup time to the outbox", b, n)
		case n == 0 && setup.Load() != 0:
			t.Fatalf("burst %d reused its connections and reported %s of setup", b, time.Duration(setup.Load()))
		}
	}
	t.Logf("%d bursts of %d webhooks over %d connections", bursts, burst, opened.Load())
	if n := opened.Load(); n > 2*burst {
		t.Fatalf("%d connections opened for %d bursts of %d webhooks at once", n, bursts, burst)
	}
}

// TestCodesPassADeadWebhookReceiver: with 60 events queued for a receiver
// that never answers (each delivery waits out the client's timeout), a
// contact's code still arrives at once: the receiver's deliveries run in
// a lane of their own, and its backlog goes back to the store instead of
// holding every outbox worker (before, all 32 waited on it).
func TestCodesPassADeadWebhookReceiver(t *testing.T) {
	hang := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	t.Cleanup(func() { close(hang); dead.Close() })
	tp := newTestPortal(t, func(p *Portal) {
		p.Workspaces["acme"].Webhooks = []*Webhook{{URL: dead.URL, Key: webhookKey, Events: []string{WebhookSignIn}}}
	})
	for i := range 60 {
		job, _ := json.Marshal(webhookJob{Workspace: "acme", Hook: dead.URL, ID: fmt.Sprintf("msg_dead_%d", i), Body: json.RawMessage(`{}`)})
		if err := tp.store.Enqueue(t.Context(), storage.OutboxMessage{Kind: kindWebhook, Payload: job, NotAfter: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	tp.portal.outbox.Wake()
	time.Sleep(200 * time.Millisecond) // the webhooks claimed, and hanging
	b := tp.browser(t, tp.acme)
	start := time.Now()
	wantRedirect(t, "sign-in", tp.signIn(b, "/"), "/")
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("signing in took %s behind a dead webhook receiver", took)
	}
}

// TestOutboxLanes: codes share one lane; each webhook receiver has its own.
func TestOutboxLanes(t *testing.T) {
	hook := func(url string) storage.OutboxMessage {
		job, _ := json.Marshal(webhookJob{Workspace: "acme", Hook: url, ID: "msg_1", Body: json.RawMessage(`{}`)})
		return storage.OutboxMessage{Kind: kindWebhook, Payload: job}
	}
	a, b := outboxLane(hook("https://a.example/hook")), outboxLane(hook("https://b.example/hook"))
	if a == b || a != outboxLane(hook("https://a.example/hook")) {
		t.Fatalf("lanes %q and %q for two receivers", a, b)
	}
	if c := outboxLane(storage.OutboxMessage{Kind: kindCode, Payload: []byte(`{}`)}); c != kindCode || c == a {
		t.Fatalf("a code's lane is %q", c)
	}
}

// countingServer is an HTTP server that takes 5 ms to answer (a receiver
// doing some work) and counts the connections opened to it.
func countingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	opened := new(atomic.Int32)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(5 * time.Millisecond)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, opened
}
