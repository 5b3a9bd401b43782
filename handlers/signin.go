package handlers

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/kdesk/portalgate/mail"
	"github.com/kdesk/portalgate/storage"
)

// flowTTL is how long a sign-in flow (the kept path, the email given) lives.
const flowTTL = 30 * time.Minute

// maxFormBytes bounds every form body.
const maxFormBytes = 8 << 10

// serveAuth routes the pages under AuthPath; sub is the path below it.
func (g *Gate) serveAuth(w http.ResponseWriter, r *http.Request, store storage.Store, sub string) error {
	switch {
	case sub == "/signin" || sub == "" || sub == "/":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return g.signInPage(w, r, store)
		case http.MethodPost:
			return g.submitEmail(w, r, store)
		}
	case sub == "/code":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return g.codePage(w, r, store)
		case http.MethodPost:
			return g.submitCode(w, r, store)
		}
	case sub == "/resend":
		if r.Method == http.MethodPost {
			return g.resend(w, r, store)
		}
	case sub == "/signout":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return g.signOutPage(w, r, store)
		case http.MethodPost:
			return g.signOut(w, r, store)
		}
	case strings.HasPrefix(sub, "/sso/"):
		name, callback := strings.CutSuffix(strings.TrimPrefix(sub, "/sso/"), "/callback")
		p := g.ssoProvider(name)
		if p == nil {
			return g.message(w, http.StatusNotFound, "Sign-in failed", "This single sign-on option is not available.", "", g.AuthPath+"/signin", "Back to sign in")
		}
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			if callback {
				return g.ssoCallback(w, r, store, p)
			}
			return g.ssoStart(w, r, store, p)
		}
	case strings.HasPrefix(sub, "/link/"):
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return g.openLink(w, r, store, strings.TrimPrefix(sub, "/link/"))
		}
	default:
		return g.message(w, http.StatusNotFound, "Page not found", "There is no such sign-in page.", "", g.AuthPath+"/signin", "Go to sign in")
	}
	w.Header().Set("Allow", "GET, HEAD, POST")
	return g.message(w, http.StatusMethodNotAllowed, "Method not allowed", "This page does not accept that kind of request.", "", g.AuthPath+"/signin", "Go to sign in")
}

// message renders the message page.
func (g *Gate) message(w http.ResponseWriter, status int, heading, msg, next, actionURL, actionLabel string) error {
	return g.Portal.Pages.render(w, status, pageMessage, pageData{
		WorkspaceTitle: g.Workspace.Title,
		AuthPath:       g.AuthPath,
		Heading:        heading,
		Message:        msg,
		Next:           next,
		ActionURL:      actionURL,
		ActionLabel:    actionLabel,
	})
}

// flow returns the request's live sign-in flow for this workspace.
func (g *Gate) flow(r *http.Request, store storage.Store) (storage.SignInFlow, string, error) {
	c, err := r.Cookie(cookieName(r, cookieFlow))
	if err != nil || !validID(c.Value) {
		return storage.SignInFlow{}, "", storage.ErrNotFound
	}
	f, err := store.Flow(r.Context(), hashID(c.Value))
	if err != nil {
		return f, "", err
	}
	if f.Workspace != g.Workspace.Name {
		return storage.SignInFlow{}, "", storage.ErrNotFound
	}
	return f, c.Value, nil
}

// startFlow keeps returnTo in the request's flow, reusing a live flow when
// reuse is set, or starting a new one (with a new cookie) otherwise.
func (g *Gate) startFlow(w http.ResponseWriter, r *http.Request, store storage.Store, returnTo string, reuse bool) (storage.SignInFlow, error) {
	now := g.Portal.Now()
	if reuse {
		if f, id, err := g.flow(r, store); err == nil {
			f.ReturnTo = returnTo
			f.ExpiresAt = now.Add(flowTTL)
			if err := store.PutFlow(r.Context(), f); err != nil {
				return f, err
			}
			// The browser must keep the cookie as long as the flow lives.
			setCookie(w, r, cookieFlow, id, flowTTL)
			return f, nil
		}
	}
	id := newID()
	f := storage.SignInFlow{
		IDHash:    hashID(id),
		Workspace: g.Workspace.Name,
		ReturnTo:  returnTo,
		CreatedAt: now,
		ExpiresAt: now.Add(flowTTL),
	}
	if err := store.PutFlow(r.Context(), f); err != nil {
		return f, err
	}
	setCookie(w, r, cookieFlow, id, flowTTL)
	return f, nil
}

