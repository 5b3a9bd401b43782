package handlers

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// flowTTL is how long a sign-in flow (the kept path, the email given) lives.
const flowTTL = 30 * time.Minute

// maxFormBytes bounds every form body.
const maxFormBytes = 8 << 10

// flow returns the request's live sign-in flow for this workspace and its
// id (the cookie's value).
func (q *request) flow() (storage.SignInFlow, string, error) {
	id := cookieValue(q.r, cookieFlow)
	if !validID(id) {
		return storage.SignInFlow{}, "", storage.ErrNotFound
	}
	f, err := q.store.Flow(q.r.Context(), HashID(id))
	if err != nil {
		return f, "", err
	}
	if f.Workspace != q.ws.Name {
		return storage.SignInFlow{}, "", storage.ErrNotFound
	}
	return f, id, nil
}

// keepFlow keeps returnTo in the request's live flow, or in a new one.
func (q *request) keepFlow(returnTo string) (storage.SignInFlow, error) {
	if f, id, err := q.flow(); err == nil {
		f.ReturnTo = returnTo
		f.ExpiresAt = q.now().Add(flowTTL)
		if err := q.store.PutFlow(q.r.Context(), f); err != nil {
			return f, err
		}
		// The browser must keep the cookie as long as the flow lives.
		q.setCookie(cookieFlow, id, flowTTL)
		return f, nil
	}
	f, _, err := q.newFlow(returnTo)
	return f, err
}

// newFlow starts a new flow for returnTo, with a new cookie.
func (q *request) newFlow(returnTo string) (storage.SignInFlow, string, error) {
	now := q.now()
	id := NewID()
	f := storage.SignInFlow{
		IDHash:    HashID(id),
		Workspace: q.ws.Name,
		ReturnTo:  returnTo,
		CreatedAt: now,
		ExpiresAt: now.Add(flowTTL),
	}
	if err := q.store.PutFlow(q.r.Context(), f); err != nil {
		return f, "", err
	}
	q.setCookie(cookieFlow, id, flowTTL)
	return f, id, nil
}

// csrfToken binds a form to the flow id in the browser's cookie.
func (q *request) csrfToken(flowID string) string {
	mac := keyed(q.keys.csrf, flowID)
	return base64.RawURLEncoding.EncodeToString(mac[:18])
}

func (q *request) checkCSRF(flowID string) bool {
	got := q.r.PostFormValue("csrf")
	return subtle.ConstantTimeCompare([]byte(q.csrfToken(flowID)), []byte(got)) == 1
}

// parseForm reads a bounded form body.
func (q *request) parseForm() error {
	q.r.Body = http.MaxBytesReader(q.w, q.r.Body, maxFormBytes)
	return q.r.ParseForm()
}

// formFlow parses a POSTed form and returns its flow after checking the
// CSRF token. ok is false when an answer has already been written.
func (q *request) formFlow() (f storage.SignInFlow, id string, ok bool, err error) {
	if err := q.parseForm(); err != nil {
		return f, "", false, q.message(http.StatusBadRequest, "Sign-in failed",
			"The form could not be read.", "", q.ws.AuthPath+"/signin", "Start again")
	}
	f, id, err = q.flow()
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return f, "", false, q.failed("reading sign-in flow", err)
		}
		return f, "", false, q.message(http.StatusBadRequest, "Sign-in failed",
			"Your sign-in session has expired.", "Start again from the sign-in page.", q.ws.AuthPath+"/signin", "Start again")
	}
	if !q.checkCSRF(id) {
		return f, "", false, q.message(http.StatusForbidden, "Sign-in failed",
			"This form was not sent from the sign-in page.", "Start again from the sign-in page.", q.ws.AuthPath+"/signin", "Start again")
	}
	return f, id, true, nil
}
