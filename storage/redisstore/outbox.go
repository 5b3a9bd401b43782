package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// enqueue stores a message and schedules it, and first the sign-in flow
// that asked for it when there is one (not on a Cluster, where flows
// have their own slots). KEYS: due set, message, optionally the flow.
// ARGV: id, message JSON, attempts, due, lease until, last error, score
// (unix microseconds when claimable), then the flow's JSON and TTL in ms.
//
//go:embed scripts/enqueue.lua
var enqueueLua string

var enqueue = newScript(auditLua + outboxLua + enqueueLua)

// outboxLua defines put_message, which the scripts that queue a message
// share. They start with it.
//
//go:embed scripts/outbox_lib.lua
var outboxLua string

// requestCode is a code request (RequestCode) on a single server or
// Sentinel. KEYS: the cooldown, the due set, the message, the flow, then
// the counters. ARGV: now and the end of a new cooldown (unix
// microseconds), its TTL in ms, each counter's limit and TTL in ms in
// turn, the message's values as for enqueue, then the audit events
// (append_events). Returns {microseconds the cooldown has left} while one
// runs, else {0, then the counts, up to the one past its limit}.
//
//go:embed scripts/request_code.lua
var requestCodeLua string

var requestCode = newScript(auditLua + outboxLua + countersLua + requestCodeLua)

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// Enqueue implements storage.Store.
func (s *Store) Enqueue(ctx context.Context, m storage.OutboxMessage) error {
	return s.enqueue(ctx, m, nil)
}

// EnqueueForFlow implements storage.Store: the message, the flow and the
// audit events are one script on a single server or Sentinel; on a
// Cluster, where they live in different slots, the flow and then the
// message, so that no message is queued for a flow that was not kept, and
// the events follow.
func (s *Store) EnqueueForFlow(ctx context.Context, m storage.OutboxMessage, f storage.SignInFlow, events ...storage.AuditEvent) error {
	if s.clustered() {
		if err := s.PutFlow(ctx, f); err != nil {
			return err
		}
		if err := s.Enqueue(ctx, m); err != nil {
			return err
		}
		s.appendAll(ctx, events)
		return nil
	}
	// A single server or Sentinel: the message, the flow and the events
	// are one script, stored together or not at all.
	return s.enqueue(ctx, m, &f, events...)
}

func (s *Store) enqueue(ctx context.Context, m storage.OutboxMessage, f *storage.SignInFlow, events ...storage.AuditEvent) error {
	keys, args, err := s.messageArgs(m, f, events)
	if err != nil {
		return err
	}
	_, err = s.run(ctx, enqueue, keys, args...)
	return err
}

// messageArgs are the keys and values put_message (outbox_lib.lua) takes
// for m and, when not nil, f, followed by the events for append_events.
func (s *Store) messageArgs(m storage.OutboxMessage, f *storage.SignInFlow, events []storage.AuditEvent) (keys, args []string, err error) {
	m = m.WithDefaults(s.now())
	claimable := m.Due
	if m.LeaseUntil.After(claimable) {
		claimable = m.LeaseUntil
	}
	// The fields that change live beside the JSON, so the scripts never
	// re-encode it.
	base := m
	base.Attempts, base.Due, base.LeaseUntil, base.LastError = 0, time.Time{}, time.Time{}, ""
	doc, err := json.Marshal(base)
	if err != nil {
		return nil, nil, err
	}
	keys = []string{s.outboxDue(), s.outboxMsgPrefix() + m.ID}
	args = []string{m.ID, string(doc), strconv.Itoa(m.Attempts), formatTime(m.Due), formatTime(m.LeaseUntil), m.LastError, micros(claimable)}
	if f != nil {
		flow, ttl, err := s.flowRecord(*f)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, s.flowKey(f.IDHash))
		args = append(args, flow, pxString(ttl))
	}
	if args, err = s.withEvents(args, events); err != nil {
		return nil, nil, err
	}
	return keys, args, nil
}

// RequestCode implements storage.Store: one script on a single server or
// Sentinel; on a Cluster, whose slots keep the keys apart, the cooldown,
// the counters and EnqueueForFlow in turn.
func (s *Store) RequestCode(ctx context.Context, cooldownKey string, cooldown time.Duration, hits []storage.Hit, m storage.OutboxMessage, f storage.SignInFlow, events ...storage.AuditEvent) (storage.CodeRequest, error) {
	if s.clustered() {
		return storage.RequestCodeEach(ctx, s, cooldownKey, cooldown, hits, m, f, events...)
	}
	none := storage.CodeRequest{Hits: storage.HitResult{Over: -1}}
	now := s.now()
	msgKeys, msgArgs, err := s.messageArgs(m, &f, events)
	if err != nil {
		return none, err
	}
	counters, limits, resets := s.counterArgs(hits, now)
	keys := append(append([]string{s.p + "cool:" + cooldownKey}, msgKeys...), counters...)
	args := append([]string{micros(now), micros(now.Add(cooldown)), pxString(cooldown + time.Second)}, limits...)
	r, err := s.run(ctx, requestCode, keys, append(args, msgArgs...)...)
	if err != nil {
		return none, err
	}
	reply, err := r.AsIntSlice()
	if err != nil || len(reply) == 0 || len(reply) > len(hits)+1 {
		return none, fmt.Errorf("redis: request code: unexpected reply (%v)", err)
	}
	if reply[0] > 0 {
		none.Wait = time.Duration(reply[0]) * time.Microsecond
		return none, nil
	}
	return storage.CodeRequest{Hits: hitResult(reply[1:], hits, resets)}, nil
}

