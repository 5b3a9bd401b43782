package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// Links live in the workspace's hash tag: {ws:W}:l:<id> is a hash (doc =
// the link's JSON as made, e = expiry in unix µs, c = contact id, o =
// opens, l = last opened, RFC 3339), {ws:W}:links and {ws:W}:li:<contact
// id> index the ids, scored by expiry. Every change is one script.

func (s *Store) linkKey(ws, id string) string { return s.ws(ws) + "l:" + id }

// putLink stores a link and indexes it, dropping expired index entries.
//
//go:embed scripts/put_link.lua
var putLinkLua string

var putLink = newScript(putLinkLua)

// openLink counts an open of a live link.
//
//go:embed scripts/open_link.lua
var openLinkLua string

var openLink = newScript(openLinkLua)

// deleteLink revokes one link.
//
//go:embed scripts/delete_link.lua
var deleteLinkLua string

var deleteLink = newScript(deleteLinkLua)

// deleteContactLinks revokes every link of a contact.
//
//go:embed scripts/delete_contact_links.lua
var deleteContactLinksLua string

var deleteContactLinks = newScript(deleteContactLinksLua)

// PutLink implements storage.Store.
func (s *Store) PutLink(ctx context.Context, l storage.PortalLink) error {
	now := s.now()
	ttl := l.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return errors.New("link already expired")
	}
	l.Opens, l.LastOpenedAt = 0, time.Time{}
	doc, err := json.Marshal(l)
	if err != nil {
		return err
	}
	pre := s.ws(l.Workspace)
	_, err = s.run(ctx, putLink, []string{s.linkKey(l.Workspace, l.ID), pre + "links", pre + "li:" + l.ContactID},
		string(doc), micros(l.ExpiresAt), pxString(ttl+time.Second), l.ID, micros(now), l.ContactID)
	return err
}

// decodeLink makes a link of its stored JSON, opens and last-open time.
func decodeLink(doc string, opens int64, last string) (storage.PortalLink, error) {
	var l storage.PortalLink
	if err := json.Unmarshal([]byte(doc), &l); err != nil {
		return storage.PortalLink{}, fmt.Errorf("redis: link: %w", err)
	}
	l.Opens = int(opens)
	if last != "" {
		t, err := time.Parse(time.RFC3339Nano, last)
		if err != nil {
			return storage.PortalLink{}, fmt.Errorf("redis: link last opened: %w", err)
		}
		l.LastOpenedAt = t
	}
	return l, nil
}

// readLinks reads links by id in one pipeline; missing ones are left out.
func (s *Store) readLinks(ctx context.Context, ws string, ids []string) ([]storage.PortalLink, error) {
	rs, err := s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		cmds := make([]rueidis.Completed, len(ids))
		for i, id := range ids {
			cmds[i] = b.Hmget().Key(s.linkKey(ws, id)).Field("doc", "o", "l").Build()
		}
		return cmds
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []storage.PortalLink
	for _, r := range rs {
		vs, err := r.ToArray()
		if err != nil || len(vs) != 3 {
			continue
		}
		doc, err := vs[0].ToString()
		if err != nil {
			continue // gone
		}
		opens, _ := vs[1].AsInt64()
		last, _ := vs[2].ToString()
		l, err := decodeLink(doc, opens, last)
		if err != nil {
			return nil, err
		}
		if l.Workspace == ws && l.Live(now) {
			out = append(out, l)
		}
	}
	return out, nil
}

// Link implements storage.Store.
func (s *Store) Link(ctx context.Context, ws, id string) (storage.PortalLink, error) {
	ls, err := s.readLinks(ctx, ws, []string{id})
	if err != nil {
		return storage.PortalLink{}, err
	}
	if len(ls) == 0 {
		return storage.PortalLink{}, storage.ErrNotFound
	}
	return ls[0], nil
}

// Links implements storage.Store.
func (s *Store) Links(ctx context.Context, ws, contactID string) ([]storage.PortalLink, error) {
	idx := s.ws(ws) + "links"
	if contactID != "" {
		idx = s.ws(ws) + "li:" + contactID
	}
	now := s.now()
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
		return b.Zrange().Key(idx).Min("(" + micros(now)).Max("+inf").Byscore().Build()
	})
	if err != nil {
		return nil, err
	}
	ids, err := r.AsStrSlice()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	out, err := s.readLinks(ctx, ws, ids)
	if err != nil {
		return nil, err
	}
	if contactID != "" {
		kept := out[:0]
		for _, l := range out {
			if l.ContactID == contactID {
				kept = append(kept, l)
			}
		}
		out = kept
	}
	storage.SortLinks(out)
	return out, nil
}

// DeleteLink implements storage.Store.
func (s *Store) DeleteLink(ctx context.Context, ws, id string) error {
	r, err := s.run(ctx, deleteLink, []string{s.linkKey(ws, id), s.ws(ws) + "links"}, micros(s.now()), id, s.ws(ws))
	if err != nil {
		return err
	}
	if n, _ := r.AsInt64(); n != 1 {
		return storage.ErrNotFound
	}
	return nil
}

// DeleteContactLinks implements storage.Store.
func (s *Store) DeleteContactLinks(ctx context.Context, ws, contactID string) (int, error) {
	r, err := s.run(ctx, deleteContactLinks, []string{s.ws(ws) + "li:" + contactID, s.ws(ws) + "links"},
		micros(s.now()), s.ws(ws)+"l:")
	if err != nil {
		return 0, err
	}
	n, err := r.AsInt64()
	return int(n), err
}

// OpenLink implements storage.Store.
func (s *Store) OpenLink(ctx context.Context, ws, id string) (storage.PortalLink, error) {
	now := s.now().UTC()
	r, err := s.run(ctx, openLink, []string{s.linkKey(ws, id)}, micros(now), now.Format(time.RFC3339Nano))
	if rueidis.IsRedisNil(err) {
		return storage.PortalLink{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.PortalLink{}, err
	}
	vs, err := r.ToArray()
	if err != nil || len(vs) != 3 {
		return storage.PortalLink{}, fmt.Errorf("redis: open link: unexpected reply: %v", err)
	}
	doc, _ := vs[0].ToString()
	opens, _ := vs[1].AsInt64()
	last, _ := vs[2].ToString()
	l, err := decodeLink(doc, opens, last)
	if err != nil {
		return storage.PortalLink{}, err
	}
	if l.Workspace != ws {
		return storage.PortalLink{}, storage.ErrNotFound
	}
	return l, nil
}
