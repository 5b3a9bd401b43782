package module

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/kdesk/portalgate/handlers"
	"github.com/kdesk/portalgate/storage"
)

func init() {
	caddy.RegisterModule(new(AdminAPI))
}

// AdminAPI is the admin.api.portal module: contacts, links, sessions and
// the audit trail of each workspace, on Caddy's admin endpoint under
// /portal/workspaces/{ws}/.
type AdminAPI struct {
	// ctx is the context of the config the admin endpoint was set up
	// with: its portal app is the one the calls reach.
	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (*AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.portal",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision keeps the config's context; Caddy sets up the admin endpoint
// anew with each config it loads.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	return nil
}

// Routes returns the admin routes.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/portal/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// app is the running portal app of the admin endpoint's config, or nil.
func (a *AdminAPI) app() *App {
	v, err := a.ctx.AppIfConfigured("portal")
	if err != nil {
		return nil
	}
	app, _ := v.(*App)
	return app
}

// maxAdminBody bounds admin request bodies (bulk contact imports).
const maxAdminBody = 32 << 20

func apiErr(status int, format string, a ...any) error {
	err := fmt.Errorf(format, a...)
	return caddy.APIError{HTTPStatus: status, Err: err, Message: err.Error()}
}

func (adm *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/portal/"), "/"), "/")
	if len(parts) < 3 || parts[0] != "workspaces" {
		return apiErr(http.StatusNotFound, "no such portal resource: %s (want /portal/workspaces/{ws}/contacts|links|sessions|audit)", r.URL.Path)
	}
	a := adm.app()
	if a == nil {
		return apiErr(http.StatusServiceUnavailable, "the portal app is not running")
	}
	ws, ok := a.portal.Workspaces[parts[1]]
	if !ok {
		return apiErr(http.StatusNotFound, "unknown workspace %q", parts[1])
	}
	store := a.portal.Store()
	if store == nil {
		return apiErr(http.StatusServiceUnavailable, "portal storage is not open")
	}
	api := adminCall{app: a, ws: ws, store: store}
	switch {
	case parts[2] == "contacts" && len(parts) == 3:
		switch r.Method {
		case http.MethodGet:
			return api.listContacts(w, r)
		case http.MethodPut, http.MethodPost:
			return api.putContacts(w, r)
		}
	case parts[2] == "contacts" && len(parts) == 4:
		switch r.Method {
		case http.MethodGet:
			return api.getContact(w, r, parts[3])
		case http.MethodDelete:
			return api.deleteContact(w, r, parts[3])
		}
	case parts[2] == "links" && len(parts) == 3:
		switch r.Method {
		case http.MethodPost:
			return api.mintLink(w, r)
		case http.MethodGet:
			return api.listLinks(w, r)
		case http.MethodDelete:
			return api.revokeContactLinks(w, r)
		}
	case parts[2] == "links" && len(parts) == 4:
		switch r.Method {
		case http.MethodGet:
			return api.getLink(w, r, parts[3])
		case http.MethodDelete:
			return api.revokeLink(w, r, parts[3])
		}
	case parts[2] == "sessions" && len(parts) == 3:
		switch r.Method {
		case http.MethodGet:
			return api.listSessions(w, r)
		case http.MethodDelete:
			return api.revokeSessions(w, r)
		}
	case parts[2] == "audit" && len(parts) == 3:
		if r.Method == http.MethodGet {
			return api.audit(w, r)
		}
	default:
		return apiErr(http.StatusNotFound, "no such portal resource: %s", r.URL.Path)
	}
	return apiErr(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
}

type adminCall struct {
	app   *App
	ws    *handlers.Workspace
	store storage.Store
}

func (c adminCall) storeErr(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return apiErr(http.StatusNotFound, "not found")
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err, Message: "storage error: " + err.Error()}
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// listContacts answers every contact as a JSON array, or, with limit (1 to
// 1000) or cursor, one page by id: {"contacts", "next_cursor"}, the cursor
// empty on the last page.
func (c adminCall) listContacts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Has("limit") || q.Has("cursor") {
		limit := 100
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return apiErr(http.StatusBadRequest, "limit %q: want 1 to 1000", v)
			}
			limit = n
		}
		cs, next, err := storage.ContactsPage(r.Context(), c.store, c.ws.Name, q.Get("cursor"), limit)
		if err != nil {
			return c.storeErr(err)
		}
		if cs == nil {
			cs = []storage.Contact{}
		}
		return writeAdminJSON(w, http.StatusOK, map[string]any{"contacts": cs, "next_cursor": next})
	}
	cs, err := c.store.Contacts(r.Context(), c.ws.Name)
	if err != nil {
		return c.storeErr(err)
	}
	if cs == nil {
		cs = []storage.Contact{}
	}
	return writeAdminJSON(w, http.StatusOK, cs)
}

