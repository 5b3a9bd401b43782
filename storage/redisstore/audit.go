package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// prepareAudit readies a trail for an append: it marks when the trail
// began to have contact indexes (the member "!indexed", which readers skip
// like every member shorter than an id), then removes the oldest events
// past the retention, a bounded number per call, and returns the contacts
// they concerned. KEYS:
// the trail. ARGV: the oldest score kept (microseconds), the most events
// to remove, now (microseconds).
//
//go:embed scripts/prepare_audit.lua
var prepareAuditLua string

// auditLua defines the Lua functions the scripts that append audit events
// share: prepare_trail, write_event and append_events. They start with it.
//
//go:embed scripts/audit_lib.lua
var auditLua string

var prepareAudit = newScript(auditLua + prepareAuditLua)

// appendAudit appends the events given as for append_events (audit_lib.lua)
// on a single server or Sentinel: no KEYS, as it names the trail and the
// indexes itself.
//
//go:embed scripts/append_audit.lua
var appendAuditLua string

var appendAudit = newScript(auditLua + appendAuditLua)

// indexedMember marks, by its score, since when a trail's events of a
// contact are also in that contact's index.
const indexedMember = "!indexed"

// trimPerAppend is the most expired events one AppendAudit removes. Each
// append trims a little, so a trail never waits for one long deletion
// that would hold Redis (one thread for every instance's requests): after
// a quiet spell or a shortened retention, a million expired events go in
// tens of thousands of short steps, while every read already skips them.
const trimPerAppend = 32

// auditKey is the trail of a workspace; contactAuditKey is its index of
// one contact's events: the same members (id + JSON) and scores, so that
// reading one contact's events scans only those.
func (s *Store) auditKey(ws string) string { return s.p + "audit:" + ws }

func (s *Store) contactAuditKey(ws, contact string) string {
	return s.p + "audit:" + ws + ":c:" + contact
}

// AppendAudit implements storage.Store. It first trims the expired events
// the trail still holds, at most trimPerAppend of them; then it writes the
// event into the trail and, when it has a contact, into that contact's
// index, and trims the indexes of the contacts whose events went.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	if !s.clustered() {
		// One script trims, appends and indexes: one round trip, where a
		// Cluster's slots need two.
		args, err := s.withEvents(nil, []storage.AuditEvent{e})
		if err != nil || len(args) == 0 { // past the retention: not stored
			return err
		}
		_, err = s.run(ctx, appendAudit, nil, args...)
		return err
	}
	now := s.now()
	oldest := now.Add(-s.retention)
	e, member, keep, err := s.auditMember(e, now)
	if err != nil || member == "" {
		return err
	}
	key := s.auditKey(e.Workspace)
	r, err := s.run(ctx, prepareAudit, []string{key}, micros(oldest), strconv.Itoa(trimPerAppend), micros(now))
	if err != nil {
		return err
	}
	trimmed, err := r.AsStrSlice()
	if err != nil {
		return fmt.Errorf("redis: trimming the audit trail: %w", err)
	}
	score := float64(e.Time.UnixMicro())
	_, err = s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		cmds := []rueidis.Completed{
			b.Zadd().Key(key).ScoreMember().ScoreMember(score, member).Build(),
			b.Pexpire().Key(key).Milliseconds(px(keep)).Build(),
		}
		if e.ContactID != "" {
			ck := s.contactAuditKey(e.Workspace, e.ContactID)
			cmds = append(cmds,
				b.Zadd().Key(ck).ScoreMember().ScoreMember(score, member).Build(),
				b.Zremrangebyscore().Key(ck).Min("-inf").Max("("+micros(oldest)).Build(),
				b.Pexpire().Key(ck).Milliseconds(px(keep)).Build())
		}
		for _, c := range trimmed {
			cmds = append(cmds, b.Zremrangebyscore().Key(s.contactAuditKey(e.Workspace, c)).Min("-inf").Max("("+micros(oldest)).Build())
		}
		return cmds
	})
	return err
}