// csrfToken binds a form to the flow (or session) id in the browser's
// cookie.
func (g *Gate) csrfToken(id string) string {
	rt := g.Portal.state.Load()
	if rt == nil {
		return ""
	}
	mac := keyed(derive(rt.secret, "csrf", g.Workspace.Name), id)
	return base64.RawURLEncoding.EncodeToString(mac[:18])
}

func (g *Gate) checkCSRF(r *http.Request, id string) bool {
	want := g.csrfToken(id)
	got := r.PostFormValue("csrf")
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// formFlow parses a POSTed form and returns its flow after checking the
// CSRF token. ok is false when an answer has already been written.
func (g *Gate) formFlow(w http.ResponseWriter, r *http.Request, store storage.Store) (storage.SignInFlow, string, bool, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return storage.SignInFlow{}, "", false, g.message(w, http.StatusBadRequest, "Sign-in failed",
			"The form could not be read.", "", g.AuthPath+"/signin", "Start again")
	}
	f, id, err := g.flow(r, store)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return f, "", false, g.storageFailed(w, r, "reading sign-in flow", err)
		}
		return f, "", false, g.message(w, http.StatusBadRequest, "Sign-in failed",
			"Your sign-in session has expired.", "Start again from the sign-in page.", g.AuthPath+"/signin", "Start again")
	}
	if !g.checkCSRF(r, id) {
		return f, "", false, g.message(w, http.StatusForbidden, "Sign-in failed",
			"This form was not sent from the sign-in page.", "Start again from the sign-in page.", g.AuthPath+"/signin", "Start again")
	}
	return f, id, true, nil
}

func (g *Gate) signInPage(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	id := ""
	if _, fid, err := g.flow(r, store); err == nil {
		id = fid
	} else {
		// Arriving at the sign-in page directly: start a flow for "/".
		nid := newID()
		now := g.Portal.Now()
		f := storage.SignInFlow{IDHash: hashID(nid), Workspace: g.Workspace.Name, ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(flowTTL)}
		if err := store.PutFlow(r.Context(), f); err != nil {
			return g.storageFailed(w, r, "starting sign-in flow", err)
		}
		setCookie(w, r, cookieFlow, nid, flowTTL)
		id = nid
	}
	return g.renderSignIn(w, http.StatusOK, id, "", "")
}

func (g *Gate) ssoButtons() []ssoButton {
	out := make([]ssoButton, len(g.Workspace.SSO))
	for i, p := range g.Workspace.SSO {
		out[i] = ssoButton{Name: p.Name, Label: p.Label}
	}
	return out
}

func (g *Gate) renderSignIn(w http.ResponseWriter, status int, flowID, email, errMsg string) error {
	return g.Portal.Pages.render(w, status, pageSignIn, pageData{
		WorkspaceTitle: g.Workspace.Title,
		AuthPath:       g.AuthPath,
		Heading:        "Sign in",
		CSRF:           g.csrfToken(flowID),
		Error:          errMsg,
		EmailInput:     email,
		DirectoryMatch: g.Workspace.SSODirectoryMatch,
		SSO:            g.ssoButtons(),
	})
}

// submitEmail takes the email of a shared-link sign-in. The answer is the
// same whether or not the email belongs to an eligible contact: the contact
// is looked up and the code made by the outbox worker, never here.
func (g *Gate) submitEmail(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	f, id, ok, err := g.formFlow(w, r, store)
	if !ok {
		return err
	}
	email, verr := storage.NormalizeEmail(r.PostFormValue("email"))
	if verr != nil {
		return g.renderSignIn(w, http.StatusBadRequest, id, r.PostFormValue("email"), "Enter a valid email address, such as name@example.com.")
	}
	f.Email, f.ContactID, f.Method = email, "", "code"
	return g.sendCode(w, r, store, f, id, false)
}

// rateLimit is one counter a request is checked against: key names the
// kind, the scope ("ip", "email", "ws") and its value.
type rateLimit struct {
	key   string
	limit int
}

