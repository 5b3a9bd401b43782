package redisstore

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/kdesk/portalgate/storage"
)

// A workspace's contact ids are kept twice: in a set (ids), which the
// contact scripts have always written, and in a sorted set of equal
// scores (idz), which ZRANGE BYLEX reads in id order from any id on, so
// that a page of contacts costs the same in a workspace of a thousand or
// of a million. Every script that adds or removes an id does both.
// Workspaces written by a version without idz, or by an older instance
// during a rolling upgrade, are found out when the two differ in size
// (or idz names a contact that is gone): the page is then read the old
// way, and idz is rebuilt from ids in bounded steps.

// contactsPage reads up to ARGV[3] contacts from an id on, when idz
// agrees with ids. KEYS: ids, idz. ARGV: workspace key prefix, ZRANGE
// BYLEX bound, count. Returns {1, JSON...}, or {0} when idz is out of
// step.
//
//go:embed scripts/contacts_page.lua
var contactsPageLua string

var contactsPage = newScript(contactsPageLua)

// indexIDs brings idz in step with ids for a batch of ids. KEYS: ids,
// idz. ARGV: ids.
//
//go:embed scripts/index_ids.lua
var indexIDsLua string

var indexIDs = newScript(indexIDsLua)

// ContactsAfter implements storage.ContactPager.
func (s *Store) ContactsAfter(ctx context.Context, ws, after string, limit int) ([]storage.Contact, error) {
	pre := s.ws(ws)
	from := "-"
	if after != "" {
		from = "(" + after
	}
	for try := range 2 {
		r, err := s.run(ctx, contactsPage, []string{pre + "ids", pre + "idz"}, pre, from, fmt.Sprint(limit))
		if err != nil {
			return nil, err
		}
		vals, err := r.ToArray()
		if err != nil || len(vals) == 0 {
			return nil, fmt.Errorf("redis: contacts page: unexpected reply: %v", err)
		}
		if ok, _ := vals[0].AsInt64(); ok == 1 {
			out := make([]storage.Contact, 0, len(vals)-1)
			for _, v := range vals[1:] {
				raw, err := v.ToString()
				if err != nil {
					return nil, err
				}
				c, err := decodeContact(raw)
				if err != nil {
					return nil, err
				}
				out = append(out, c)
			}
			return out, nil
		}
		if try == 0 {
			if err := s.indexContactIDs(ctx, ws); err != nil {
				return nil, err
			}
		}
	}
	// Still out of step (an older instance writing meanwhile): the whole
	// list, cut.
	all, err := s.Contacts(ctx, ws)
	if err != nil {
		return nil, err
	}
	return storage.ContactsFrom(all, after, limit), nil
}

// indexContactIDs rebuilds a workspace's idz from its ids: every id of
// the set is added (SSCAN, then a script per thousand), then every id of
// idz that is no longer in the set is removed (ZSCAN, likewise).
func (s *Store) indexContactIDs(ctx context.Context, ws string) error {
	pre := s.ws(ws)
	keys := []string{pre + "ids", pre + "idz"}
	for _, sorted := range []bool{false, true} {
		for cursor := uint64(0); ; {
			r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
				if sorted {
					return b.Zscan().Key(keys[1]).Cursor(cursor).Count(listBatch).Build()
				}
				return b.Sscan().Key(keys[0]).Cursor(cursor).Count(listBatch).Build()
			})
			if err != nil {
				return err
			}
			e, err := r.AsScanEntry()
			if err != nil {
				return err
			}
			ids := e.Elements
			if sorted { // member, score, member, score, …
				ids = make([]string, 0, len(e.Elements)/2)
				for i := 0; i < len(e.Elements); i += 2 {
					ids = append(ids, e.Elements[i])
				}
			}
			if len(ids) > 0 {
				if _, err := s.run(ctx, indexIDs, keys, ids...); err != nil {
					return err
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	s.log.Info("contact id index rebuilt", zap.String("workspace", ws))
	return nil
}

// Interface guards
var _ storage.ContactPager = (*Store)(nil)
