package redisstore_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kdesk/portalgate/storage"
	"github.com/kdesk/portalgate/storage/redisstore"
)

// monitor records the commands clients send to srv (MONITOR), leaving out
// those a script runs: what is left is one line per round trip.
type monitor struct {
	t    *testing.T
	srv  *redisServer
	conn net.Conn
	r    *bufio.Reader
}

func startMonitor(t *testing.T, srv *redisServer) *monitor {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	m := &monitor{t: t, srv: srv, conn: conn, r: bufio.NewReader(conn)}
	if _, err := fmt.Fprint(conn, "MONITOR\r\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := m.r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("MONITOR: %q %v", line, err)
	}
	return m
}

// calls returns the commands sent since the last call (or the start),
// without the scripts' own: it sends a marker and reads up to it.
func (m *monitor) calls() []string {
	m.t.Helper()
	marker := "round-trips-" + rand.Text()
	if _, err := command(m.srv.addr(), "ECHO", marker); err != nil {
		m.t.Fatal(err)
	}
	var out []string
	for {
		line, err := m.r.ReadString('\n')
		if err != nil {
			m.t.Fatalf("reading MONITOR: %v (so far %q)", err, out)
		}
		switch {
		case strings.Contains(line, marker):
			return out
		case strings.Contains(line, " lua] "), strings.Contains(line, `"CLIENT"`), strings.Contains(line, `"PING"`):
			// A script's own commands, and the client's housekeeping.
		default:
			// `+<time> [0 127.0.0.1:port] "CMD" "arg" …`: keep the command.
			if f := strings.Fields(line); len(f) > 3 {
				out = append(out, strings.Trim(f[3], `"`))
			}
		}
	}
}