// overLimit counts the request against each limit; when one is exceeded it
// audits that and answers 429 on the code page, saying when to try again.
func (g *Gate) overLimit(w http.ResponseWriter, r *http.Request, store storage.Store, f storage.SignInFlow, flowID string,
	ev storage.AuditEvent, what, msg string, limits ...rateLimit) (answered bool, err error) {
	window := g.Portal.Limits.Window
	for _, l := range limits {
		ok, wait, err := store.Hit(r.Context(), l.key, l.limit, window)
		if err != nil {
			return true, g.storageFailed(w, r, "counting "+what, err)
		}
		if !ok {
			ev.Event, ev.Reason = EventRateLimited, what+": "+strings.SplitN(l.key, "/", 3)[1]
			g.Portal.Audit(r.Context(), ev)
			return true, g.renderCode(w, http.StatusTooManyRequests, f, flowID, msg+" Try again in "+humanDuration(wait)+".", "")
		}
	}
	return false, nil
}

// sendCode applies the rate limits and the resend cooldown, queues a code
// for f's contact, keeps the flow and shows the code page.
func (g *Gate) sendCode(w http.ResponseWriter, r *http.Request, store storage.Store, f storage.SignInFlow, flowID string, resend bool) error {
	ctx := r.Context()
	ws := g.Workspace
	lim := g.Portal.Limits
	ip := clientIP(r)
	ev := storage.AuditEvent{Workspace: ws.Name, Email: f.Email, ContactID: f.ContactID, Method: f.Method, ClientIP: ip, UserAgent: userAgent(r)}

	if answered, err := g.overLimit(w, r, store, f, flowID, ev, "code sends", "Too many codes were requested.",
		rateLimit{"send/ip/" + ip, lim.SendsPerIP},
		rateLimit{"send/email/" + ws.Name + "/" + f.Email, lim.SendsPerEmail},
		rateLimit{"send/ws/" + ws.Name, lim.SendsPerWorkspace},
	); answered {
		return err
	}

	now := g.Portal.Now()
	ok, wait, err := store.Cooldown(ctx, "resend/"+ws.Name+"/"+f.Email, ws.ResendCooldown)
	if err != nil {
		return g.storageFailed(w, r, "checking resend cooldown", err)
	}
	notice := ""
	if ok {
		job, _ := json.Marshal(codeJob{Workspace: ws.Name, Email: f.Email, ContactID: f.ContactID, Method: f.Method, ClientIP: ip})
		if err := store.Enqueue(ctx, storage.OutboxMessage{Kind: kindCode, Payload: job, NotAfter: now.Add(ws.CodeTTL)}); err != nil {
			return g.storageFailed(w, r, "queueing code email", err)
		}
		g.Portal.outbox.Wake()
		f.ResendAt = now.Add(ws.ResendCooldown)
		f.Held = false
		ev.Event = EventCodeRequested
		g.Portal.Audit(ctx, ev)
		if resend {
			notice = "A new code is on its way."
		}
	} else {
		f.ResendAt = now.Add(wait)
		f.Held = true
	}
	f.ExpiresAt = now.Add(flowTTL)
	if err := store.PutFlow(ctx, f); err != nil {
		return g.storageFailed(w, r, "keeping sign-in flow", err)
	}
	if flowID != "" {
		// The flow lives flowTTL from now: so must its cookie.
		setCookie(w, r, cookieFlow, flowID, flowTTL)
	}
	if resend {
		status := http.StatusOK
		errMsg := ""
		if !ok {
			status = http.StatusTooManyRequests
			errMsg = "Please wait " + strconv.Itoa(waitSeconds(wait)) + " seconds before asking for another code."
		}
		return g.renderCode(w, status, f, flowID, errMsg, notice)
	}
	http.Redirect(w, r, g.AuthPath+"/code", http.StatusSeeOther)
	return nil
}

func waitSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func humanDuration(d time.Duration) string {
	if d < time.Minute {
		return strconv.Itoa(waitSeconds(d)) + " seconds"
	}
	return strconv.Itoa(int((d+time.Minute-1)/time.Minute)) + " minutes"
}

