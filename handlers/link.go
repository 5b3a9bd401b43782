package handlers

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// A personalized link's token: version, expiry, nonce, contact id and return
// path, followed by a MAC under a key derived for the workspace. It is
// opaque base64url, about 90 characters for typical values.
const (
	linkVersion = 1
	linkMACLen  = 16
)

// InputError is bad input from an operator (admin API or CLI); its message
// is safe to show them.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// ErrUnknownWorkspace is returned for a workspace that is not configured.
var ErrUnknownWorkspace = errors.New("unknown workspace")

// Link is a minted personalized sign-in link.
type Link struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MintLink makes a personalized sign-in link for an active contact. The URL
// is built from the workspace's configured public URL, never from a
// request.
func (p *Portal) MintLink(ctx context.Context, workspace, contactID, returnTo string, ttl time.Duration) (Link, error) {
	ws, ok := p.Workspaces[workspace]
	if !ok {
		return Link{}, ErrUnknownWorkspace
	}
	rt := p.state.Load()
	if rt == nil {
		return Link{}, errUnavailable
	}
	if ws.URL == nil {
		return Link{}, &InputError{fmt.Sprintf("workspace %s has no url configured, so links cannot be made", ws.Name)}
	}
	switch {
	case ttl == 0:
		ttl = ws.LinkTTL
	case ttl < time.Minute:
		return Link{}, &InputError{"ttl must be at least 1m"}
	case ttl > ws.LinkMaxTTL:
		return Link{}, &InputError{fmt.Sprintf("ttl must be at most %s", ws.LinkMaxTTL)}
	}
	if returnTo == "" {
		returnTo = "/"
	}
	rp, ok := SafeReturnPath(returnTo)
	if !ok || ws.isAuthPath(rp) {
		return Link{}, &InputError{fmt.Sprintf("return_to %q must be a local path such as /tickets/42", returnTo)}
	}
	c, err := rt.store.Contact(ctx, ws.Name, contactID)
	if errors.Is(err, storage.ErrNotFound) {
		return Link{}, &InputError{fmt.Sprintf("no contact %q in workspace %s", contactID, ws.Name)}
	}
	if err != nil {
		return Link{}, err
	}
	if !c.Active() {
		return Link{}, &InputError{fmt.Sprintf("contact %s is disabled", contactID)}
	}
	exp := p.Now().Add(ttl).Truncate(time.Second)
	tok := sealLink(rt.keys[ws.Name].link, ws.Name, linkClaims{ContactID: c.ID, ReturnTo: rp, ExpiresAt: exp})
	return Link{URL: ws.authURL("/link/" + tok), ExpiresAt: exp.UTC()}, nil
}

type linkClaims struct {
	ContactID string
	ReturnTo  string
	ExpiresAt time.Time
}

func sealLink(key []byte, workspace string, c linkClaims) string {
	b := []byte{linkVersion}
	b = binary.BigEndian.AppendUint64(b, uint64(c.ExpiresAt.Unix()))
	var nonce [8]byte
	_, _ = rand.Read(nonce[:])
	b = append(b, nonce[:]...)
	b = binary.AppendUvarint(b, uint64(len(c.ContactID)))
	b = append(b, c.ContactID...)
	b = append(b, c.ReturnTo...)
	mac := keyed(key, workspace, string(b))
	b = append(b, mac[:linkMACLen]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errBadLink = errors.New("invalid link")

// openLinkToken verifies a token and returns its claims.
func openLinkToken(key []byte, workspace, tok string, now time.Time) (linkClaims, error) {
	if len(tok) > 1024 {
		return linkClaims{}, errBadLink
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 1+8+8+1+linkMACLen || b[0] != linkVersion {
		return linkClaims{}, errBadLink
	}
	body, mac := b[:len(b)-linkMACLen], b[len(b)-linkMACLen:]
	if !hmac.Equal(mac, keyed(key, workspace, string(body))[:linkMACLen]) {
		return linkClaims{}, errBadLink
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(body[1:9])), 0)
	rest := body[17:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return linkClaims{}, errBadLink
	}
	c := linkClaims{ContactID: string(rest[k : k+int(n)]), ReturnTo: string(rest[k+int(n):]), ExpiresAt: exp}
	if !now.Before(exp) {
		return c, errors.New("link expired")
	}
	return c, nil
}

// openLink starts a sign-in for the contact a personalized link names and
// sends the code at once (within the resend cooldown, so mail scanners that
// fetch links do not flood the inbox). It never signs anyone in by itself.
func (q *request) openLink() error {
	ctx := q.r.Context()
	ev := q.event("")
	ev.Method = "link"
	claims, err := openLinkToken(q.keys.link, q.ws.Name, q.r.PathValue("token"), q.now())
	var contact storage.Contact
	if err == nil {
		ev.ContactID = claims.ContactID
		contact, err = activeContact(ctx, q.store, q.ws.Name, "", claims.ContactID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return q.failed("finding contact", err)
		}
		if err != nil {
			err = errors.New("contact is not active")
		}
	}
	returnTo, ok := SafeReturnPath(claims.ReturnTo)
	if err == nil && !ok {
		err = errBadLink
	}
	if err != nil {
		// Guessing links is refused per client, and audited once per
		// client and window.
		within, wait, err2 := q.store.Hit(ctx, "badlink/ip/"+q.net, q.g.portal.Limits.RequestsPerIP, q.g.portal.Limits.Window)
		if err2 != nil {
			return q.failed("counting invalid links", err2)
		}
		ev.Event, ev.Reason = EventLinkInvalid, err.Error()
		q.auditRefusal(ev, q.net)
		if !within {
			return q.tooMany(wait)
		}
		return q.message(http.StatusBadRequest, "Invalid portal link",
			"This sign-in link is incomplete, has expired, or is no longer valid for "+q.ws.Title+".",
			"Please ask your service provider for a fresh link.", q.ws.AuthPath+"/signin", "Sign in with your email instead")
	}
	if answered, err := q.flowAllowed(); answered {
		return err
	}
	ev.Event, ev.Email = EventLinkOpened, contact.Email
	q.audit(ev)
	f, err := q.newFlow(NewID(), returnTo)
	if err != nil {
		return q.failed("starting sign-in flow", err)
	}
	f.Email, f.ContactID, f.Method = contact.Email, contact.ID, "link"
	f.LinkHash = HashID(q.r.PathValue("token"))
	return q.sendCode(f, "", false)
}