// TestSignInStepsInOneCall: on a single server (and Sentinel) the steps a
// sign-in repeats take one round trip where a Cluster's slots make them
// several: the rate-limit counters of one request, a code's mail with the
// flow that asked for it, a new session with the end of its flow, each
// with its audit events, and an audit event with its contact's index.
func TestSignInStepsInOneCall(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		name, wantHits, wantStart, wantEnqueue, wantAudit, wantAck := "single server", 1, 1, 1, 1, 1
		if cluster {
			if testing.Short() {
				continue
			}
			// An audit event: the trim, then the trail's and the
			// contact index's writes, pipelined.
			// EnqueueForFlow, AckOutbox and StartSession each with one
			// event: theirs and the event's.
			name, wantHits, wantStart, wantEnqueue, wantAudit, wantAck = "cluster", 3, 2+6, 2+6, 6, 1+6
		}
		t.Run(name, func(t *testing.T) {
			srv := startRedis(t, cluster)
			s := open(t, srv, redisstore.Options{})
			ctx := t.Context()
			// Once before watching: the connection, and each script's
			// first EVALSHA, which Redis answers NOSCRIPT (then EVAL).
			now := time.Now()
			warm := storage.SignInFlow{IDHash: hash(), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
			if err := s.PutFlow(ctx, warm); err != nil {
				t.Fatal(err)
			}
			if _, err := s.HitAll(ctx, storage.Hit{Key: "a", Limit: 1, Window: time.Minute}, storage.Hit{Key: "b", Limit: 1, Window: time.Minute}); err != nil {
				t.Fatal(err)
			}
			if err := s.StartSession(ctx, newSession(now), warm.IDHash, ""); err != nil {
				t.Fatal(err)
			}
			if err := s.EnqueueForFlow(ctx, storage.OutboxMessage{Kind: "warm-up"}, warm); err != nil {
				t.Fatal(err)
			}
			if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "warm-up"}); err != nil {
				t.Fatal(err)
			}
			if err := s.AckOutbox(ctx, "no-such-message"); err != nil {
				t.Fatal(err)
			}
			mon := startMonitor(t, srv)
			_ = mon.calls()

			hits := []storage.Hit{
				{Key: "try/ip/192.0.2.1/32", Limit: 10, Window: time.Minute},
				{Key: "try/email/acme/jo@acme.example", Limit: 1, Window: time.Hour},
				{Key: "try/flow/f-1", Limit: 5, Window: 10 * time.Minute},
			}
			res, err := s.HitAll(ctx, hits...)
			if err != nil || res.Over != -1 || len(res.Counts) != 3 {
				t.Fatalf("HitAll: %+v %v", res, err)
			}
			if got := mon.calls(); len(got) != wantHits {
				t.Errorf("HitAll of 3 counters: round trips %q, want %d", got, wantHits)
			}
			res, err = s.HitAll(ctx, hits...)
			if err != nil || res.Over != 1 || !equal(res.Counts, []int{2, 2}) || res.RetryAfter <= 0 || res.RetryAfter > time.Hour {
				t.Fatalf("HitAll over the second counter's limit: %+v %v, want counts [2 2], over 1", res, err)
			}
			if n, _, err := s.Count(ctx, hits[2].Key, hits[2].Window); err != nil || n != 2 {
				t.Fatalf("the counter after the one over its limit: %d %v, want 2 (1 untouched, and this count)", n, err)
			}
			_ = mon.calls()

			flow := storage.SignInFlow{IDHash: hash(), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
			_ = mon.calls()
			if err := s.EnqueueForFlow(ctx, storage.OutboxMessage{Kind: "code", Payload: []byte(`{"to":"jo@acme.example"}`)}, flow,
				storage.AuditEvent{Workspace: "acme", Event: "code_requested", ContactID: "c-5"}); err != nil {
				t.Fatal(err)
			}
			if got := mon.calls(); len(got) != wantEnqueue {
				t.Errorf("EnqueueForFlow: round trips %q, want %d", got, wantEnqueue)
			}
			if got, err := s.Flow(ctx, flow.IDHash); err != nil || got.ReturnTo != "/" {
				t.Fatalf("the flow a message was queued for: %+v %v", got, err)
			}
			_ = mon.calls()
			if err := s.AppendAudit(ctx, storage.AuditEvent{Workspace: "acme", Event: "code_sent", ContactID: "c-7"}); err != nil {
				t.Fatal(err)
			}
			if got := mon.calls(); len(got) != wantAudit {
				t.Errorf("AppendAudit of a contact's event: round trips %q, want %d", got, wantAudit)
			}
			for _, q := range []storage.AuditQuery{{Workspace: "acme"}, {Workspace: "acme", ContactID: "c-7"}} {
				if es, _, err := s.Audit(ctx, q); err != nil || len(es) == 0 || es[0].Event != "code_sent" {
					t.Errorf("Audit(%+v) after the append = %+v, %v", q, es, err)
				}
			}

			if !cluster {
				// A code request: the cooldown, the request's counter, the
				// message with its flow and the event, in one script.
				reqFlow := storage.SignInFlow{IDHash: hash(), Workspace: "acme", ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
				if _, err := s.RequestCode(ctx, "resend/warm", time.Minute, hits[:1], storage.OutboxMessage{Kind: "warm-up"}, reqFlow); err != nil {
					t.Fatal(err)
				}
				_ = mon.calls()
				res, err := s.RequestCode(ctx, "resend/acme/jo@acme.example", time.Minute, []storage.Hit{{Key: "req/ip/192.0.2.0/24", Limit: 10, Window: time.Hour}},
					storage.OutboxMessage{Kind: "code"}, reqFlow, storage.AuditEvent{Workspace: "acme", Event: "code_resent", ContactID: "c-4"})
				if err != nil || !res.Queued() {
					t.Fatalf("RequestCode: %+v %v", res, err)
				}
				if got := mon.calls(); len(got) != 1 {
					t.Errorf("RequestCode: round trips %q, want 1", got)
				}
				if es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: "c-4"}); err != nil || len(es) != 1 {
					t.Errorf("the code request's event: %+v, %v", es, err)
				}
				// A code's mail: the contact by its email, then the send
				// counters with the code, one script each.
				if err := s.PutContacts(ctx, "acme", []storage.Contact{{ID: "c-4", Email: "jo@acme.example"}}); err != nil {
					t.Fatal(err)
				}
				if _, err := s.ContactByEmail(ctx, "acme", "warm@acme.example"); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("ContactByEmail of no contact: %v", err)
				}
				if _, err := s.CountAndPutCode(ctx, nil, "acme", "c-0", "warm", storage.Code{Hash: []byte("x"), IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
					t.Fatal(err)
				}
				_ = mon.calls()
				if c, err := s.ContactByEmail(ctx, "acme", "jo@acme.example"); err != nil || c.ID != "c-4" {
					t.Fatalf("ContactByEmail: %+v %v", c, err)
				}
				if got := mon.calls(); len(got) != 1 {
					t.Errorf("ContactByEmail: round trips %q, want 1", got)
				}
				sends := []storage.Hit{{Key: "send/email/acme/jo@acme.example", Limit: 5, Window: time.Hour}, {Key: "send/ws/acme", Limit: 100, Window: time.Hour}}
				if res, err := s.CountAndPutCode(ctx, sends, "acme", "c-4", reqFlow.IDHash, storage.Code{Hash: []byte("sent"), IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil || res.Over != -1 || len(res.Counts) != 2 {
					t.Fatalf("CountAndPutCode: %+v %v", res, err)
				}
				if got := mon.calls(); len(got) != 1 {
					t.Errorf("CountAndPutCode: round trips %q, want 1", got)
				}
				// A code try's flow with its contact, in one script.
				if _, _, err := s.FlowContact(ctx, "warm"); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("FlowContact of no flow: %v", err)
				}
				withEmail := reqFlow
				withEmail.IDHash, withEmail.Email = hash(), "jo@acme.example"
				if err := s.PutFlow(ctx, withEmail); err != nil {
					t.Fatal(err)
				}
				_ = mon.calls()
				if f, c, err := s.FlowContact(ctx, withEmail.IDHash); err != nil || f.Email != withEmail.Email || c.ID != "c-4" {
					t.Fatalf("FlowContact: %+v %+v %v", f, c, err)
				}
				if got := mon.calls(); len(got) != 1 {
					t.Errorf("FlowContact: round trips %q, want 1", got)
				}
				// A code try: its counters, the code and, once it is
				// accepted, the session with the flow's end and the
				// sign-in's event, in one script.
				if _, _, err := s.CountAndRedeemCode(ctx, hits, "acme", "c-4", "warm", []byte("x"), 5, nil); err != nil {
					t.Fatal(err)
				}
				now := time.Now()
				if err := s.PutCode(ctx, "acme", "c-4", reqFlow.IDHash, storage.Code{Hash: []byte("right"), IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
					t.Fatal(err)
				}
				tries := []storage.Hit{{Key: "try/ip/198.51.100.0/24", Limit: 10, Window: time.Hour}, {Key: "try/flow/" + reqFlow.IDHash, Limit: 5, Window: time.Hour}}
				_ = mon.calls()
				sess := storage.Session{IDHash: hash(), Workspace: "acme", ContactID: "c-4", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}
				start := &storage.SessionStart{Session: sess, EndFlow: reqFlow.IDHash,
					Events: []storage.AuditEvent{{Workspace: "acme", Event: "sign_in", ContactID: "c-4"}}}
				counted, code, err := s.CountAndRedeemCode(ctx, tries, "acme", "c-4", reqFlow.IDHash, []byte("right"), 5, start)
				if err != nil || code != storage.CodeAccepted || counted.Over != -1 || len(counted.Counts) != 2 {
					t.Fatalf("CountAndRedeemCode: %+v %v %v", counted, code, err)
				}
				if got := mon.calls(); len(got) != 1 {
					t.Errorf("CountAndRedeemCode with a session to start: round trips %q, want 1", got)
				}
				if got, err := s.Session(ctx, "acme", sess.IDHash); err != nil || got.ContactID != "c-4" {
					t.Errorf("the session the accepted code started: %+v, %v", got, err)
				}
				if _, err := s.Flow(ctx, reqFlow.IDHash); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("the flow after the sign-in: %v, want storage.ErrNotFound", err)
				}
				if es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", Event: "sign_in"}); err != nil || len(es) != 1 || es[0].ContactID != "c-4" {
					t.Errorf("the sign-in's event: %+v, %v", es, err)
				}
			}
			ms, err := s.ClaimOutbox(ctx, time.Minute, 10)
			if err != nil || len(ms) == 0 {
				t.Fatalf("ClaimOutbox: %+v %v", ms, err)
			}
			_ = mon.calls()
			if err := s.AckOutbox(ctx, ms[0].ID, storage.AuditEvent{Workspace: "acme", Event: "code_sent", ContactID: "c-8"}); err != nil {
				t.Fatal(err)
			}
			if got := mon.calls(); len(got) != wantAck {
				t.Errorf("AckOutbox with its event: round trips %q, want %d", got, wantAck)
			}
			if es, _, err := s.Audit(ctx, storage.AuditQuery{Workspace: "acme", ContactID: "c-8"}); err != nil || len(es) != 1 {
				t.Errorf("the acknowledgement's event: %+v, %v", es, err)
			}

			sess := newSession(now)
			_ = mon.calls()
			if err := s.StartSession(ctx, sess, flow.IDHash, "", storage.AuditEvent{Workspace: "acme", Event: "code_accepted", ContactID: "c-6"}); err != nil {
				t.Fatal(err)
			}
			if got := mon.calls(); len(got) != wantStart {
				t.Errorf("StartSession ending its flow: round trips %q, want %d", got, wantStart)
			}
			if _, err := s.Flow(ctx, flow.IDHash); err == nil {
				t.Error("the flow outlived the session it started")
			}
			if _, err := s.Session(ctx, "acme", sess.IDHash); err != nil {
				t.Errorf("the started session: %v", err)
			}
			for contact, event := range map[string]string{"c-5": "code_requested", "c-6": "code_accepted"} {
				for _, q := range []storage.AuditQuery{{Workspace: "acme", Event: event}, {Workspace: "acme", ContactID: contact}} {
					if es, _, err := s.Audit(ctx, q); err != nil || len(es) != 1 || es[0].Event != event || es[0].ContactID != contact {
						t.Errorf("Audit(%+v) = %+v, %v; want the %s event stored with its write", q, es, err, event)
					}
				}
			}
		})
	}
}

func equal(a, b []int) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// hash is a random id hash.
func hash() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newSession is a session of c-1 in acme, an hour long.
func newSession(now time.Time) storage.Session {
	return storage.Session{IDHash: hash(), Workspace: "acme", ContactID: "c-1",
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour), Idle: time.Hour}
}