func (g *Gate) codePage(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	f, id, err := g.flow(r, store)
	if err != nil || f.Email == "" {
		http.Redirect(w, r, g.AuthPath+"/signin", http.StatusSeeOther)
		return nil
	}
	notice := ""
	if f.Held {
		notice = heldNotice
	}
	return g.renderCode(w, http.StatusOK, f, id, "", notice)
}

// heldNotice explains a code page that sent no new code: one went to the
// same email moments ago (from this browser or another). The cooldown runs
// per email whether or not it matches a contact, so this tells nothing
// about the contact list.
const heldNotice = "A code was emailed to this address moments ago, so no new one was sent. Use that code, or if you have already used it, ask for a new one when the Resend button is ready."

func (g *Gate) renderCode(w http.ResponseWriter, status int, f storage.SignInFlow, flowID, errMsg, notice string) error {
	wait := 0
	if left := f.ResendAt.Sub(g.Portal.Now()); left > 0 {
		wait = waitSeconds(left)
	}
	return g.Portal.Pages.render(w, status, pageCode, pageData{
		WorkspaceTitle: g.Workspace.Title,
		AuthPath:       g.AuthPath,
		Heading:        "Enter your sign-in code",
		CSRF:           g.csrfToken(flowID),
		Error:          errMsg,
		Notice:         notice,
		MaskedEmail:    maskEmail(f.Email),
		CodeTTL:        humanDuration(g.Workspace.CodeTTL),
		Wait:           wait,
	})
}

func (g *Gate) resend(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	f, id, ok, err := g.formFlow(w, r, store)
	if !ok {
		return err
	}
	if f.Email == "" {
		http.Redirect(w, r, g.AuthPath+"/signin", http.StatusSeeOther)
		return nil
	}
	return g.sendCode(w, r, store, f, id, true)
}

const failedCode = "Sign-in failed: the code is wrong or has expired."

// submitCode checks a code and, when it is right, signs the contact in.
func (g *Gate) submitCode(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	f, id, ok, err := g.formFlow(w, r, store)
	if !ok {
		return err
	}
	if f.Email == "" {
		http.Redirect(w, r, g.AuthPath+"/signin", http.StatusSeeOther)
		return nil
	}
	ctx := r.Context()
	ws := g.Workspace
	lim := g.Portal.Limits
	ip := clientIP(r)
	ev := storage.AuditEvent{Workspace: ws.Name, Email: f.Email, ContactID: f.ContactID, Method: f.Method, ClientIP: ip, UserAgent: userAgent(r)}
	if answered, err := g.overLimit(w, r, store, f, id, ev, "code tries", "Too many sign-in attempts.",
		rateLimit{"try/ip/" + ip, lim.TriesPerIP},
		rateLimit{"try/ws/" + ws.Name, lim.TriesPerWorkspace},
	); answered {
		return err
	}

	code, valid := NormalizeCode(r.PostFormValue("code"))
	if !valid {
		ev.Event, ev.Reason = EventCodeRejected, "malformed"
		g.Portal.Audit(ctx, ev)
		return g.renderCode(w, http.StatusUnauthorized, f, id,
			"Sign-in failed: a code has 7 letters and digits, like ABC-2345. Check the email and try again.", "")
	}
	contact, err := g.flowContact(ctx, store, f)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			return g.storageFailed(w, r, "finding contact", err)
		}
		ev.Event, ev.Reason = EventCodeRejected, "no eligible contact"
		g.Portal.Audit(ctx, ev)
		return g.renderCode(w, http.StatusUnauthorized, f, id, failedCode+" Check the code, or ask for a new one.", "")
	}
	ev.ContactID = contact.ID
	res, err := store.RedeemCode(ctx, ws.Name, contact.ID, g.codeHash(contact.ID, code), MaxCodeTries)
	if err != nil {
		return g.storageFailed(w, r, "redeeming code", err)
	}
	switch res {
	case storage.CodeAccepted:
		ev.Event = EventCodeAccepted
		g.Portal.Audit(ctx, ev)
		return g.signIn(w, r, store, f, contact, f.Method)
	case storage.CodeDead:
		ev.Event, ev.Reason = EventCodeRejected, "too many wrong tries"
		g.Portal.Audit(ctx, ev)
		return g.renderCode(w, http.StatusUnauthorized, f, id, "Sign-in failed: too many wrong codes. This code no longer works; ask for a new one with Resend code.", "")
	case storage.CodeMissing:
		ev.Event, ev.Reason = EventCodeRejected, "expired or unknown"
	default:
		ev.Event, ev.Reason = EventCodeRejected, "wrong"
	}
	g.Portal.Audit(ctx, ev)
	return g.renderCode(w, http.StatusUnauthorized, f, id, failedCode+" Check the code, or ask for a new one.", "")
}

