package handlers

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// A personalized link's token: version, the link's id (16 random bytes)
// and a MAC under a key derived for the workspace; the link itself (its
// contact, return path and expiry) is a storage.PortalLink. It is opaque
// base64url, 44 characters.
const (
	linkVersion = 2
	linkIDLen   = 16
	linkMACLen  = 16
	linkTokLen  = 1 + linkIDLen + linkMACLen
)

// InputError is bad input from an operator (admin API or CLI); its message
// is safe to show them.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// ErrUnknownWorkspace is returned for a workspace that is not configured.
var ErrUnknownWorkspace = errors.New("unknown workspace")

// LinkRequest asks for a personalized sign-in link.
type LinkRequest struct {
	// ContactID names the contact; or give Email instead.
	ContactID string
	// Email finds the contact by email (ignoring case) when ContactID is
	// empty.
	Email string
	// ReturnTo is the local path to land on after sign-in; default /.
	ReturnTo string
	// TTL is how long the link works; zero means the workspace's LinkTTL.
	TTL time.Duration
	// CreatedBy is who asks (the admin caller), kept with the link and
	// recorded as the actor of link_created.
	CreatedBy string
}

// Link is a minted personalized sign-in link.
type Link struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MintLink makes and stores a personalized sign-in link for an active
// contact, and audits it as link_created. The URL is built from the
// workspace's configured public URL, never from a request.
func (p *Portal) MintLink(ctx context.Context, workspace string, req LinkRequest) (Link, error) {
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
	ttl := req.TTL
	switch {
	case ttl == 0:
		ttl = ws.LinkTTL
	case ttl < time.Minute:
		return Link{}, &InputError{"ttl must be at least 1m"}
	case ttl > ws.LinkMaxTTL:
		return Link{}, &InputError{fmt.Sprintf("ttl must be at most %s", ws.LinkMaxTTL)}
	}
	returnTo := req.ReturnTo
	if returnTo == "" {
		returnTo = "/"
	}
	rp, ok := SafeReturnPath(returnTo)
	if !ok || ws.isAuthPath(rp) {
		return Link{}, &InputError{fmt.Sprintf("return_to %q must be a local path such as /tickets/42", returnTo)}
	}
	var c storage.Contact
	var err error
	who := req.ContactID
	switch {
	case req.ContactID != "" && req.Email != "":
		return Link{}, &InputError{"give contact_id or email, not both"}
	case req.ContactID != "":
		c, err = rt.store.Contact(ctx, ws.Name, req.ContactID)
	case req.Email != "":
		who = req.Email
		c, err = rt.store.ContactByEmail(ctx, ws.Name, req.Email)
	default:
		return Link{}, &InputError{"contact_id or email is required"}
	}
	if errors.Is(err, storage.ErrNotFound) {
		return Link{}, &InputError{fmt.Sprintf("no contact %q in workspace %s", who, ws.Name)}
	}
	if err != nil {
		return Link{}, err
	}
	if !c.Active() {
		return Link{}, &InputError{fmt.Sprintf("contact %s is disabled", c.ID)}
	}
	var raw [linkIDLen]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Link{}, err
	}
	now := p.Now()
	l := storage.PortalLink{
		ID: hex.EncodeToString(raw[:]), Workspace: ws.Name, ContactID: c.ID, ReturnTo: rp,
		CreatedAt: now.UTC(), ExpiresAt: now.Add(ttl).Truncate(time.Second).UTC(), CreatedBy: req.CreatedBy,
	}
	if err := rt.store.PutLink(ctx, l); err != nil {
		return Link{}, err
	}
	p.audit(ctx, rt, storage.AuditEvent{Workspace: ws.Name, Event: EventLinkCreated, ContactID: c.ID, Email: c.Email,
		Method: "link", Actor: req.CreatedBy,
		Reason: fmt.Sprintf("link %s to %s, expires %s", l.ID, rp, l.ExpiresAt.Format(time.RFC3339))})
	tok := sealLink(rt.keys[ws.Name].link, ws.Name, l.ID)
	return Link{ID: l.ID, URL: ws.authURL("/link/" + tok), ExpiresAt: l.ExpiresAt}, nil
}