// putContacts upserts contacts from a JSON array, or from CSV (Content-Type
// text/csv) with a header row naming the fields. Nothing is written unless
// every record is valid. With ?mode=replace&source=S the batch is the
// whole of source S (an authoritative sync from the customer's
// directory): each contact is written as of S, and every contact of S it
// leaves out is disabled and signed out, in one store call.
func (c adminCall) putContacts(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var set storage.ContactSet
	switch mode := q.Get("mode"); mode {
	case "", "upsert":
		if q.Has("source") {
			return apiErr(http.StatusBadRequest, "source is for mode=replace; nothing was imported")
		}
	case "replace":
		set.Source = q.Get("source")
		if err := set.Validate(); err != nil {
			return apiErr(http.StatusBadRequest, "mode=replace needs source=directory or source=manual (%v); nothing was imported", err)
		}
	default:
		return apiErr(http.StatusBadRequest, "mode %q: must be upsert or replace; nothing was imported", mode)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		return apiErr(http.StatusRequestEntityTooLarge, "reading body: %v", err)
	}
	var cs []storage.Contact
	if strings.HasPrefix(r.Header.Get("Content-Type"), "text/csv") {
		cs, err = storage.ParseContactsCSV(body)
	} else {
		cs, err = storage.ParseContactsJSON(body)
	}
	if err != nil {
		return apiErr(http.StatusBadRequest, "%v; nothing was imported", err)
	}
	// The contacts as they were, to audit what the import changed.
	before, err := c.store.Contacts(r.Context(), c.ws.Name)
	if err != nil {
		return c.storeErr(err)
	}
	if set.Source != "" {
		res, err := c.store.ReplaceContacts(r.Context(), c.ws.Name, set, cs)
		if err != nil {
			if errors.Is(err, storage.ErrUnavailable) {
				return c.storeErr(err)
			}
			return apiErr(http.StatusBadRequest, "%v; nothing was imported", err)
		}
		after, err := c.store.Contacts(r.Context(), c.ws.Name)
		if err != nil {
			return c.storeErr(err)
		}
		c.auditImport(r, before, after, len(cs), fmt.Sprintf("mode=replace source=%s: %d upserted, %d disabled, %d unchanged",
			set.Source, res.Upserted, res.Disabled, res.Unchanged))
		return writeAdminJSON(w, http.StatusOK, res)
	}
	if err := c.store.PutContacts(r.Context(), c.ws.Name, cs); err != nil {
		if errors.Is(err, storage.ErrUnavailable) {
			return c.storeErr(err)
		}
		return apiErr(http.StatusBadRequest, "%v; nothing was imported", err)
	}
	c.auditImport(r, before, cs, len(cs), "")
	return writeAdminJSON(w, http.StatusOK, map[string]int{"upserted": len(cs)})
}