// flowContact is the active contact a flow signs in.
func (g *Gate) flowContact(ctx context.Context, store storage.Store, f storage.SignInFlow) (storage.Contact, error) {
	var c storage.Contact
	var err error
	if f.ContactID != "" {
		c, err = store.Contact(ctx, g.Workspace.Name, f.ContactID)
	} else {
		c, err = store.ContactByEmail(ctx, g.Workspace.Name, f.Email)
	}
	if err == nil && !c.Active() {
		err = storage.ErrNotFound
	}
	return c, err
}

func (g *Gate) codeHash(contactID, code string) []byte {
	rt := g.Portal.state.Load()
	return keyed(derive(rt.secret, "code", g.Workspace.Name), contactID, code)
}

// signIn starts a new session for contact, ends the flow and sends the
// browser to the path it first asked for.
func (g *Gate) signIn(w http.ResponseWriter, r *http.Request, store storage.Store, f storage.SignInFlow, contact storage.Contact, method string) error {
	ctx := r.Context()
	now := g.Portal.Now()
	id := newID()
	sess := storage.Session{
		IDHash:    hashID(id),
		Workspace: g.Workspace.Name,
		ContactID: contact.ID,
		Method:    method,
		CSRF:      newID(),
		ClientIP:  clientIP(r),
		UserAgent: userAgent(r),
		CreatedAt: now,
		LastSeen:  now,
		ExpiresAt: now.Add(g.Workspace.SessionTTL),
		Idle:      g.Workspace.SessionIdle,
	}
	if err := store.PutSession(ctx, sess); err != nil {
		return g.storageFailed(w, r, "creating session", err)
	}
	// The old session (if any) ends: a new id at every sign-in.
	if c, err := r.Cookie(cookieName(r, cookieSession)); err == nil && validID(c.Value) {
		_ = store.DeleteSession(ctx, hashID(c.Value))
	}
	if err := store.DeleteFlow(ctx, f.IDHash); err != nil {
		g.Portal.Logger.Warn("ending sign-in flow", zap.Error(err))
	}
	setCookie(w, r, cookieFlow, "", -1)
	setCookie(w, r, cookieSession, id, g.Workspace.SessionTTL)
	to := "/"
	if p, ok := SafeReturnPath(f.ReturnTo); ok {
		to = p
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// signOutPage asks to confirm signing out, so a portal can offer sign-out
// with a plain link to /_portal/signout.
func (g *Gate) signOutPage(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	sess, contact, err := g.signedIn(r, store)
	if err != nil {
		http.Redirect(w, r, g.AuthPath+"/signin", http.StatusSeeOther)
		return nil
	}
	return g.Portal.Pages.render(w, http.StatusOK, pageSignOut, pageData{
		WorkspaceTitle: g.Workspace.Title,
		AuthPath:       g.AuthPath,
		Heading:        "Sign out",
		CSRF:           sess.CSRF,
		SignedInAs:     contact.Email,
	})
}

// signOut ends the session and goes back to sign in. The form must show
// that the contact sent it: the confirmation page's token, or, for a plain
// sign-out button in the portal, the browser's Sec-Fetch-Site or Origin
// naming this site. A post from another site changes nothing, not even the
// cookie.
func (g *Gate) signOut(w http.ResponseWriter, r *http.Request, store storage.Store) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	_ = r.ParseForm()
	refuse := func() error {
		return g.message(w, http.StatusForbidden, "Sign-out failed",
			"This form was not sent from the portal.", "Use the sign-out button in the portal.", "/", "Back to the portal")
	}
	said, same := browserOrigin(r)
	if said && !same {
		return refuse()
	}
	c, err := r.Cookie(cookieName(r, cookieSession))
	if err == nil && validID(c.Value) {
		ctx := r.Context()
		hash := hashID(c.Value)
		sess, err := store.Session(ctx, hash)
		if err == nil {
			switch token := r.PostFormValue("csrf"); {
			case token != "":
				if subtle.ConstantTimeCompare([]byte(sess.CSRF), []byte(token)) != 1 {
					return refuse()
				}
			case !same:
				// No token and no word from the browser: ask.
				return g.signOutPage(w, r, store)
			}
			if err := store.DeleteSession(ctx, hash); err != nil {
				return g.storageFailed(w, r, "ending session", err)
			}
			g.Portal.Audit(ctx, storage.AuditEvent{Workspace: g.Workspace.Name, Event: EventSessionEnded, ContactID: sess.ContactID,
				Method: sess.Method, ClientIP: clientIP(r), UserAgent: userAgent(r)})
		}
	}
	setCookie(w, r, cookieSession, "", -1)
	http.Redirect(w, r, g.AuthPath+"/signin", http.StatusSeeOther)
	return nil
}

// Outbox message kinds.
const kindCode = "code"

// codeJob asks the outbox worker to make and email a code. It holds no
// code: the worker makes a fresh one on every attempt, so no code ever
// rests in storage except as a hash.
type codeJob struct {
	Workspace string `json:"workspace"`
	Email     string `json:"email"`
	ContactID string `json:"contact_id,omitempty"`
	Method    string `json:"method,omitempty"`
	ClientIP  string `json:"client_ip,omitempty"`
}

// deliver is the outbox worker's work for one message.
func (p *Portal) deliver(ctx context.Context, m storage.OutboxMessage) error {
	if m.Kind != kindCode {
		return fmt.Errorf("%w: unknown outbox message kind %q", mail.ErrPermanent, m.Kind)
	}
	var job codeJob
	if err := json.Unmarshal(m.Payload, &job); err != nil {
		return fmt.Errorf("%w: decoding code job: %v", mail.ErrPermanent, err)
	}
	ws, ok := p.Workspaces[job.Workspace]
	if !ok {
		return fmt.Errorf("%w: workspace %q is no longer configured", mail.ErrPermanent, job.Workspace)
	}
	rt := p.state.Load()
	if rt == nil {
		return errUnavailable
	}
	g := &Gate{Portal: p, Workspace: ws}
	ev := storage.AuditEvent{Workspace: ws.Name, Email: job.Email, ContactID: job.ContactID, Method: job.Method, ClientIP: job.ClientIP}
	contact, err := g.flowContact(ctx, rt.store, storage.SignInFlow{Email: job.Email, ContactID: job.ContactID})
	if errors.Is(err, storage.ErrNotFound) {
		ev.Event, ev.Reason = EventCodeNotSent, "no eligible contact"
		p.Audit(ctx, ev)
		return nil
	}
	if err != nil {
		return err
	}
	ev.ContactID = contact.ID
	now := p.Now()
	code := NewCode()
	if err := rt.store.PutCode(ctx, ws.Name, contact.ID, storage.Code{
		Hash: g.codeHash(contact.ID, code), IssuedAt: now, ExpiresAt: now.Add(ws.CodeTTL),
	}); err != nil {
		return err
	}
	text, html, err := p.Pages.codeMail(mailData{WorkspaceTitle: ws.Title, Code: FormatCode(code), CodeTTL: humanDuration(ws.CodeTTL)})
	if err != nil {
		return fmt.Errorf("%w: %v", mail.ErrPermanent, err)
	}
	if err := p.Sender.Send(ctx, mail.Message{
		To:      contact.Email,
		Subject: "Your sign-in code for " + ws.Title,
		Text:    text,
		HTML:    html,
	}); err != nil {
		return err
	}
	ev.Event = EventCodeSent
	p.Audit(ctx, ev)
	return nil
}

// giveUp audits a message the outbox will not retry.
func (p *Portal) giveUp(m storage.OutboxMessage, err error) {
	var job codeJob
	_ = json.Unmarshal(m.Payload, &job)
	p.Logger.Error("mail not delivered", zap.String("id", m.ID), zap.Int("attempts", m.Attempts), zap.Error(err))
	p.Audit(context.Background(), storage.AuditEvent{Workspace: job.Workspace, Event: EventMailFailed,
		Email: job.Email, ContactID: job.ContactID, Method: job.Method, Reason: err.Error()})
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
