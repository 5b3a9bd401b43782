package scim

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// renderGroup is the Group a GET answers.
func renderGroup(g storage.Group, location string) resource {
	members := make([]any, len(g.Members))
	for i, id := range g.Members {
		members[i] = resource{"value": id, "type": "User"}
	}
	m := resource{
		"schemas":     []any{GroupSchema},
		"id":          g.ID,
		"displayName": g.DisplayName,
		"members":     members,
		"meta": resource{
			"resourceType": "Group",
			"lastModified": g.UpdatedAt.UTC().Format(time.RFC3339Nano),
			"location":     location,
			"version":      etag(g.UpdatedAt),
		},
	}
	if g.ExternalID != "" {
		m["externalId"] = g.ExternalID
	}
	return m
}

// checkGroup reads a Group resource into g, checking that every member is
// a User of the workspace.
func (h *Handler) checkGroup(ctx context.Context, g *storage.Group, m resource) error {
	g.DisplayName = oneLine(getString(m, "displayName"), 256)
	if g.DisplayName == "" {
		return errorf(400, InvalidValue, "displayName is required")
	}
	g.ExternalID = oneLine(getString(m, "externalId"), 256)
	g.Members = nil
	v, _ := get(m, "members")
	list, ok := v.([]any)
	if v != nil && !ok {
		return errorf(400, InvalidValue, "members must be a list")
	}
	for _, it := range list {
		obj, _ := it.(resource)
		id := getString(obj, "value")
		if id == "" {
			return errorf(400, InvalidValue, "each member needs a value")
		}
		if slices.Contains(g.Members, id) {
			continue
		}
		if _, err := h.Store.Contact(ctx, h.Workspace, id); errors.Is(err, storage.ErrNotFound) {
			return errorf(400, InvalidValue, "member "+id+" is not a User")
		} else if err != nil {
			return err
		}
		g.Members = append(g.Members, id)
	}
	return nil
}

func (h *Handler) group(ctx context.Context, id string) (storage.Group, error) {
	g, err := h.Store.Group(ctx, h.Workspace, id)
	if errors.Is(err, storage.ErrNotFound) {
		return g, errorf(http.StatusNotFound, "", "no such Group")
	}
	return g, err
}

func (h *Handler) listGroups(w http.ResponseWriter, r *http.Request) error {
	p, err := paging(r)
	if err != nil {
		return err
	}
	f, err := parseFilter(r.URL.Query().Get("filter"))
	if err != nil {
		return err
	}
	gs, err := h.Store.Groups(r.Context(), h.Workspace)
	if err != nil {
		return err
	}
	var out []resource
	for _, g := range gs {
		if m := renderGroup(g, h.location("Groups", g.ID)); matches(f, m) {
			out = append(out, m)
		}
	}
	list(w, r, p, out)
	return nil
}

func (h *Handler) getGroup(w http.ResponseWriter, r *http.Request) error {
	g, err := h.group(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	answer(w, r, http.StatusOK, renderGroup(g, h.location("Groups", g.ID)))
	return nil
}

func (h *Handler) createGroup(w http.ResponseWriter, r *http.Request) error {
	m, err := readResource(w, r)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	g := storage.Group{ID: newID(), Workspace: h.Workspace}
	if err := h.checkGroup(r.Context(), &g, m); err != nil {
		return err
	}
	gs, err := h.Store.Groups(r.Context(), h.Workspace)
	if err != nil {
		return err
	}
	for _, o := range gs {
		if strings.EqualFold(o.DisplayName, g.DisplayName) {
			return errorf(http.StatusConflict, Uniqueness, "a group with this displayName exists")
		}
	}
	g, err = h.writeGroup(r, g, storage.Group{})
	if err != nil {
		return err
	}
	answer(w, r, http.StatusCreated, renderGroup(g, h.location("Groups", g.ID)))
	return nil
}

func (h *Handler) replaceGroup(w http.ResponseWriter, r *http.Request) error {
	m, err := readResource(w, r)
	if err != nil {
		return err
	}
	return h.updateGroup(w, r, func(resource) (resource, error) { return m, nil })
}

func (h *Handler) patchGroup(w http.ResponseWriter, r *http.Request) error {
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	p, err := decodePatch(b)
	if err != nil {
		return err
	}
	return h.updateGroup(w, r, func(m resource) (resource, error) { return m, applyPatch(m, p.Operations) })
}

func (h *Handler) updateGroup(w http.ResponseWriter, r *http.Request, change func(resource) (resource, error)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	old, err := h.group(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := checkVersion(r, old.UpdatedAt); err != nil {
		return err
	}
	m, err := change(renderGroup(old, ""))
	if err != nil {
		return err
	}
	g := old
	if err := h.checkGroup(r.Context(), &g, m); err != nil {
		return err
	}
	g, err = h.writeGroup(r, g, old)
	if err != nil {
		return err
	}
	if r.Method == http.MethodPatch && r.URL.Query().Get("attributes") == "" {
		// Entra ID and Okta take 204 for a PATCH of a group; RFC 7644
		// allows either.
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	answer(w, r, http.StatusOK, renderGroup(g, h.location("Groups", g.ID)))
	return nil
}

// writeGroup stores g over old (zero for a new group), then brings the
// status of every contact whose membership changed in line.
func (h *Handler) writeGroup(r *http.Request, g, old storage.Group) (storage.Group, error) {
	if err := h.Store.PutGroup(r.Context(), g); err != nil {
		return g, err
	}
	if stored, err := h.Store.Group(r.Context(), h.Workspace, g.ID); err == nil {
		g = stored
	}
	return g, h.reconcile(r, affected(old, g))
}

func (h *Handler) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	g, err := h.group(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := checkVersion(r, g.UpdatedAt); err != nil {
		return err
	}
	if err := h.Store.DeleteGroup(r.Context(), h.Workspace, g.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if err := h.reconcile(r, affected(g, storage.Group{})); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// affected are the contacts whose access a change from old to g may move:
// every member of either, or none when neither is a configured group.
func affected(old, g storage.Group) []string {
	var out []string
	for _, id := range append(slices.Clone(old.Members), g.Members...) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// configured reports whether a group's display name is one the scim block
// names.
func (h *Handler) configured(name string) bool {
	for _, n := range h.Groups {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// admitted reports whether a contact may be active as far as groups go:
// always without configured groups, else only as a member of one.
func (h *Handler) admitted(ctx context.Context, contactID string) (bool, error) {
	if len(h.Groups) == 0 {
		return true, nil
	}
	gs, err := h.Store.Groups(ctx, h.Workspace)
	if err != nil {
		return false, err
	}
	for _, g := range gs {
		if h.configured(g.DisplayName) && slices.Contains(g.Members, contactID) {
			return true, nil
		}
	}
	return false, nil
}

// reconcile sets the status of each contact from its User's active and
// its groups: one that loses access is deprovisioned at once, one that
// gains it is active again.
func (h *Handler) reconcile(r *http.Request, ids []string) error {
	if len(h.Groups) == 0 {
		return nil
	}
	ctx := r.Context()
	for _, id := range ids {
		c, err := h.Store.Contact(ctx, h.Workspace, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		allowed, err := h.admitted(ctx, id)
		if err != nil {
			return err
		}
		active, _ := get(storedUser(c), "active")
		want := storage.StatusDisabled
		if allowed && active == true {
			want = storage.StatusActive
		}
		if want == c.Status {
			continue
		}
		next := c
		next.Status = want
		if _, err := h.putContact(r, next, c); err != nil {
			return err
		}
	}
	return nil
}
