package handlers

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/kdesk/portalgate/storage"
)

// activeContact is the active contact a sign-in is for: by id when the
// flow names one (a personalized link), else by email. ErrNotFound when
// there is none, or it is disabled.
func activeContact(ctx context.Context, store storage.Store, workspace, email, contactID string) (storage.Contact, error) {
	c, err := storage.ContactOf(ctx, store, workspace, contactID, email)
	if err == nil && !c.Active() {
		err = storage.ErrNotFound
	}
	return c, err
}

// signIn is the one step after every sign-in method: it starts a new
// session for contact, ends the flow and sends the browser to the path it
// first asked for.
func (q *request) signIn(f storage.SignInFlow, contact storage.Contact, method string, ev storage.AuditEvent) error {
	start, id := q.sessionStart(f, contact, method, ev)
	// One store call, which also records ev (the accepted code or SSO
	// identity): a sign-in commits once.
	if err := q.store.StartSession(context.WithoutCancel(q.r.Context()), start.Session, start.EndFlow, start.EndSession, start.Events...); err != nil {
		// No session: the accepted code or identity is still recorded.
		q.audit(start.Events[0])
		return q.failed("creating session", err)
	}
	return q.finishSignIn(f, id, start.Events[0])
}

// sessionStart is the store work of a sign-in of contact by method, and
// the new session's id for its cookie: a new session (a new id at every
// sign-in), the end of the flow and of the browser's old session (if
// any), and ev stamped.
func (q *request) sessionStart(f storage.SignInFlow, contact storage.Contact, method string, ev storage.AuditEvent) (storage.SessionStart, string) {
	now := q.now()
	id := NewID()
	start := storage.SessionStart{
		Session: storage.Session{
			IDHash:    HashID(id),
			Workspace: q.ws.Name,
			ContactID: contact.ID,
			Method:    method,
			ClientIP:  q.ip,
			UserAgent: q.ua,
			CreatedAt: now,
			LastSeen:  now,
			ExpiresAt: now.Add(q.ws.SessionTTL),
			Idle:      q.ws.SessionIdle,
		},
		EndFlow: f.IDHash,
		Events:  []storage.AuditEvent{q.g.portal.stamp(ev)},
	}
	if old := q.cookie(cookieSession); validID(old) {
		start.EndSession = HashID(old)
	}
	return start, id
}

// finishSignIn answers a sign-in whose session is stored: ev announced, the
// session's cookie set, and the browser sent to the path it first asked
// for.
func (q *request) finishSignIn(f storage.SignInFlow, id string, ev storage.AuditEvent) error {
	q.g.portal.announce(q.r.Context(), q.rt, ev)
	q.setCookie(cookieFlow, "", -1)
	q.setCookie(cookieSession, id, q.ws.SessionTTL)
	to := "/"
	if p, ok := SafeReturnPath(f.ReturnTo); ok {
		to = p
	}
	http.Redirect(q.w, q.r, to, http.StatusSeeOther)
	return nil
}

// signOutPage asks to confirm signing out, so a portal can offer sign-out
// with a plain link to /_portal/signout.
// With refused=1 it is where a refused sign-out form lands (Post/Redirect/
// Get): it says that form was not the portal's, answers 403, and offers
// this page's own buttons; nothing was changed.
func (q *request) signOutPage() error {
	sess, contact, err := q.g.signedIn(q.r, q.store)
	if err != nil {
		return q.redirect("/signin")
	}
	status := http.StatusOK
	d := q.page(q.t("signout_heading"))
	if q.r.URL.Query().Get("refused") == "1" {
		status = http.StatusForbidden
		d.Heading = q.t("signout_failed")
		d.Error = q.t("signout_not_ours")
	}
	d.CSRF = q.signOutToken(sess)
	d.SignedInAs = contact.Email
	return q.ws.pages(q.g.portal).render(q.w, status, pageSignOut, d)
}