// sealLink makes the token of the link with the given id (hex).
func sealLink(key []byte, workspace, id string) string {
	b := make([]byte, 1, linkTokLen)
	b[0] = linkVersion
	b, _ = hex.AppendDecode(b, []byte(id))
	mac := keyed(key, workspace, string(b))
	b = append(b, mac[:linkMACLen]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errBadLink = errors.New("invalid link")

// openLinkToken verifies a token and returns the id of its link.
func openLinkToken(key []byte, workspace, tok string) (string, error) {
	if len(tok) != base64.RawURLEncoding.EncodedLen(linkTokLen) {
		return "", errBadLink
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(b) != linkTokLen || b[0] != linkVersion {
		return "", errBadLink
	}
	body, mac := b[:len(b)-linkMACLen], b[len(b)-linkMACLen:]
	if !hmac.Equal(mac, keyed(key, workspace, string(body))[:linkMACLen]) {
		return "", errBadLink
	}
	return hex.EncodeToString(body[1:]), nil
}

// openLink starts a sign-in for the contact a personalized link names and
// sends the code at once (within the resend cooldown, so mail scanners that
// fetch links do not flood the inbox). It never signs anyone in by itself.
func (q *request) openLink() error {
	ctx := q.r.Context()
	ev := q.event("")
	ev.Method = "link"
	var link storage.PortalLink
	var contact storage.Contact
	id, err := openLinkToken(q.keys.link, q.ws.Name, q.r.PathValue("token"))
	if err == nil {
		// One store call checks the link is live and counts the open.
		link, err = q.store.OpenLink(ctx, q.ws.Name, id)
		if errors.Is(err, storage.ErrNotFound) {
			err = errors.New("link expired or revoked")
		} else if err != nil {
			return q.failed("opening link", err)
		}
	}
	if err == nil {
		ev.ContactID = link.ContactID
		contact, err = activeContact(ctx, q.store, q.ws.Name, "", link.ContactID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return q.failed("finding contact", err)
		}
		if err != nil {
			err = errors.New("contact is not active")
		}
	}
	returnTo, ok := SafeReturnPath(link.ReturnTo)
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
		return q.message(http.StatusBadRequest, "link_invalid_heading", "link_invalid",
			"link_invalid_next", q.ws.AuthPath+"/signin", "link_sign_in_instead")
	}
	// Already signed in: as this contact, straight to the link's page; as
	// another, say who is signed in and offer to switch.
	if _, current, err := q.g.signedIn(q.r, q.store); err == nil {
		if current.ID == contact.ID {
			ev.Event, ev.Email, ev.Reason = EventLinkOpened, contact.Email, "link "+link.ID+", already signed in"
			q.audit(ev)
			http.Redirect(q.w, q.r, returnTo, http.StatusSeeOther)
			return nil
		}
		d := q.page(q.t("link_other_heading"))
		d.MessageHTML = q.tr.H("link_other", "Email", current.Email, "Workspace", q.ws.Title)
		d.ActionURL, d.ActionLabel = "/", q.t("continue")
		d.Form = &formButton{Action: q.ws.AuthPath + "/signout", Label: q.t("link_switch"), Then: q.r.URL.Path}
		return q.ws.pages(q.g.portal).render(q.w, http.StatusOK, pageMessage, d)
	} else if !errors.Is(err, errSignedOut) {
		return q.failed("reading session", err)
	}
	if answered, err := q.flowAllowed(); answered {
		return err
	}
	ev.Event, ev.Email, ev.Reason = EventLinkOpened, contact.Email, "link "+link.ID
	q.audit(ev)
	flowID := NewID()
	f := q.startFlow(flowID, returnTo)
	f.Email, f.ContactID, f.Method = contact.Email, contact.ID, "link"
	f.LinkHash = HashID(q.r.PathValue("token"))
	return q.sendCode(f, flowID, false, false)
}