// auditImport records contacts_imported (for n contacts sent, with the
// summary, or one of its own when summary is empty), and contact_changed
// for each contact whose status or email the import changed, of those in
// after.
func (c adminCall) auditImport(r *http.Request, before, after []storage.Contact, n int, summary string) {
	old := make(map[string]storage.Contact, len(before))
	for _, ct := range before {
		old[ct.ID] = ct
	}
	who := actor(r)
	added, changed := 0, 0
	for _, ct := range after {
		prev, ok := old[ct.ID]
		if !ok {
			added++
			continue
		}
		var what []string
		if prev.Status != ct.Status {
			what = append(what, fmt.Sprintf("status %s -> %s", prev.Status, ct.Status))
		}
		if prev.Email != ct.Email {
			what = append(what, fmt.Sprintf("email %s -> %s", prev.Email, ct.Email))
		}
		if len(what) == 0 {
			continue
		}
		changed++
		c.app.portal.Audit(r.Context(), storage.AuditEvent{Workspace: c.ws.Name, Event: handlers.EventContactChanged,
			ContactID: ct.ID, Email: ct.Email, Actor: who, Reason: strings.Join(what, "; ")})
	}
	if summary == "" {
		summary = fmt.Sprintf("%d contacts: %d new, %d with a new status or email", n, added, changed)
	}
	c.app.portal.Audit(r.Context(), storage.AuditEvent{Workspace: c.ws.Name, Event: handlers.EventContactsImported,
		Actor: who, Count: n, Reason: summary})
}

func (c adminCall) getContact(w http.ResponseWriter, r *http.Request, id string) error {
	ct, err := c.store.Contact(r.Context(), c.ws.Name, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return apiErr(http.StatusNotFound, "no contact %q in workspace %s", id, c.ws.Name)
		}
		return c.storeErr(err)
	}
	return writeAdminJSON(w, http.StatusOK, ct)
}

func (c adminCall) deleteContact(w http.ResponseWriter, r *http.Request, id string) error {
	// The contact's sessions end in the same store operation.
	n, err := c.store.DeleteContact(r.Context(), c.ws.Name, id)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return apiErr(http.StatusNotFound, "no contact %q in workspace %s", id, c.ws.Name)
		}
		return c.storeErr(err)
	}
	links, err := c.store.DeleteContactLinks(r.Context(), c.ws.Name, id)
	if err != nil {
		return c.storeErr(err)
	}
	c.app.portal.Audit(r.Context(), storage.AuditEvent{Workspace: c.ws.Name, Event: handlers.EventContactDeleted,
		ContactID: id, Actor: actor(r), Reason: fmt.Sprintf("%d sessions ended, %d links revoked", n, links)})
	return writeAdminJSON(w, http.StatusOK, map[string]any{"deleted": id, "sessions_ended": n, "links_revoked": links})
}

func (c adminCall) mintLink(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		ContactID string `json:"contact_id"`
		Email     string `json:"email"`
		ReturnTo  string `json:"return_to"`
		TTL       string `json:"ttl"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiErr(http.StatusBadRequest, "want a JSON object {\"contact_id\" or \"email\", \"return_to\", \"ttl\"}: %v", err)
	}
	if req.ContactID == "" && req.Email == "" {
		return apiErr(http.StatusBadRequest, "contact_id or email is required")
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := caddy.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return apiErr(http.StatusBadRequest, "ttl %q: want a duration such as 72h or 7d", req.TTL)
		}
		ttl = d
	}
	link, err := c.app.portal.MintLink(r.Context(), c.ws.Name, handlers.LinkRequest{
		ContactID: req.ContactID, Email: req.Email, ReturnTo: req.ReturnTo, TTL: ttl, CreatedBy: actor(r),
	})
	var ie *handlers.InputError
	switch {
	case errors.As(err, &ie):
		return apiErr(http.StatusBadRequest, "%s", ie.Msg)
	case err != nil:
		return c.storeErr(err)
	}
	return writeAdminJSON(w, http.StatusCreated, link)
}

// linkView is a link as the admin API shows it.
type linkView struct {
	ID           string    `json:"id"`
	ContactID    string    `json:"contact_id"`
	ReturnTo     string    `json:"return_to"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	CreatedBy    string    `json:"created_by,omitempty"`
	Opens        int       `json:"opens"`
	LastOpenedAt time.Time `json:"last_opened_at,omitzero"`
}

