package scim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// Store is what the service provider needs of storage: contacts, groups,
// and ending a contact's sessions.
type Store interface {
	storage.Contacts
	storage.Groups
	// DeleteContactSessions ends every session of a contact.
	DeleteContactSessions(ctx context.Context, workspace, contactID string) (int, error)
}

// MaxBody is the largest request body accepted, 1 MiB.
const MaxBody = 1 << 20

// Handler serves one workspace's SCIM endpoints under Prefix. The caller
// has authenticated the request already.
type Handler struct {
	// Store holds the workspace's contacts and groups.
	Store Store
	// Workspace names the workspace.
	Workspace string
	// Prefix is the path the endpoints live under, like
	// "/_portal/scim/v2"; Users is then Prefix+"/Users".
	Prefix string
	// BaseURL, when set, is the public URL of Prefix, for the location of
	// each resource; default: Prefix itself.
	BaseURL string
	// Groups, when set, are the display names of the groups whose members
	// alone are active contacts.
	Groups []string
	// Audit records a provisioning event; the caller adds who sent the
	// request.
	Audit func(r *http.Request, e storage.AuditEvent)
	// Now is the clock; default time.Now.
	Now func() time.Time

	// mu serializes this instance's writes, each of which reads a record
	// and writes it back.
	mu       sync.Mutex
	initOnce sync.Once
	mux      *http.ServeMux
}

// Audit event names.
const (
	EventProvisioned   = "contact_provisioned"
	EventChanged       = "contact_changed"
	EventDeprovisioned = "contact_deprovisioned"
	EventDeleted       = "contact_deleted"
)

// ServeHTTP answers one SCIM request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.initOnce.Do(h.init)
	h.mux.ServeHTTP(w, r)
}

type route func(w http.ResponseWriter, r *http.Request) error

func (h *Handler) init() {
	if h.Now == nil {
		h.Now = time.Now
	}
	p := h.Prefix
	mux := http.NewServeMux()
	handle := func(pattern string, fn route) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := fn(w, r); err != nil {
				h.fail(w, err)
			}
		})
	}
	handle("GET "+p+"/Users", h.listUsers)
	handle("POST "+p+"/Users", h.createUser)
	handle("GET "+p+"/Users/{id}", h.getUser)
	handle("PUT "+p+"/Users/{id}", h.replaceUser)
	handle("PATCH "+p+"/Users/{id}", h.patchUser)
	handle("DELETE "+p+"/Users/{id}", h.deleteUser)
	handle("GET "+p+"/Groups", h.listGroups)
	handle("POST "+p+"/Groups", h.createGroup)
	handle("GET "+p+"/Groups/{id}", h.getGroup)
	handle("PUT "+p+"/Groups/{id}", h.replaceGroup)
	handle("PATCH "+p+"/Groups/{id}", h.patchGroup)
	handle("DELETE "+p+"/Groups/{id}", h.deleteGroup)
	handle("GET "+p+"/ServiceProviderConfig", h.serviceProviderConfig)
	handle("GET "+p+"/ResourceTypes", h.resourceTypes)
	handle("GET "+p+"/ResourceTypes/{name}", h.resourceType)
	handle("GET "+p+"/Schemas", h.schemas)
	handle("GET "+p+"/Schemas/{urn}", h.schema)
	for _, path := range []string{"/Users", "/Users/{id}", "/Groups", "/Groups/{id}", "/ServiceProviderConfig", "/ResourceTypes", "/Schemas"} {
		handle(p+path, func(http.ResponseWriter, *http.Request) error {
			return errorf(http.StatusMethodNotAllowed, "", "method not allowed")
		})
	}
	handle(p+"/", func(http.ResponseWriter, *http.Request) error {
		return errorf(http.StatusNotFound, "", "no such endpoint")
	})
	h.mux = mux
}

// fail answers an error: a SCIM error as it is, a storage outage as 503,
// anything else as 500 without detail.
func (h *Handler) fail(w http.ResponseWriter, err error) {
	var se *Error
	switch {
	case errors.As(err, &se):
		WriteError(w, se.Status, se.Type, se.Detail)
	case errors.Is(err, storage.ErrUnavailable):
		w.Header().Set("Retry-After", "30")
		WriteError(w, http.StatusServiceUnavailable, "", "storage is temporarily unavailable")
	default:
		WriteError(w, http.StatusInternalServerError, "", "internal error")
	}
}