// auditMember stamps e as AppendAudit stores it (its time, in UTC, and a
// sortable id) and returns it with its trail member (id and JSON) and how
// long the trail keeps it; member is "" for an event already past the
// retention, which is not stored.
func (s *Store) auditMember(e storage.AuditEvent, now time.Time) (storage.AuditEvent, string, time.Duration, error) {
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	e.ID = storage.SortableID(e.Time)
	if e.Time.Before(now.Add(-s.retention)) {
		return e, "", 0, nil
	}
	doc, err := json.Marshal(e)
	if err != nil {
		return e, "", 0, err
	}
	return e, e.ID + string(doc), s.retention + time.Hour, nil
}

// withEvents is args followed by events as the scripts' append_events
// (audit_lib.lua) takes them: their number, then nine values each; args
// alone when no event is left inside the retention. For a single server or Sentinel only: the script
// names the trail and index keys itself.
func (s *Store) withEvents(args []string, events []storage.AuditEvent) ([]string, error) {
	if len(events) == 0 {
		return args, nil
	}
	ev, err := s.eventArgs(events)
	if err != nil {
		return nil, err
	}
	return append(args, ev...), nil
}

func (s *Store) eventArgs(events []storage.AuditEvent) ([]string, error) {
	now := s.now()
	oldest := micros(now.Add(-s.retention))
	args := []string{""}
	n := 0
	for _, e := range events {
		e, member, keep, err := s.auditMember(e, now)
		if err != nil {
			return nil, err
		}
		if member == "" {
			continue
		}
		n++
		args = append(args, s.auditKey(e.Workspace), oldest, strconv.Itoa(trimPerAppend), micros(now),
			member, micros(e.Time), pxString(keep), s.contactAuditKey(e.Workspace, ""), e.ContactID)
	}
	if n == 0 {
		return nil, nil
	}
	args[0] = strconv.Itoa(n)
	return args, nil
}

// ImportAudit records many events as AppendAudit would each, pipelined:
// for filling a trail in bulk (moving one from elsewhere, the scale
// tests). Events past the retention are skipped; nothing is trimmed.
func (s *Store) ImportAudit(ctx context.Context, events []storage.AuditEvent) error {
	now := s.now()
	oldest := now.Add(-s.retention)
	keep := px(s.retention + time.Hour)
	prepared := map[string]bool{}
	const batch = 1000
	for len(events) > 0 {
		part := events[:min(batch, len(events))]
		events = events[len(part):]
		for _, e := range part {
			if key := s.auditKey(e.Workspace); !prepared[key] {
				if _, err := s.run(ctx, prepareAudit, []string{key}, micros(oldest), "0", micros(now)); err != nil {
					return fmt.Errorf("importing audit events: %w", err)
				}
				prepared[key] = true
			}
		}
		_, err := s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
			cmds := make([]rueidis.Completed, 0, 4*len(part))
			seen := map[string]bool{}
			for _, e := range part {
				if e.Time.IsZero() {
					e.Time = now
				}
				e.Time = e.Time.UTC()
				e.ID = storage.SortableID(e.Time)
				if e.Time.Before(oldest) {
					continue
				}
				doc, err := json.Marshal(e)
				if err != nil {
					continue // an AuditEvent always marshals
				}
				member, score := e.ID+string(doc), float64(e.Time.UnixMicro())
				keys := []string{s.auditKey(e.Workspace)}
				if e.ContactID != "" {
					keys = append(keys, s.contactAuditKey(e.Workspace, e.ContactID))
				}
				for _, k := range keys {
					cmds = append(cmds, b.Zadd().Key(k).ScoreMember().ScoreMember(score, member).Build())
					if !seen[k] {
						seen[k] = true
						cmds = append(cmds, b.Pexpire().Key(k).Milliseconds(keep).Build())
					}
				}
			}
			return cmds
		})
		if err != nil {
			return fmt.Errorf("importing audit events: %w", err)
		}
	}
	return nil
}