// signOutToken is the token the sign-out forms of sess must carry: keyed
// from the session's id hash with the workspace's CSRF key, so that it is
// not stored with every session; a session of an earlier version keeps
// the random token stored with it.
func (q *request) signOutToken(sess storage.Session) string {
	if sess.CSRF != "" {
		return sess.CSRF
	}
	mac := keyed(q.keys.csrf, "session", sess.IDHash)
	return base64.RawURLEncoding.EncodeToString(mac[:24])
}

// signOut ends the session (with all=1, every session of the contact) and
// goes back to sign in, where a notice says so. The form must show
// that the contact sent it: the confirmation page's token, or, for a plain
// sign-out button in the portal, the browser's Sec-Fetch-Site or Origin
// naming this site. A post from another site changes nothing, not even the
// cookie: it is redirected to the confirmation page, which says so.
func (q *request) signOut() error {
	_ = q.parseForm()
	refuse := func() error { return q.redirect("/signout?refused=1") }
	said, same := browserOrigin(q.r)
	if said && !same {
		return refuse()
	}
	if id := q.cookie(cookieSession); validID(id) {
		ctx := q.r.Context()
		hash := HashID(id)
		sess, err := q.store.Session(ctx, q.ws.Name, hash)
		if err == nil {
			switch token := q.r.PostFormValue("csrf"); {
			case token != "":
				if subtle.ConstantTimeCompare([]byte(q.signOutToken(sess)), []byte(token)) != 1 {
					return refuse()
				}
			case !same:
				// No token and no word from the browser: ask.
				return q.redirect("/signout")
			}
			ev := q.event(EventSessionEnded)
			ev.ContactID, ev.Method = sess.ContactID, sess.Method
			if q.r.PostFormValue("all") == "1" {
				n, err := q.store.DeleteContactSessions(ctx, q.ws.Name, sess.ContactID)
				if err != nil {
					return q.failed("ending sessions", err)
				}
				ev.Reason, ev.Count = "signed out on all devices", n
				q.audit(ev)
				q.setCookie(cookieSession, "", -1)
				return q.redirect(q.afterSignOut(strconv.Itoa(n)))
			}
			if err := q.store.DeleteSession(ctx, q.ws.Name, hash); err != nil {
				return q.failed("ending session", err)
			}
			q.audit(ev)
			q.setCookie(cookieSession, "", -1)
			return q.redirect(q.afterSignOut("1"))
		}
	}
	q.setCookie(cookieSession, "", -1)
	return q.redirect("/signin")
}

// afterSignOut is where a sign-out goes: the sign-in page, which says how
// many sessions ended, or a personalized link of this workspace the
// contact chose to switch to (the form's "then" field, nothing else).
func (q *request) afterSignOut(n string) string {
	if then := q.r.PostFormValue("then"); strings.HasPrefix(then, q.ws.AuthPath+"/link/") {
		if tok := strings.TrimPrefix(then, q.ws.AuthPath+"/link/"); tok != "" && !strings.ContainsAny(tok, "/?#\\%") {
			return "/link/" + tok
		}
	}
	return "/signin?signed_out=" + n
}

// signedOutNotice is the sign-in page's notice after a sign-out: n is the
// signed_out parameter, the number of sessions that ended.
func (q *request) signedOutNotice(n string) string {
	switch count, err := strconv.Atoi(n); {
	case err != nil || count < 1:
		return ""
	case count == 1:
		return q.t("signed_out")
	default:
		return q.t("signed_out_all", "Count", count)
	}
}

// originCheck is Go's check of Sec-Fetch-Site and Origin against the
// request's own host.
var originCheck = http.NewCrossOriginProtection()

// browserOrigin reports whether the browser said where the request comes
// from (Sec-Fetch-Site or Origin) and, if so, whether that is this site.
func browserOrigin(r *http.Request) (said, same bool) {
	if r.Header.Get("Sec-Fetch-Site") == "" && r.Header.Get("Origin") == "" {
		return false, false
	}
	return true, originCheck.Check(r) == nil
}