func viewLink(l storage.PortalLink) linkView {
	return linkView{ID: l.ID, ContactID: l.ContactID, ReturnTo: l.ReturnTo, CreatedAt: l.CreatedAt, ExpiresAt: l.ExpiresAt,
		CreatedBy: l.CreatedBy, Opens: l.Opens, LastOpenedAt: l.LastOpenedAt}
}

// validLinkID reports whether id has the form of a link id (32 hex
// digits), so nothing else reaches the store.
func validLinkID(id string) bool { return len(id) == 32 && isHex(id) }

func (c adminCall) listLinks(w http.ResponseWriter, r *http.Request) error {
	ls, err := c.store.Links(r.Context(), c.ws.Name, r.URL.Query().Get("contact_id"))
	if err != nil {
		return c.storeErr(err)
	}
	out := make([]linkView, 0, len(ls))
	for _, l := range ls {
		out = append(out, viewLink(l))
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

func (c adminCall) getLink(w http.ResponseWriter, r *http.Request, id string) error {
	if !validLinkID(id) {
		return apiErr(http.StatusNotFound, "no link %q in workspace %s", id, c.ws.Name)
	}
	l, err := c.store.Link(r.Context(), c.ws.Name, id)
	if errors.Is(err, storage.ErrNotFound) {
		return apiErr(http.StatusNotFound, "no live link %q in workspace %s", id, c.ws.Name)
	}
	if err != nil {
		return c.storeErr(err)
	}
	return writeAdminJSON(w, http.StatusOK, viewLink(l))
}

// revokeLink revokes one link at once.
func (c adminCall) revokeLink(w http.ResponseWriter, r *http.Request, id string) error {
	if !validLinkID(id) {
		return apiErr(http.StatusNotFound, "no link %q in workspace %s", id, c.ws.Name)
	}
	// Read for the audit entry's contact only; DeleteLink itself says
	// whether there was a live link to revoke.
	l, err := c.store.Link(r.Context(), c.ws.Name, id)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return c.storeErr(err)
	}
	if err := c.store.DeleteLink(r.Context(), c.ws.Name, id); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return apiErr(http.StatusNotFound, "no live link %q in workspace %s", id, c.ws.Name)
		}
		return c.storeErr(err)
	}
	c.app.portal.Audit(r.Context(), storage.AuditEvent{Workspace: c.ws.Name, Event: handlers.EventLinkRevoked,
		ContactID: l.ContactID, Method: "link", Actor: actor(r), Reason: "link " + id, Count: 1})
	return writeAdminJSON(w, http.StatusOK, map[string]any{"revoked": 1, "id": id})
}

