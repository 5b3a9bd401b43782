package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/kdesk/portalgate/storage"
)

// putSession stores a session and adds it to its workspace's and
// contact's indexes, in one step, so a contact's sessions are always all
// found by the scripts that end them. It drops index entries past their
// absolute expiry and keeps each index alive as long as its longest
// session. KEYS: workspace index, contact index, session, and optionally
// a sign-in flow to end with it (not on a Cluster, where flows have their
// own slots). ARGV: absolute expiry (unix ms), id hash, now (unix ms),
// index TTL in ms, JSON, session TTL in ms.
//
//go:embed scripts/put_session.lua
var putSessionLua string

// sessionLua defines put_session, which the scripts that store a new
// session share (putSession's, and countRedeem's for an accepted code).
//
//go:embed scripts/session_lib.lua
var sessionLua string

var putSession = newScript(auditLua + sessionLua + putSessionLua)

// PutSession implements storage.Store.
func (s *Store) PutSession(ctx context.Context, sess storage.Session) error {
	return s.putSession(ctx, sess, "")
}

// putSession stores sess and, when flowKey is set, deletes that key in
// the same script.
func (s *Store) putSession(ctx context.Context, sess storage.Session, flowKey string, events ...storage.AuditEvent) error {
	keys, args, err := s.sessionArgs(sess, flowKey, events)
	if err != nil {
		return err
	}
	_, err = s.run(ctx, putSession, keys, args...)
	s.written.mark(keys[2])
	return err
}

// sessionArgs are put_session's keys (the session's is the third) and
// arguments (session_lib.lua), with the events after them.
func (s *Store) sessionArgs(sess storage.Session, flowKey string, events []storage.AuditEvent) (keys, args []string, err error) {
	now := s.now()
	ttl := sess.Expiry().Sub(now)
	if ttl <= 0 {
		return nil, nil, errors.New("session already expired")
	}
	doc, err := json.Marshal(sess)
	if err != nil {
		return nil, nil, err
	}
	pre := s.ws(sess.Workspace)
	keys = []string{pre + "sessions", pre + "si:" + sess.ContactID, s.sessionKey(sess.Workspace, sess.IDHash)}
	if flowKey != "" {
		keys = append(keys, flowKey)
	}
	args = []string{strconv.FormatInt(sess.ExpiresAt.UnixMilli(), 10), sess.IDHash,
		strconv.FormatInt(now.UnixMilli(), 10), pxString(sess.ExpiresAt.Sub(now) + time.Second),
		string(doc), pxString(ttl)}
	if args, err = s.withEvents(args, events); err != nil {
		return nil, nil, err
	}
	return keys, args, nil
}

// StartSession implements storage.Store. On a single server or Sentinel
// the session, the end of the flow and the audit events are one script;
// on a Cluster the flow and the trail live in other slots, so the flow is
// ended by a call of its own and the events are appended last. The
// browser's previous session is ended after, by calls of its own (it is
// rarely there). Once the session is stored the sign-in stands: a failure
// to end the others or (on a Cluster) to append the events is logged, not
// returned (the browser's cookie is replaced either way, and the flow
// expires by itself).
func (s *Store) StartSession(ctx context.Context, sess storage.Session, endFlow, endSession string, events ...storage.AuditEvent) error {
	flowKey := ""
	clustered := s.clustered()
	if endFlow != "" && !clustered {
		flowKey, endFlow = s.flowKey(endFlow), ""
	}
	// On a single server or Sentinel the events go in the session's
	// script, stored with it.
	var with []storage.AuditEvent
	if !clustered {
		with, events = events, nil
	}
	if err := s.putSession(ctx, sess, flowKey, with...); err != nil {
		return err
	}
	s.afterStart(ctx, sess, endFlow, endSession, events)
	return nil
}

// afterStart ends what a stored session replaces and appends the events
// its script did not hold: calls of their own, whose failure is logged
// (StartSession).
func (s *Store) afterStart(ctx context.Context, sess storage.Session, endFlow, endSession string, events []storage.AuditEvent) {
	if endSession != "" && endSession != sess.IDHash {
		if err := s.DeleteSession(ctx, sess.Workspace, endSession); err != nil {
			s.log.Warn("ending the previous session at sign-in", zap.Error(err))
		}
	}
	if endFlow != "" {
		if err := s.DeleteFlow(ctx, endFlow); err != nil {
			s.log.Warn("ending the sign-in flow", zap.Error(err))
		}
	}
	s.appendAll(ctx, events)
}

// appendAll appends audit events that follow a write which stands
// whatever becomes of them: a failure is logged, not returned.
func (s *Store) appendAll(ctx context.Context, events []storage.AuditEvent) {
	for _, e := range events {
		if err := s.AppendAudit(ctx, e); err != nil {
			s.log.Error("writing audit event", zap.String("event", e.Event), zap.Error(err))
		}
	}
}

func decodeSession(raw string) (storage.Session, error) {
	var sess storage.Session
	if err := json.Unmarshal([]byte(raw), &sess); err != nil {
		return storage.Session{}, fmt.Errorf("redis: session: %w", err)
	}
	return sess, nil
}