// claimOutbox leases up to max due messages: it counts an attempt, sets
// the lease and reschedules each at its lease's end, so a message leased
// by a worker that died comes back by itself. KEYS: due set. ARGV: now and
// lease end (unix microseconds), max, message key prefix, lease end
// (RFC 3339). Returns {id, JSON, attempts, due, last error} per message.
//
//go:embed scripts/claim_outbox.lua
var claimOutboxLua string

var claimOutbox = newScript(claimOutboxLua)

// ClaimOutbox implements storage.Store.
func (s *Store) ClaimOutbox(ctx context.Context, lease time.Duration, max int) ([]storage.OutboxMessage, error) {
	if max <= 0 {
		return nil, nil
	}
	now := s.now()
	until := now.Add(lease)
	r, err := s.run(ctx, claimOutbox, []string{s.outboxDue()},
		micros(now), micros(until), strconv.Itoa(max), s.outboxMsgPrefix(), formatTime(until))
	if err != nil {
		return nil, err
	}
	rows, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]storage.OutboxMessage, 0, len(rows))
	for _, row := range rows {
		f, err := row.ToArray()
		if err != nil || len(f) != 5 {
			return nil, errors.New("redis: claim outbox: unexpected reply")
		}
		id, _ := f[0].ToString()
		doc, _ := f[1].ToString()
		var m storage.OutboxMessage
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("redis: outbox message %s: %w", id, err)
		}
		attempts, _ := f[2].AsInt64()
		due, _ := f[3].ToString()
		lastErr, _ := f[4].ToString()
		m.ID, m.Attempts, m.Due, m.LeaseUntil, m.LastError = id, int(attempts), parseTime(due), until, lastErr
		out = append(out, m)
	}
	return out, nil
}

// ackOutbox removes a message. KEYS: due set, message. ARGV: id.
//
//go:embed scripts/ack_outbox.lua
var ackOutboxLua string

var ackOutbox = newScript(auditLua + ackOutboxLua)

// AckOutbox implements storage.Store: the audit events follow the ack
// (the trail has its own slot).
func (s *Store) AckOutbox(ctx context.Context, id string, events ...storage.AuditEvent) error {
	args := []string{id}
	clustered := s.clustered()
	if !clustered {
		// The acknowledgement and its events in one script.
		var err error
		if args, err = s.withEvents(args, events); err != nil {
			return err
		}
	}
	if _, err := s.run(ctx, ackOutbox, []string{s.outboxDue(), s.outboxMsgPrefix() + id}, args...); err != nil {
		return err
	}
	if clustered {
		s.appendAll(ctx, events)
	}
	return nil
}

// retryOutbox releases a message until a new due time. KEYS: due set,
// message. ARGV: id, due (RFC 3339), due (unix microseconds), last error.
// Returns 0 when there is no such message.
//
//go:embed scripts/retry_outbox.lua
var retryOutboxLua string

var retryOutbox = newScript(retryOutboxLua)

// RetryOutbox implements storage.Store.
func (s *Store) RetryOutbox(ctx context.Context, id string, due time.Time, lastErr string) error {
	r, err := s.run(ctx, retryOutbox, []string{s.outboxDue(), s.outboxMsgPrefix() + id},
		id, formatTime(due), micros(due), lastErr)
	if err != nil {
		return err
	}
	if n, _ := r.AsInt64(); n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// releaseLeases makes every leased message claimable now. KEYS: due set.
// ARGV: now (unix microseconds), message key prefix. Returns how many.
//
//go:embed scripts/release_leases.lua
var releaseLeasesLua string

var releaseLeases = newScript(releaseLeasesLua)

// ReleaseLeases implements storage.Store. Nothing calls it on Redis,
// which several instances share: another instance may still be
// delivering what it leased.
func (s *Store) ReleaseLeases(ctx context.Context) (int, error) {
	r, err := s.run(ctx, releaseLeases, []string{s.outboxDue()}, micros(s.now()), s.outboxMsgPrefix())
	if err != nil {
		return 0, err
	}
	n, err := r.AsInt64()
	return int(n), err
}

// OutboxLen implements storage.Store.
func (s *Store) OutboxLen(ctx context.Context) (int, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Zcard().Key(s.outboxDue()).Build() })
	if err != nil {
		return 0, err
	}
	n, err := r.AsInt64()
	return int(n), err
}