// Audit implements storage.Store. A sorted-set member is the event's id (a
// storage.SortableID) followed by its JSON, scored by the time in
// microseconds, so events of one microsecond still order by id. Events are
// read newest first, in batches, between the query's time bounds. Ids
// order exactly like the events (score, then member), so both the cursor
// and the position between batches are "the last id seen": no offsets
// that a concurrent append could shift.
//
// A query for one contact reads that contact's index, for the events
// since the trail has had them (its member "!indexed"); older events, written
// before, are looked for in the trail.
func (s *Store) Audit(ctx context.Context, q storage.AuditQuery) ([]storage.AuditEvent, string, error) {
	limit := q.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	oldest := s.now().Add(-s.retention)
	lo := oldest
	if q.Since.After(lo) {
		lo = q.Since
	}
	hi := "+inf"
	if !q.Until.IsZero() {
		hi = micros(q.Until)
	}
	after := strings.ToLower(q.Cursor)
	if t, ok := storage.SortableIDTime(after); ok && (hi == "+inf" || t.UnixMicro() < q.Until.UnixMicro()) {
		hi = micros(t)
	}
	var out []storage.AuditEvent
	var err error
	trailFrom := lo
	if q.ContactID != "" {
		since, ok, err := s.indexedSince(ctx, q.Workspace)
		if err != nil {
			return nil, "", err
		}
		if ok {
			out, after, err = s.readAudit(ctx, s.contactAuditKey(q.Workspace, q.ContactID), q, later(lo, since), hi, after, limit+1, out)
			if err != nil {
				return nil, "", err
			}
			if len(out) > limit || !since.After(lo) {
				trailFrom = time.Time{} // the index held all there is to read
			} else if cur, err := strconv.ParseInt(hi, 10, 64); err != nil || since.UnixMicro() <= cur {
				hi = "(" + micros(since) // "+inf", or a bound past since
			}
		}
	}
	if !trailFrom.IsZero() {
		if out, _, err = s.readAudit(ctx, s.auditKey(q.Workspace), q, trailFrom, hi, after, limit+1, out); err != nil {
			return nil, "", err
		}
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// readAudit appends to out, newest first, the events of key matching q
// scored from lo to hi and older than the id after (when set), until out
// holds want events; it returns out and the last id seen.
func (s *Store) readAudit(ctx context.Context, key string, q storage.AuditQuery, lo time.Time, hi, after string, want int, out []storage.AuditEvent) ([]storage.AuditEvent, string, error) {
	batch := int64(max(want, 64))
	for len(out) < want {
		r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
			return b.Zrange().Key(key).Min(hi).Max(micros(lo)).Byscore().Rev().Limit(0, batch).Build()
		})
		if err != nil {
			return nil, "", err
		}
		members, err := r.AsStrSlice()
		if err != nil {
			return nil, "", err
		}
		progressed := false
		for _, m := range members {
			if len(m) <= storage.SortableIDLen || after != "" && m[:storage.SortableIDLen] >= after {
				continue
			}
			progressed, after = true, m[:storage.SortableIDLen]
			var e storage.AuditEvent
			if err := json.Unmarshal([]byte(m[storage.SortableIDLen:]), &e); err != nil {
				return nil, "", fmt.Errorf("redis: audit event: %w", err)
			}
			if e.Time.Before(lo) || !q.Until.IsZero() && !e.Time.Before(q.Until) {
				continue
			}
			if q.ContactID != "" && e.ContactID != q.ContactID || q.Event != "" && e.Event != q.Event {
				continue
			}
			if out = append(out, e); len(out) == want {
				break
			}
		}
		if int64(len(members)) < batch {
			break
		}
		if !progressed {
			// A whole batch within one microsecond, all seen: widen.
			batch *= 2
			continue
		}
		if t, ok := storage.SortableIDTime(after); ok {
			hi = micros(t)
		}
	}
	return out, after, nil
}

// indexedSince is when the trail of ws began to have contact indexes:
// events from then on are in them.
func (s *Store) indexedSince(ctx context.Context, ws string) (time.Time, bool, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
		return b.Zscore().Key(s.auditKey(ws)).Member(indexedMember).Build()
	})
	if rueidis.IsRedisNil(err) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	us, err := r.AsFloat64()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("redis: audit index marker: %w", err)
	}
	return time.UnixMicro(int64(us)), true, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
