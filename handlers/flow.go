package handlers

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// A sign-in flow is what the gate keeps between the page a contact wanted
// and their sign-in: the wanted path, then the email given and the code
// page's state. Until an email is submitted (or single sign-on starts)
// nothing is stored: the flow cookie carries the wanted path itself,
// sealed with a MAC and an expiry, so anonymous page loads never grow
// storage. From then on the cookie holds the id of a stored flow.

// flowTTL is how long a sign-in flow (the kept path, the email given) lives.
const flowTTL = 30 * time.Minute

// maxFormBytes bounds every form body.
const maxFormBytes = 8 << 10

// Sealed (not yet stored) flow cookies: "p." then base64url of version,
// expiry, nonce, the wanted path and a MAC.
const (
	pendingPrefix  = "p."
	pendingVersion = 1
	pendingMACLen  = 16
	// maxPendingPath keeps the cookie well within what browsers store;
	// a longer wanted path falls back to "/".
	maxPendingPath = 2048
)

// pending is a flow that exists only in its cookie. Its id is the id the
// flow gets when it is stored, so the sign-in form's CSRF token stays good
// across that step.
type pending struct {
	id       string
	returnTo string
}

func (q *request) sealPending(returnTo string) string {
	if len(returnTo) > maxPendingPath {
		returnTo = "/"
	}
	b := []byte{pendingVersion}
	b = binary.BigEndian.AppendUint64(b, uint64(q.now().Add(flowTTL).Unix()))
	b = append(b, NewID()...)
	b = append(b, returnTo...)
	mac := keyed(q.keys.csrf, "pending", string(b))
	b = append(b, mac[:pendingMACLen]...)
	return pendingPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// openPending reads a sealed flow cookie; ok is false for anything that is
// not one of ours, or has expired.
func (q *request) openPending(v string) (p pending, ok bool) {
	raw, found := strings.CutPrefix(v, pendingPrefix)
	if !found || len(raw) > 4096 {
		return p, false
	}
	b, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil || len(b) < 1+8+idLen+1+pendingMACLen || b[0] != pendingVersion {
		return p, false
	}
	body, mac := b[:len(b)-pendingMACLen], b[len(b)-pendingMACLen:]
	if !hmac.Equal(mac, keyed(q.keys.csrf, "pending", string(body))[:pendingMACLen]) {
		return p, false
	}
	if !q.now().Before(time.Unix(int64(binary.BigEndian.Uint64(body[1:9])), 0)) {
		return p, false
	}
	rp, safe := SafeReturnPath(string(body[9+idLen:]))
	if !safe {
		rp = "/"
	}
	return pending{id: string(body[9 : 9+idLen]), returnTo: rp}, true
}

// flow returns the request's live stored sign-in flow for this workspace
// and its id (the cookie's value).
func (q *request) flow() (storage.SignInFlow, string, error) {
	return q.readFlow(nil)
}

// readFlow is flow; with contact not nil, it also reads the contact the
// flow is for into *contact (the zero Contact for none), in the same
// store call.
func (q *request) readFlow(contact *storage.Contact) (storage.SignInFlow, string, error) {
	id := q.cookie(cookieFlow)
	if !validID(id) {
		return storage.SignInFlow{}, "", storage.ErrNotFound
	}
	var f storage.SignInFlow
	var c storage.Contact
	var err error
	if contact != nil {
		f, c, err = q.store.FlowContact(q.r.Context(), HashID(id))
	} else {
		f, err = q.store.Flow(q.r.Context(), HashID(id))
	}
	if err != nil {
		return f, "", err
	}
	if f.Workspace != q.ws.Name {
		return storage.SignInFlow{}, "", storage.ErrNotFound
	}
	if contact != nil {
		*contact = c
	}
	return f, id, nil
}

// keepFlow keeps returnTo for the sign-in: in the request's stored flow if
// it has one, or else in a sealed cookie (nothing stored).
func (q *request) keepFlow(returnTo string) error {
	if f, id, err := q.flow(); err == nil {
		f.ReturnTo = returnTo
		f.ExpiresAt = q.now().Add(flowTTL)
		if err := q.store.PutFlow(q.r.Context(), f); err != nil {
			return err
		}
		// The browser must keep the cookie as long as the flow lives.
		q.setCookie(cookieFlow, id, flowTTL)
		return nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	q.setCookie(cookieFlow, q.sealPending(returnTo), flowTTL)
	return nil
}

// formKey is what the request's forms are bound to: the flow's id, stored
// or sealed. A request with neither gets a sealed flow for "/" (nothing
// stored).
func (q *request) formKey() (key string, err error) {
	if _, id, err := q.flow(); err == nil {
		return id, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	if p, ok := q.openPending(q.cookie(cookieFlow)); ok {
		return p.id, nil
	}
	v := q.sealPending("/")
	q.setCookie(cookieFlow, v, flowTTL)
	p, _ := q.openPending(v)
	return p.id, nil
}

// storeFlow turns the request's flow into a stored one, for single
// sign-on: the stored flow if there is one, else one made from the sealed
// cookie's wanted path (or "/"), with a new cookie. ok is false when an
// answer has already been written.
func (q *request) storeFlow() (f storage.SignInFlow, ok bool, err error) {
	f, _, err = q.flow()
	switch {
	case err == nil:
		return f, true, nil
	case !errors.Is(err, storage.ErrNotFound):
		return f, false, q.failed("reading sign-in flow", err)
	}
	id, returnTo := NewID(), "/"
	if p, sealed := q.openPending(q.cookie(cookieFlow)); sealed {
		id, returnTo = p.id, p.returnTo
	}
	if answered, err := q.flowAllowed(); answered {
		return f, false, err
	}
	if f, err = q.newFlow(id, returnTo); err != nil {
		return f, false, q.failed("starting sign-in flow", err)
	}
	return f, true, nil
}

// flowAllowed counts a new stored flow against the client's request
// limit, so that one client cannot grow storage without bound.
func (q *request) flowAllowed() (answered bool, err error) {
	return q.overLimit(q.event(""), newFlows, q.flowLimit())
}

// newFlows names the new-flow limit in refusals.
const newFlows = "new sign-in flows"

// flowLimit is the limit a new stored flow counts against.
func (q *request) flowLimit() rateLimit {
	return rateLimit{key: "flow/ip/" + q.net, limit: q.g.portal.Limits.RequestsPerIP}
}

// newFlow stores a new flow with that id for returnTo, and sets its
// cookie.
func (q *request) newFlow(id, returnTo string) (storage.SignInFlow, error) {
	f := q.startFlow(id, returnTo)
	if err := q.store.PutFlow(q.r.Context(), f); err != nil {
		return f, err
	}
	q.setCookie(cookieFlow, id, flowTTL)
	return f, nil
}

// startFlow is a new flow that is not stored yet: the caller stores it
// (sendCode does, and sets its cookie), so a flow that goes on at once
// to a code costs one write, not two.
func (q *request) startFlow(id, returnTo string) storage.SignInFlow {
	now := q.now()
	return storage.SignInFlow{
		IDHash:    HashID(id),
		Workspace: q.ws.Name,
		ReturnTo:  returnTo,
		CreatedAt: now,
		ExpiresAt: now.Add(flowTTL),
	}
}

// csrfToken binds a form to a form key (see formKey).
func (q *request) csrfToken(key string) string {
	mac := keyed(q.keys.csrf, key)
	return base64.RawURLEncoding.EncodeToString(mac[:18])
}

func (q *request) checkCSRF(key string) bool {
	got := q.r.PostFormValue("csrf")
	return subtle.ConstantTimeCompare([]byte(q.csrfToken(key)), []byte(got)) == 1
}

// parseForm reads a bounded form body.
func (q *request) parseForm() error {
	q.r.Body = http.MaxBytesReader(q.w, q.r.Body, maxFormBytes)
	return q.r.ParseForm()
}

// formFlow parses a POSTed form, checks that it came from our page (the
// browser's word on its origin, and the CSRF token) and returns the
// request's stored flow. With store set, a sealed flow becomes a new flow
// for the caller to store (the email form: sendCode stores it); otherwise
// a sealed flow, not past its email yet, is sent back to the sign-in page,
// and a request with no flow at all is told its sign-in expired. ok is
// false when an answer has already been written.
// With store, a form without a stored flow gets a new one, fresh, which
// is not counted or stored yet: sendCode does both in its one store call.
// With contact not nil, the stored flow is read with the contact it is
// for (readFlow).
func (q *request) formFlow(store bool, contact *storage.Contact) (f storage.SignInFlow, id string, fresh, ok bool, err error) {
	if err := q.parseForm(); err != nil {
		return f, "", false, false, q.refuseForm("form_unreadable")
	}
	notOurs := func() error { return q.refuseForm("form_not_ours") }
	if said, same := browserOrigin(q.r); said && !same {
		return f, "", false, false, notOurs()
	}
	expired := func() error { return q.refuseForm("flow_expired") }
	f, id, err = q.readFlow(contact)
	switch {
	case err == nil:
		if !q.checkCSRF(id) {
			return f, "", false, false, notOurs()
		}
		return f, id, false, true, nil
	case !errors.Is(err, storage.ErrNotFound):
		return f, "", false, false, q.failed("reading sign-in flow", err)
	}
	p, sealed := q.openPending(q.cookie(cookieFlow))
	if !sealed {
		return f, "", false, false, expired()
	}
	if !q.checkCSRF(p.id) {
		return f, "", false, false, notOurs()
	}
	if !store {
		// A sign-in not past its email yet: back to that step.
		return f, "", false, false, q.redirect("/signin")
	}
	// Counted and stored by sendCode, with the email; a form refused
	// before that keeps the sealed cookie and stores nothing.
	return q.startFlow(p.id, p.returnTo), p.id, true, true, nil
}
