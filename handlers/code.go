package handlers

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kdesk/portalgate/storage"
)

// Sign-in with an emailed code: the shared portal link's email form, the
// code page, resend, and the code's own rules.

// codeAlphabet has no look-alikes: no 0/O, no 1/I/L.
const codeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

// CodeLength is the number of characters in a sign-in code.
const CodeLength = 7

// NewCode returns a random sign-in code.
func NewCode() string {
	return sampleCode(func(buf []byte) {
		if _, err := rand.Read(buf); err != nil {
			panic("crypto/rand: " + err.Error())
		}
	})
}

// deriveCode returns the sign-in code of one delivery: HMAC-SHA256 under
// key (the workspace's code-minting sub-key) of parts and a block counter,
// expanded block by block as far as rejection sampling needs. The same
// parts always give the same code, so a message the outbox delivers again
// after a crash mails the code the first delivery did, and the code is
// never kept anywhere but in the mail and as its hash.
func deriveCode(key []byte, parts ...string) string {
	block := 0
	return sampleCode(func(buf []byte) {
		sum := keyed(key, append(parts, strconv.Itoa(block))...)
		block++
		copy(buf, sum)
	})
}

// sampleCode maps bytes from fill onto codeAlphabet without bias, by
// rejection sampling: bytes past the largest multiple of its length are
// skipped, so every character is equally likely.
func sampleCode(fill func(buf []byte)) string {
	var out [CodeLength]byte
	var buf [16]byte
	n := 0
	for n < CodeLength {
		fill(buf[:])
		for _, b := range buf {
			if int(b) >= 256-256%len(codeAlphabet) {
				continue
			}
			out[n] = codeAlphabet[int(b)%len(codeAlphabet)]
			if n++; n == CodeLength {
				break
			}
		}
	}
	return string(out[:])
}

