package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"

	"github.com/kdesk/portalgate/storage"
)

// Directory groups: {ws:W}:g:<id> holds the group (JSON), {ws:W}:gids the
// set of group ids. Both share the workspace's hash tag.

// putGroup writes a group and adds its id to the set. KEYS: group, id
// set. ARGV: id, JSON.
//
//go:embed scripts/put_group.lua
var putGroupLua string

var putGroup = newScript(putGroupLua)

// deleteGroup removes a group and its id. KEYS: group, id set. ARGV: id.
// Returns 1, or 0 when there was no such group.
//
//go:embed scripts/delete_group.lua
var deleteGroupLua string

var deleteGroup = newScript(deleteGroupLua)

func (s *Store) groupKey(ws, id string) string { return s.ws(ws) + "g:" + id }

// PutGroup implements storage.Store.
func (s *Store) PutGroup(ctx context.Context, g storage.Group) error {
	g.UpdatedAt = s.now().UTC()
	doc, err := json.Marshal(g)
	if err != nil {
		return err
	}
	_, err = s.run(ctx, putGroup, []string{s.groupKey(g.Workspace, g.ID), s.ws(g.Workspace) + "gids"}, g.ID, string(doc))
	return err
}

// Group implements storage.Store.
func (s *Store) Group(ctx context.Context, ws, id string) (storage.Group, error) {
	raw, ok, err := s.getString(ctx, s.groupKey(ws, id))
	if err != nil {
		return storage.Group{}, err
	}
	if !ok {
		return storage.Group{}, storage.ErrNotFound
	}
	var g storage.Group
	if err := json.Unmarshal([]byte(raw), &g); err != nil {
		return storage.Group{}, fmt.Errorf("redis: group %s: %w", id, err)
	}
	return g, nil
}

// Groups implements storage.Store.
func (s *Store) Groups(ctx context.Context, ws string) ([]storage.Group, error) {
	return listJSON[storage.Group](ctx, s, s.ws(ws)+"gids", func(id string) string { return s.groupKey(ws, id) }, "group")
}

// DeleteGroup implements storage.Store.
func (s *Store) DeleteGroup(ctx context.Context, ws, id string) error {
	r, err := s.run(ctx, deleteGroup, []string{s.groupKey(ws, id), s.ws(ws) + "gids"}, id)
	if err != nil {
		return err
	}
	if n, err := r.AsInt64(); err != nil {
		return err
	} else if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}
