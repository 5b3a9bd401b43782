package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// AppendAudit implements storage.Store.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	now := s.now()
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	e.ID = storage.SortableID(e.Time)
	oldest := now.Add(-s.retention)
	if e.Time.Before(oldest) {
		return nil
	}
	doc, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := s.p + "audit:" + e.Workspace
	_, err = s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		return []rueidis.Completed{
			b.Zadd().Key(key).ScoreMember().ScoreMember(float64(e.Time.UnixMicro()), e.ID+string(doc)).Build(),
			b.Zremrangebyscore().Key(key).Min("-inf").Max("(" + micros(oldest)).Build(),
			b.Pexpire().Key(key).Milliseconds(px(s.retention + time.Hour)).Build(),
		}
	})
	return err
}

// Audit implements storage.Store. A sorted-set member is the event's id (a
// storage.SortableID) followed by its JSON, scored by the time in
// microseconds, so events of one microsecond still order by id. Events are
// read newest first, in batches, between the query's time bounds. Ids
// order exactly like the events (score, then member), so both the cursor
// and the position between batches are "the last id seen": no offsets
// that a concurrent append could shift.
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
	key := s.p + "audit:" + q.Workspace
	batch := int64(max(limit+1, 64))
	var out []storage.AuditEvent
	for len(out) <= limit {
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
			if out = append(out, e); len(out) > limit {
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
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}