// readBody reads a JSON object body of at most MaxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, errorf(http.StatusRequestEntityTooLarge, "", "the body is larger than 1 MiB")
	}
	if err != nil {
		return nil, errorf(400, InvalidSyntax, "the body could not be read")
	}
	return b, nil
}

// readResource reads a resource body.
func readResource(w http.ResponseWriter, r *http.Request) (resource, error) {
	b, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	var m resource
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, errorf(400, InvalidSyntax, "the body is not a JSON object")
	}
	return m, nil
}

// location is the URL of a resource.
func (h *Handler) location(kind, id string) string {
	base := h.BaseURL
	if base == "" {
		base = h.Prefix
	}
	base = strings.TrimRight(base, "/")
	if kind == "" {
		return base + "/" + id
	}
	return base + "/" + kind + "/" + id
}

// checkVersion answers 412 when If-Match names another version.
func checkVersion(r *http.Request, current time.Time) error {
	im := r.Header.Get("If-Match")
	if im == "" || strings.TrimSpace(im) == "*" {
		return nil
	}
	tag := etag(current)
	for _, t := range strings.Split(im, ",") {
		t = strings.TrimSpace(t)
		if t == tag || "W/"+t == tag {
			return nil
		}
	}
	return errorf(http.StatusPreconditionFailed, "", "the resource has changed (If-Match)")
}

// page is a list request's paging: startIndex is 1-based, count the most
// results (RFC 7644 §3.4.2.4).
type page struct{ start, count int }

const (
	defaultCount = 100
	maxCount     = 1000
)

func paging(r *http.Request) (page, error) {
	p := page{start: 1, count: defaultCount}
	q := r.URL.Query()
	if s := q.Get("startIndex"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return p, errorf(400, InvalidValue, "startIndex must be a number")
		}
		p.start = max(n, 1)
	}
	if s := q.Get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return p, errorf(400, InvalidValue, "count must be a number")
		}
		p.count = min(max(n, 0), maxCount)
	}
	return p, nil
}

// list answers a ListResponse with one page of the matching resources.
func list(w http.ResponseWriter, r *http.Request, p page, all []resource) {
	from := min(p.start-1, len(all))
	to := min(from+p.count, len(all))
	items := all[from:to]
	shaped := make([]resource, len(items))
	for i, m := range items {
		shaped[i] = project(r, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"schemas":      []string{ListSchema},
		"totalResults": len(all),
		"startIndex":   p.start,
		"itemsPerPage": len(items),
		"Resources":    shaped,
	})
}

// project applies the attributes and excludedAttributes parameters to
// the top-level attributes; id, schemas and meta always stay.
func project(r *http.Request, m resource) resource {
	q := r.URL.Query()
	attrs, excl := splitList(q.Get("attributes")), splitList(q.Get("excludedAttributes"))
	if len(attrs) == 0 && len(excl) == 0 {
		return m
	}
	out := resource{}
	for k, v := range m {
		switch lk := strings.ToLower(k); {
		case lk == "id" || lk == "schemas" || lk == "meta":
			out[k] = v
		case len(attrs) > 0:
			if attrs[lk] {
				out[k] = v
			}
		case !excl[lk]:
			out[k] = v
		}
	}
	return out
}

// splitList reads a comma-separated attribute list, lowercased, keeping
// the top-level name of each ("name.givenName" keeps "name").
func splitList(s string) map[string]bool {
	if s == "" {
		return nil
	}
	out := map[string]bool{}
	for _, a := range strings.Split(s, ",") {
		a = strings.ToLower(strings.TrimSpace(a))
		if i := strings.LastIndex(a, ":"); i >= 0 && strings.HasPrefix(a, "urn:") && isCoreURN(a[:i]) {
			a = a[i+1:]
		}
		a, _, _ = strings.Cut(a, ".")
		out[a] = true
	}
	return out
}

// answer writes one resource.
func answer(w http.ResponseWriter, r *http.Request, status int, m resource) {
	if meta, ok := m["meta"].(resource); ok {
		if v, ok := meta["version"].(string); ok {
			w.Header().Set("ETag", v)
		}
		if loc, ok := meta["location"].(string); ok && status == http.StatusCreated {
			w.Header().Set("Location", loc)
		}
	}
	writeJSON(w, status, project(r, m))
}