// revokeContactLinks revokes every link of a contact at once.
func (c adminCall) revokeContactLinks(w http.ResponseWriter, r *http.Request) error {
	id := r.URL.Query().Get("contact_id")
	if id == "" {
		return apiErr(http.StatusBadRequest, "contact_id is required: DELETE /portal/workspaces/%s/links?contact_id=ID, or DELETE links/{id} for one link", c.ws.Name)
	}
	n, err := c.store.DeleteContactLinks(r.Context(), c.ws.Name, id)
	if err != nil {
		return c.storeErr(err)
	}
	c.app.portal.Audit(r.Context(), storage.AuditEvent{Workspace: c.ws.Name, Event: handlers.EventLinkRevoked,
		ContactID: id, Method: "link", Actor: actor(r), Reason: strconv.Itoa(n) + " links of the contact", Count: n})
	return writeAdminJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

// sessionView is a session as the admin API shows it: never its id.
type sessionView struct {
	ContactID string    `json:"contact_id"`
	Method    string    `json:"method"`
	ClientIP  string    `json:"client_ip,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (c adminCall) listSessions(w http.ResponseWriter, r *http.Request) error {
	ss, err := c.store.Sessions(r.Context(), c.ws.Name, r.URL.Query().Get("contact_id"))
	if err != nil {
		return c.storeErr(err)
	}
	out := make([]sessionView, 0, len(ss))
	for _, s := range ss {
		out = append(out, sessionView{ContactID: s.ContactID, Method: s.Method, ClientIP: s.ClientIP, UserAgent: s.UserAgent,
			CreatedAt: s.CreatedAt, LastSeen: s.LastSeen, ExpiresAt: s.Expiry()})
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

func (c adminCall) revokeSessions(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	id := q.Get("contact_id")
	all := q.Get("all") == "1"
	if id == "" && !all || id != "" && all {
		return apiErr(http.StatusBadRequest, "say whose sessions: DELETE /portal/workspaces/%s/sessions?contact_id=ID, or ?all=1 for every session of the workspace", c.ws.Name)
	}
	var n int
	if all {
		// Every contact that has a session, each in one store call: after
		// a leaked secret, with the new secret in place, this signs
		// everyone out.
		sessions, err := c.store.Sessions(r.Context(), c.ws.Name, "")
		if err != nil {
			return c.storeErr(err)
		}
		done := map[string]bool{}
		for _, s := range sessions {
			if done[s.ContactID] {
				continue
			}
			done[s.ContactID] = true
			k, err := c.store.DeleteContactSessions(r.Context(), c.ws.Name, s.ContactID)
			if err != nil {
				return c.storeErr(err)
			}
			n += k
		}
	} else {
		var err error
		if n, err = c.store.DeleteContactSessions(r.Context(), c.ws.Name, id); err != nil {
			return c.storeErr(err)
		}
	}
	c.app.portal.Audit(r.Context(), storage.AuditEvent{Workspace: c.ws.Name, Event: handlers.EventSessionsRevoked,
		ContactID: id, Method: "admin", Actor: actor(r), Count: n, Reason: strconv.Itoa(n) + " sessions"})
	return writeAdminJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

func (c adminCall) audit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	aq := storage.AuditQuery{Workspace: c.ws.Name, ContactID: q.Get("contact_id"), Event: q.Get("event"), Cursor: q.Get("cursor")}
	if aq.Event != "" {
		if err := handlers.CheckEventName(aq.Event); err != nil {
			return apiErr(http.StatusBadRequest, "%v", err)
		}
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return apiErr(http.StatusBadRequest, "%s %q: want an RFC 3339 time such as 2026-11-25T08:00:00Z", p.name, v)
			}
			*p.dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return apiErr(http.StatusBadRequest, "limit %q: want 1 to 1000", v)
		}
		aq.Limit = n
	}
	if aq.Cursor != "" && !isHex(aq.Cursor) {
		return apiErr(http.StatusBadRequest, "cursor %q is not valid", aq.Cursor)
	}
	if f := q.Get("format"); f != "" {
		return c.exportAudit(w, r, aq, f, q.Has("limit"))
	}
	events, next, err := c.store.Audit(r.Context(), aq)
	if err != nil {
		return c.storeErr(err)
	}
	if events == nil {
		events = []storage.AuditEvent{}
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"events": events, "next_cursor": next})
}

// actor names the admin caller as Caddy identifies it: the subject of its
// client certificate (remote admin), else its remote address.
func actor(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return r.TLS.PeerCertificates[0].Subject.String()
	}
	if r.RemoteAddr != "" {
		return r.RemoteAddr
	}
	return "admin"
}

// exportAudit streams the whole filtered range (GET audit?format=).
// Everything is checked before the first byte: once the answer has
// started, a storage error can only cut it short, which the client sees
// as a broken transfer, never as a complete file.
func (c adminCall) exportAudit(w http.ResponseWriter, r *http.Request, aq storage.AuditQuery, format string, limited bool) error {
	ctype, ok := exportFormats[format]
	if !ok {
		return apiErr(http.StatusBadRequest, "format %q: want ndjson or csv", format)
	}
	if limited {
		return apiErr(http.StatusBadRequest, "limit does not apply to format=%s: an export is the whole filtered range (narrow it with since and until)", format)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="audit-%s.%s"`, c.ws.Name, format))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	n, err := exportAudit(r.Context(), c.store, aq, format, w, func() { _ = rc.Flush() })
	if err != nil {
		c.app.logger.Error("audit export cut short", zap.String("workspace", c.ws.Name), zap.Int("events_written", n), zap.Error(err))
		panic(http.ErrAbortHandler)
	}
	return nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 64
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)