// NormalizeCode accepts a code typed in any case, with spaces or dashes, and
// returns its canonical form, or false if it cannot be a code.
func NormalizeCode(s string) (string, bool) {
	if len(s) > 64 {
		return "", false
	}
	var b strings.Builder
	b.Grow(CodeLength)
	for _, r := range s {
		switch {
		case r == ' ' || r == '-' || r == '\t' || r == '\u00a0':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		if r > 0x7f || strings.IndexByte(codeAlphabet, byte(r)) < 0 {
			return "", false
		}
		if b.Len() == CodeLength {
			return "", false
		}
		b.WriteByte(byte(r))
	}
	if b.Len() != CodeLength {
		return "", false
	}
	return b.String(), true
}

// FormatCode groups a code for reading: "ABC-DEFG".
func FormatCode(c string) string {
	if len(c) != CodeLength {
		return c
	}
	return c[:3] + "-" + c[3:]
}

// codeHash is the stored form of a contact's code.
func (k *workspaceKeys) codeHash(contactID, code string) []byte {
	return keyed(k.code, contactID, code)
}

func (q *request) signInPage() error {
	key, err := q.formKey()
	if err != nil {
		return q.failed("reading sign-in flow", err)
	}
	// Back from the code page ("Change email"): the address typed before.
	email := ""
	if f, _, err := q.flow(); err == nil && f.Method == "code" {
		email = f.Email
	}
	if n, ok := q.takeNotice(); ok && n.key == "signin_invalid_email" {
		return q.renderSignIn(n.status(), key, n.input, n.text(q), "")
	}
	return q.renderSignIn(http.StatusOK, key, email, "", q.signedOutNotice(q.r.URL.Query().Get("signed_out")))
}

func (q *request) renderSignIn(status int, flowID, email, errMsg, notice string) error {
	d := q.page(q.t("signin_heading"))
	// A signed-in contact is told so, with Continue and Sign out, above
	// the form for signing in as someone else.
	if _, c, err := q.g.signedIn(q.r, q.store); err == nil {
		d.Heading, d.SignedInAs = q.t("signed_in_heading"), c.Email
	} else if !errors.Is(err, errSignedOut) {
		return q.failed("reading session", err)
	}
	d.Languages = q.g.languageChoices(q.tr)
	d.CSRF = q.csrfToken(flowID)
	d.Error, d.Notice = errMsg, notice
	d.EmailInput = email
	d.DirectoryMatch = q.ws.SSODirectoryMatch
	d.SSO = q.ws.ssoButtons()
	return q.ws.pages(q.g.portal).render(q.w, status, pageSignIn, d)
}

// submitEmail takes the email of a shared-link sign-in. The answer is the
// same whether or not the email belongs to an eligible contact: the contact
// is looked up and the code made by the outbox worker, never here.
func (q *request) submitEmail() error {
	f, id, fresh, ok, err := q.formFlow(true, nil)
	if !ok {
		return err
	}
	email, verr := storage.NormalizeEmail(q.r.PostFormValue("email"))
	if verr != nil {
		return q.redirectWith("/signin", carried{key: "signin_invalid_email", input: q.r.PostFormValue("email")})
	}
	f.Email, f.ContactID, f.Method = email, "", "code"
	return q.sendCode(f, id, false, fresh)
}

// flowEvent is an audit event about f's sign-in.
func (q *request) flowEvent(f storage.SignInFlow) storage.AuditEvent {
	ev := q.event("")
	ev.Email, ev.ContactID, ev.Method = f.Email, f.ContactID, f.Method
	return ev
}

// sendCode queues a code for f's contact, keeps the flow and shows the
// code page. The resend cooldown comes first, so a refused resend or a
// re-opened link costs nothing; then the client's request limit, and for
// a fresh flow (not stored yet) the new-flow limit before it. The send
// limits are the outbox worker's: they count only codes that go out.
func (q *request) sendCode(f storage.SignInFlow, flowID string, resend, fresh bool) error {
	ctx := q.r.Context()
	ws := q.ws
	ev := q.flowEvent(f)

	now := q.now()
	f.ExpiresAt = now.Add(flowTTL)
	limits := []rateLimit{{key: "req/ip/" + q.net, limit: q.g.portal.Limits.RequestsPerIP}}
	if fresh {
		// Counted in the same call: one round trip, where flowAllowed
		// would be another.
		limits = append([]rateLimit{q.flowLimit()}, limits...)
	}
	job, _ := json.Marshal(codeJob{Workspace: ws.Name, Email: f.Email, ContactID: f.ContactID, FlowHash: f.CodeFlow(), Method: f.Method, ClientIP: q.ip, Lang: q.tr.Lang(), Browser: browserName(q.ua)})
	queued := f
	queued.ResendAt = now.Add(ws.ResendCooldown)
	queued.Held = false
	queued.CodesSent++
	requested := ev
	requested.Event = EventCodeRequested
	requested = q.g.portal.stamp(requested)
	// The cooldown, the client's request limit, and the message with the
	// flow that now counts it and the audit event: one store call.
	res, err := q.store.RequestCode(context.WithoutCancel(ctx), "resend/"+ws.Name+"/"+f.Email, ws.ResendCooldown,
		hitsOf(q.g.portal.Limits.Window, limits),
		storage.OutboxMessage{Kind: kindCode, Payload: job, NotAfter: now.Add(ws.CodeTTL)}, queued, requested)
	if err != nil {
		return q.failed("queueing code email", err)
	}
	ok, wait := res.Wait <= 0, res.Wait
	switch {
	case res.Hits.Over >= 0:
		what := "sign-in requests"
		if fresh && res.Hits.Over == 0 {
			what = newFlows
		}
		return q.refuse(ev, what, limits[res.Hits.Over], res.Hits.RetryAfter)
	case ok:
		f = queued
		q.g.portal.outbox.Wake()
		q.g.portal.announce(ctx, q.rt, requested)
	default:
		// Within the cooldown nothing was counted; a fresh flow is stored
		// all the same, so it counts against the new-flow limit first.
		if fresh {
			if answered, err := q.flowAllowed(); answered {
				return err
			}
		}
		f.ResendAt = now.Add(wait)
		f.Held = true
		if err := q.store.PutFlow(ctx, f); err != nil {
			return q.failed("keeping sign-in flow", err)
		}
	}
	if flowID != "" {
		// The flow lives flowTTL from now: so must its cookie.
		q.setCookie(cookieFlow, flowID, flowTTL)
	}
	if resend {
		if !ok {
			q.w.Header().Set("Retry-After", strconv.Itoa(waitSeconds(wait)))
			return q.redirectWith("/code", carried{key: "code_please_wait", count: waitSeconds(wait)})
		}
		return q.redirectWith("/code", carried{key: "code_new_sent"})
	}
	return q.redirect("/code")
}

func waitSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func (q *request) codePage() error {
	f, id, err := q.flow()
	if err != nil || f.Email == "" {
		return q.redirect("/signin")
	}
	notice := ""
	if f.Held {
		notice = q.t("code_held")
		if f.LinkHash == "" {
			notice = q.t("code_held_elsewhere")
		}
	}
	// The answer to a form that redirected here (Post/Redirect/Get).
	if n, ok := q.takeNotice(); ok {
		switch st := n.status(); {
		case st == http.StatusOK:
			notice = n.text(q)
		case n.key != "signin_invalid_email":
			if st == http.StatusTooManyRequests {
				if left := f.ResendAt.Sub(q.now()); left > 0 {
					q.w.Header().Set("Retry-After", strconv.Itoa(waitSeconds(left)))
				}
			}
			return q.renderCode(st, f, id, n.text(q), "")
		}
	}
	return q.renderCode(http.StatusOK, f, id, "", notice)
}

// The held notices (code_held, code_held_elsewhere) explain a code page
// that sent no new code: one went to the same email moments ago (from this
// browser or another). The cooldown runs per email whether or not it
// matches a contact, so this tells nothing about the contact list. On a
// sign-in started on the sign-in page the notice adds that a code works
// only in the browser that asked for it (so wrong tries elsewhere cannot
// kill it), and the code sent moments ago may have been asked for in
// another one.

func (q *request) renderCode(status int, f storage.SignInFlow, flowID, errMsg, notice string) error {
	wait := 0
	if left := f.ResendAt.Sub(q.now()); left > 0 {
		wait = waitSeconds(left)
	}
	d := q.page(q.t("code_heading"))
	d.Languages = q.g.languageChoices(q.tr)
	d.CSRF = q.csrfToken(flowID)
	d.Error, d.Notice = errMsg, notice
	// On the shared link the address is the contact's own input, shown
	// in full (the page reads the same whether or not it is a contact's);
	// a personalized link's address is the contact's, and only hinted at.
	d.Personal = f.Method == "link"
	d.ChangeEmail = !d.Personal
	d.MaskedEmail = f.Email
	if d.Personal {
		d.MaskedEmail = maskEmail(f.Email)
	}
	if d.MaskedEmail == "" {
		d.MaskedEmail = q.t("code_your_email")
	}
	d.CodeTTL = q.tr.Duration(q.ws.CodeTTL)
	d.Wait = wait
	d.MailDelayed = q.g.portal.MailDelayed()
	return q.ws.pages(q.g.portal).render(q.w, status, pageCode, d)
}

func (q *request) resend() error {
	f, id, _, ok, err := q.formFlow(false, nil)
	if !ok {
		return err
	}
	if f.Email == "" {
		return q.redirect("/signin")
	}
	return q.sendCode(f, id, true, false)
}

// The answers to a code (catalog keys). They are the same for an active
// contact, a disabled one and an address that is no contact at all.
const (
	failedCode = "code_failed"
	deadCode   = "code_dead"
)

// submitCode checks a code and, when it is right, signs the contact in.
// Every answer but success takes the same store work and reads the same
// whether or not the flow's email belongs to an eligible contact.
func (q *request) submitCode() error {
	// The flow comes with its contact, in one store call.
	var contact storage.Contact
	f, _, _, ok, err := q.formFlow(false, &contact)
	if !ok {
		return err
	}
	if f.Email == "" {
		return q.redirect("/signin")
	}
	ctx := q.r.Context()
	ws := q.ws
	lim := q.g.portal.Limits
	ev := q.flowEvent(f)
	tryLimits := []rateLimit{
		{key: "try/ip/" + q.net, limit: lim.TriesPerIP},
		{key: "try/email/" + ws.Name + "/" + f.Email, limit: lim.TriesPerContact},
	}
	code, valid := NormalizeCode(q.r.PostFormValue("code"))
	if !valid {
		// A malformed code counts against the client and the contact,
		// not against this flow's tries at its code.
		if answered, err := q.overLimit(ev, "code tries", tryLimits...); answered {
			return err
		}
		ev.Event, ev.Reason = EventCodeRejected, "malformed"
		q.audit(ev)
		return q.redirectWith("/code", carried{key: "code_malformed"})
	}
	// Without an eligible contact the code is redeemed against a key no
	// contact has, so the store does the same work either way.
	eligible := contact.ID != "" && contact.Active()
	if !eligible {
		contact = storage.Contact{}
	}
	redeemID := contact.ID
	if !eligible {
		redeemID = "\x00nobody/" + f.Email
	}
	// One store call counts the try against the client, the contact and
	// this flow's latest code, in that order, and then redeems the code:
	// over a client or contact limit, the flow's tries and the code are
	// not touched. Past MaxCodeTries the code is dead for this flow
	// whatever is typed, and the last wrong try says so. (A day-long
	// window: the flow lives much less.)
	limits := append(tryLimits, rateLimit{key: "try/flow/" + f.IDHash + "/" + strconv.Itoa(f.CodesSent), limit: MaxCodeTries, window: 24 * time.Hour})
	// And when the code is accepted, the session starts in the same call;
	// it is built either way (for nobody: never accepted), for the same
	// work.
	who := contact
	who.ID = redeemID
	accepted := ev
	accepted.ContactID, accepted.Event = contact.ID, EventCodeAccepted
	start, sessionID := q.sessionStart(f, who, f.Method, accepted)
	counted, res, err := q.store.CountAndRedeemCode(context.WithoutCancel(ctx), hitsOf(lim.Window, limits), ws.Name, redeemID, f.CodeFlow(), q.keys.codeHash(redeemID, code), MaxCodeTries, &start)
	if err != nil {
		return q.failed("redeeming code", err)
	}
	if counted.Over >= 0 && counted.Over < len(tryLimits) {
		return q.refuse(ev, "code tries", limits[counted.Over], counted.RetryAfter)
	}
	tries := counted.Counts[len(counted.Counts)-1]
	if tries > MaxCodeTries {
		ev.Event, ev.Reason = EventCodeRejected, "too many wrong tries"
		q.audit(ev)
		return q.redirectWith("/code", carried{key: deadCode})
	}
	switch {
	case !eligible:
		ev.Event, ev.Reason = EventCodeRejected, "no eligible contact"
	case res == storage.CodeAccepted:
		return q.finishSignIn(f, sessionID, start.Events[0])
	case res == storage.CodeDead:
		ev.ContactID = contact.ID
		ev.Event, ev.Reason = EventCodeRejected, "too many wrong tries"
		q.audit(ev)
		return q.redirectWith("/code", carried{key: deadCode})
	case res == storage.CodeMissing:
		ev.ContactID = contact.ID
		ev.Event, ev.Reason = EventCodeRejected, "expired or unknown"
	default:
		ev.ContactID = contact.ID
		ev.Event, ev.Reason = EventCodeRejected, "wrong"
	}
	q.audit(ev)
	if tries == MaxCodeTries {
		return q.redirectWith("/code", carried{key: deadCode})
	}
	return q.redirectWith("/code", carried{key: failedCode})
}

// maskEmail shows enough of an address to recognise it: j***@acme.example.
// It keeps whole characters, never half of one; "" for no address.
func maskEmail(e string) string {
	at := strings.LastIndexByte(e, '@')
	if at < 1 {
		return ""
	}
	_, first := utf8.DecodeRuneInString(e)
	rest := utf8.RuneCountInString(e[first:at])
	return e[:first] + strings.Repeat("*", min(rest, 6)+1) + e[at:]
}