// Session implements storage.Store. It is on the hot path: served from the
// client-side cache, which Redis invalidates on every change; expiry is
// checked against the clock on every call.
func (s *Store) Session(ctx context.Context, ws, idHash string) (storage.Session, error) {
	sess, ok, err := record(ctx, s, s.sessions, s.sessionKey(ws, idHash), decodeSession)
	if err != nil {
		return storage.Session{}, err
	}
	if !ok {
		return storage.Session{}, storage.ErrNotFound
	}
	if !s.now().Before(sess.Expiry()) {
		return storage.Session{}, storage.ErrNotFound
	}
	return sess, nil
}

// swap replaces a value only if it is still the one read. KEYS: key.
// ARGV: old value, new value, TTL in ms. Returns 1 if replaced.
//
//go:embed scripts/swap.lua
var swapLua string

var swap = newScript(swapLua)

// TouchSession implements storage.Store.
func (s *Store) TouchSession(ctx context.Context, ws, idHash string, seen time.Time) error {
	key := s.sessionKey(ws, idHash)
	defer s.written.mark(key)
	for range 16 {
		raw, ok, err := s.getString(ctx, key)
		if err != nil {
			return err
		}
		if !ok {
			return storage.ErrNotFound
		}
		sess, err := decodeSession(raw)
		if err != nil {
			return err
		}
		// Redis may keep a session past the store clock's expiry; a touch
		// must not revive it.
		now := s.now()
		if !now.Before(sess.Expiry()) {
			return storage.ErrNotFound
		}
		if !seen.After(sess.LastSeen) {
			return nil
		}
		sess.LastSeen = seen
		ttl := sess.Expiry().Sub(now)
		if ttl <= 0 {
			return storage.ErrNotFound
		}
		doc, err := json.Marshal(sess)
		if err != nil {
			return err
		}
		r, err := s.run(ctx, swap, []string{key}, raw, string(doc), pxString(ttl))
		if err != nil {
			return err
		}
		if n, _ := r.AsInt64(); n == 1 {
			return nil
		}
		// Changed or deleted in between: read again.
	}
	return errors.New("redis: touch session: too many concurrent changes")
}

// unindexSessions removes ids from a contact's indexes.
func (s *Store) unindexSessions(ctx context.Context, ws, contactID string, hashes []string) error {
	if len(hashes) == 0 {
		return nil
	}
	pre := s.ws(ws)
	_, err := s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		return []rueidis.Completed{
			b.Zrem().Key(pre + "sessions").Member(hashes...).Build(),
			b.Zrem().Key(pre + "si:" + contactID).Member(hashes...).Build(),
		}
	})
	return err
}

// DeleteSession implements storage.Store.
func (s *Store) DeleteSession(ctx context.Context, ws, idHash string) error {
	key := s.sessionKey(ws, idHash)
	r, err := s.getDel(ctx, key)
	s.written.mark(key)
	if rueidis.IsRedisNil(err) {
		return nil
	}
	if err != nil {
		return err
	}
	raw, err := r.ToString()
	if err != nil {
		return err
	}
	sess, err := decodeSession(raw)
	if err != nil {
		return nil // the session is gone; only its index entry may linger
	}
	return s.unindexSessions(ctx, ws, sess.ContactID, []string{idHash})
}

// indexed returns the id hashes in an index.
func (s *Store) indexed(ctx context.Context, key string) ([]string, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Zrange().Key(key).Min("0").Max("-1").Build() })
	if err != nil {
		return nil, err
	}
	return r.AsStrSlice()
}

// Sessions implements storage.Store.
func (s *Store) Sessions(ctx context.Context, ws, contactID string) ([]storage.Session, error) {
	idx := s.ws(ws) + "sessions"
	if contactID != "" {
		idx = s.ws(ws) + "si:" + contactID
	}
	hashes, err := s.indexed(ctx, idx)
	if err != nil {
		return nil, err
	}
	// Session keys spread over the cluster: one GET each, pipelined.
	rs, err := s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		cmds := make([]rueidis.Completed, len(hashes))
		for i, h := range hashes {
			cmds[i] = b.Get().Key(s.sessionKey(ws, h)).Build()
		}
		return cmds
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []storage.Session
	for _, r := range rs {
		raw, err := r.ToString()
		if err != nil {
			continue
		}
		sess, err := decodeSession(raw)
		if err != nil {
			return nil, err
		}
		if sess.Workspace != ws || contactID != "" && sess.ContactID != contactID || !now.Before(sess.Expiry()) {
			continue
		}
		out = append(out, sess)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// deleteContactSessions ends every session of a contact in one step.
// ARGV: workspace key prefix, contact id. Returns the id hash and JSON of
// each ended session.
//
//go:embed scripts/delete_contact_sessions.lua
var deleteContactSessionsLua string

var deleteContactSessions = newScript(endContactLua + deleteContactSessionsLua)

// DeleteContactSessions implements storage.Store.
func (s *Store) DeleteContactSessions(ctx context.Context, ws, contactID string) (int, error) {
	pre := s.ws(ws)
	r, err := s.run(ctx, deleteContactSessions, []string{pre + "si:" + contactID}, pre, contactID)
	if err != nil {
		return 0, err
	}
	res, err := r.ToArray()
	if err != nil {
		return 0, err
	}
	return s.endedSessions(ws, res)
}
