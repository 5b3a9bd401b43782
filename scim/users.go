package scim

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	filter "github.com/scim2/filter-parser/v2"

	"github.com/kdesk/portalgate/storage"
)

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) error {
	p, err := paging(r)
	if err != nil {
		return err
	}
	f, err := parseFilter(r.URL.Query().Get("filter"))
	if err != nil {
		return err
	}
	cs, err := h.userCandidates(r.Context(), f)
	if err != nil {
		return err
	}
	var out []resource
	for _, c := range cs {
		if m := renderUser(c, h.location("Users", c.ID)); matches(f, m) {
			out = append(out, m)
		}
	}
	list(w, r, p, out)
	return nil
}

// userCandidates are the contacts a filter may match: one from an index
// for id eq and externalId eq, else all of them.
func (h *Handler) userCandidates(ctx context.Context, f filter.Expression) ([]storage.Contact, error) {
	if e, ok := f.(*filter.AttributeExpression); ok && e.Operator == filter.EQ && e.AttributePath.SubAttribute == nil &&
		(e.AttributePath.URIPrefix == nil || isCoreURN(e.AttributePath.URI())) {
		lit, _ := e.CompareValue.(string)
		var c storage.Contact
		var err error
		switch strings.ToLower(e.AttributePath.AttributeName) {
		case "id":
			c, err = h.Store.Contact(ctx, h.Workspace, lit)
		case "externalid":
			c, err = h.Store.ContactByDirectoryID(ctx, h.Workspace, lit)
		default:
			return h.Store.Contacts(ctx, h.Workspace)
		}
		if errors.Is(err, storage.ErrNotFound) || lit == "" {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []storage.Contact{c}, nil
	}
	return h.Store.Contacts(ctx, h.Workspace)
}

// contact is the contact of a User id, 404 when there is none.
func (h *Handler) contact(ctx context.Context, id string) (storage.Contact, error) {
	c, err := h.Store.Contact(ctx, h.Workspace, id)
	if errors.Is(err, storage.ErrNotFound) {
		return c, errorf(http.StatusNotFound, "", "no such User")
	}
	return c, err
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) error {
	c, err := h.contact(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	answer(w, r, http.StatusOK, renderUser(c, h.location("Users", c.ID)))
	return nil
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) error {
	m, err := readResource(w, r)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	c := storage.Contact{ID: newID()}
	c, err = h.writeUser(r, c, storage.Contact{}, m, h.Now())
	if err != nil {
		return err
	}
	answer(w, r, http.StatusCreated, renderUser(c, h.location("Users", c.ID)))
	return nil
}

func (h *Handler) replaceUser(w http.ResponseWriter, r *http.Request) error {
	m, err := readResource(w, r)
	if err != nil {
		return err
	}
	return h.updateUser(w, r, func(resource) (resource, error) { return m, nil })
}

func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) error {
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	p, err := decodePatch(b)
	if err != nil {
		return err
	}
	return h.updateUser(w, r, func(m resource) (resource, error) { return m, applyPatch(m, p.Operations) })
}

// updateUser changes an existing User: change gets the stored resource and
// returns the new one.
func (h *Handler) updateUser(w http.ResponseWriter, r *http.Request, change func(resource) (resource, error)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	old, err := h.contact(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := checkVersion(r, old.UpdatedAt); err != nil {
		return err
	}
	cur := storedUser(old)
	created := createdAt(cur, old.UpdatedAt)
	m, err := change(cur)
	if err != nil {
		return err
	}
	c, err := h.writeUser(r, old, old, m, created)
	if err != nil {
		return err
	}
	answer(w, r, http.StatusOK, renderUser(c, h.location("Users", c.ID)))
	return nil
}

// createdAt is the creation time kept in a stored resource's meta.
func createdAt(m resource, def time.Time) time.Time {
	if v, ok := get(m, "meta"); ok {
		if mm, ok := v.(resource); ok {
			if t, err := time.Parse(time.RFC3339Nano, getString(mm, "created")); err == nil {
				return t
			}
		}
	}
	return def
}

// writeUser stores resource m as contact c (old is the contact before,
// zero for a new one), with its status from active and the configured
// groups, and audits what changed.
func (h *Handler) writeUser(r *http.Request, c, old storage.Contact, m resource, created time.Time) (storage.Contact, error) {
	ctx := r.Context()
	f, err := checkUser(m)
	if err != nil {
		return c, err
	}
	if other, err := h.Store.ContactByEmail(ctx, h.Workspace, f.email); err == nil && other.ID != c.ID {
		return c, errorf(http.StatusConflict, Uniqueness, "another user has this email address")
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return c, err
	}
	if f.directoryID != "" {
		if other, err := h.Store.ContactByDirectoryID(ctx, h.Workspace, f.directoryID); err == nil && other.ID != c.ID {
			return c, errorf(http.StatusConflict, Uniqueness, "another user has this externalId")
		} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return c, err
		}
	}
	raw, err := encodeStored(m, created)
	if err != nil {
		return c, err
	}
	c.Email, c.Name, c.DirectoryID, c.Source, c.SCIM = f.email, f.name, f.directoryID, storage.SourceDirectory, raw
	allowed, err := h.admitted(ctx, c.ID)
	if err != nil {
		return c, err
	}
	c.Status = storage.StatusDisabled
	if f.active && allowed {
		c.Status = storage.StatusActive
	}
	if err := c.Normalize(); err != nil {
		return c, errorf(400, InvalidValue, err.Error())
	}
	return h.putContact(r, c, old)
}

// putContact writes c over old (zero for a new contact) and audits the
// change; a contact that loses its access goes through deprovision.
func (h *Handler) putContact(r *http.Request, c, old storage.Contact) (storage.Contact, error) {
	ctx := r.Context()
	var err error
	if old.Active() && !c.Active() {
		err = h.deprovision(ctx, c, false)
	} else {
		err = h.Store.PutContacts(ctx, h.Workspace, []storage.Contact{c})
	}
	if err != nil {
		if strings.Contains(err.Error(), "already belongs to") {
			return c, errorf(http.StatusConflict, Uniqueness, "another user has this email address")
		}
		return c, err
	}
	if stored, err := h.Store.Contact(ctx, h.Workspace, c.ID); err == nil {
		c = stored
	}
	h.auditChange(r, c, old)
	return c, nil
}

// deprovision ends a contact's access at once: it writes the contact
// disabled (or deletes it), and the store ends every session it has in
// that same operation, so a later re-activation revives none of them.
func (h *Handler) deprovision(ctx context.Context, c storage.Contact, del bool) error {
	if del {
		_, err := h.Store.DeleteContact(ctx, h.Workspace, c.ID)
		return err
	}
	c.Status = storage.StatusDisabled
	return h.Store.PutContacts(ctx, h.Workspace, []storage.Contact{c})
}

// auditChange records a provisioning change: the event says what kind,
// Reason what changed.
func (h *Handler) auditChange(r *http.Request, c, old storage.Contact) {
	var changes []string
	if old.ID != "" && old.Email != c.Email {
		changes = append(changes, "email "+c.Email+" (was "+old.Email+")")
	}
	if old.ID != "" && old.Status != c.Status {
		changes = append(changes, "status "+c.Status+" (was "+old.Status+")")
	}
	if old.ID != "" && old.Source != c.Source {
		changes = append(changes, "source "+c.Source+" (was "+old.Source+")")
	}
	event := EventChanged
	switch {
	case old.ID == "":
		event = EventProvisioned
		changes = append(changes, "status "+c.Status)
	case old.Active() && !c.Active():
		event = EventDeprovisioned
	case len(changes) == 0 && old.Name == c.Name && old.DirectoryID == c.DirectoryID:
		return // attributes only the directory reads changed
	}
	h.audit(r, storage.AuditEvent{Event: event, ContactID: c.ID, Email: c.Email, Reason: reason(changes)})
}

// reason is an audit event's Reason: what changed.
func reason(changes []string) string {
	return strings.Join(changes, "; ")
}

// Actor is the actor of every change made through SCIM.
const Actor = "scim"

func (h *Handler) audit(r *http.Request, e storage.AuditEvent) {
	e.Workspace, e.Actor = h.Workspace, Actor
	if h.Audit != nil {
		h.Audit(r, e)
	}
}

func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, err := h.contact(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := checkVersion(r, c.UpdatedAt); err != nil {
		return err
	}
	if err := h.deprovision(r.Context(), c, true); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return errorf(http.StatusNotFound, "", "no such User")
		}
		return err
	}
	h.audit(r, storage.AuditEvent{Event: EventDeleted, ContactID: c.ID, Email: c.Email, Reason: reason([]string{"deleted"})})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
