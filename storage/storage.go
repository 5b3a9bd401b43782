package storage

import (
	"context"
	"errors"
	"regexp"
	"sort"
	"time"
)

// ErrNotFound is returned when a record does not exist or has expired.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps errors that mean the backend cannot be reached right
// now; callers fail closed and retry later.
var ErrUnavailable = errors.New("storage unavailable")

// Store is the state every flow needs: every role below, from one backend.
// Implementations must be safe for concurrent use; times are compared
// against the clock the store was built with, so expiry is testable
// without sleeping. A consumer that needs only some of it takes the role
// interfaces it uses.
type Store interface {
	Secrets
	Contacts
	Groups
	Flows
	Codes
	Sessions
	Limits
	Once
	Outbox
	AuditTrail
	Links
}

// Secrets keeps the instance secret that signs links and keys code hashes.
type Secrets interface {
	// Secret returns the instance secret, creating and keeping a new one
	// from generate when none is stored yet. Concurrent callers get the same
	// value.
	Secret(ctx context.Context, generate func() ([]byte, error)) ([]byte, error)
}

// Contacts keeps the people who may sign in to each workspace, with their
// email and directory indexes.
type Contacts interface {
	// PutContacts upserts contacts of a workspace in one transaction: either
	// all are written or none. The caller validates them first. A contact
	// written as disabled, or whose email changes, loses every session and
	// code in that same transaction: nothing revives them.
	PutContacts(ctx context.Context, workspace string, contacts []Contact) error
	// ReplaceContacts makes contacts the whole of the workspace's set
	// (see ContactSet: an import's origin, or a source), in one call with
	// one outcome, all or nothing: each is upserted, marked as a member
	// of the set, unless it is stored exactly so already; every other
	// active contact of the set is disabled and loses its sessions and
	// codes. Contacts outside the set are left alone. The caller
	// validates contacts first.
	ReplaceContacts(ctx context.Context, workspace string, set ContactSet, contacts []Contact) (ReplaceResult, error)
	// Contact returns one contact by id.
	Contact(ctx context.Context, workspace, id string) (Contact, error)
	// ContactByEmail returns the contact whose email matches, ignoring case.
	ContactByEmail(ctx context.Context, workspace, email string) (Contact, error)
	// ContactByDirectoryID returns the contact synced with that directory id.
	ContactByDirectoryID(ctx context.Context, workspace, directoryID string) (Contact, error)
	// Contacts lists every contact of a workspace, ordered by id.
	Contacts(ctx context.Context, workspace string) ([]Contact, error)
	// DeleteContact removes a contact, its indexes, its codes and every
	// session in one transaction, and reports how many live sessions
	// ended. ErrNotFound if absent.
	DeleteContact(ctx context.Context, workspace, id string) (int, error)
}

// Flows keeps sign-ins in progress, each until it expires.
type Flows interface {
	// PutFlow creates or replaces a sign-in flow until f.ExpiresAt.
	PutFlow(ctx context.Context, f SignInFlow) error
	// Flow returns a live sign-in flow by the hash of its id.
	Flow(ctx context.Context, idHash string) (SignInFlow, error)
	// DeleteFlow ends a sign-in flow; deleting a missing flow is not an error.
	DeleteFlow(ctx context.Context, idHash string) error
	// FlowContact returns a live sign-in flow, as Flow does, with the
	// contact it is for: the one its ContactID names, or else the one its
	// Email names in its workspace. The Contact is zero when there is
	// none (a flow without an email yet, an address that is no contact).
	// A backend that can reads both in one step; where it cannot, one
	// after the other (FlowContactEach).
	FlowContact(ctx context.Context, idHash string) (SignInFlow, Contact, error)
}

// Codes keeps the live sign-in codes of each contact, one per sign-in
// flow, and redeems them. A code belongs to (workspace, contact, flow id
// hash): wrong tries in one browser's flow never touch the code another
// flow is about to use, and deleting a contact removes all its codes.
type Codes interface {
	// PutCode stores a code for a contact's sign-in flow, replacing any
	// previous code of that flow; codes of other flows are untouched.
	// Storing the code the flow already holds (the same hash: an outbox
	// redelivery) keeps the wrong tries it has had.
	PutCode(ctx context.Context, workspace, contactID, flowHash string, c Code) error
	// CountAndPutCode is a code's sending store work: hits, as HitAll
	// does, then, when none is past its limit, PutCode. Past a limit the
	// flow's code is left as it was. A backend that can does it in one
	// transaction; where it cannot, by the calls in turn (CountAndPutEach).
	CountAndPutCode(ctx context.Context, hits []Hit, workspace, contactID, flowHash string, c Code) (HitResult, error)
	// RedeemCode compares hash against the live code of the contact's
	// flow in one atomic step: a match consumes the code; a mismatch counts
	// a try and kills the code once maxTries wrong tries are reached.
	RedeemCode(ctx context.Context, workspace, contactID, flowHash string, hash []byte, maxTries int) (CodeResult, error)
	// CountAndRedeemCode is a code try's store work: hits, as HitAll
	// does, then, when none is past its limit, RedeemCode; and when the
	// code is accepted and start is not nil, the session start, as
	// StartSession does. Past a limit the code is not touched (the
	// CodeResult is CodeMissing). A backend that can does it in one
	// transaction; where it cannot, by the calls in turn
	// (CountAndRedeemEach).
	CountAndRedeemCode(ctx context.Context, hits []Hit, workspace, contactID, flowHash string, hash []byte, maxTries int, start *SessionStart) (HitResult, CodeResult, error)
}

// SessionStart is what StartSession takes: the new session, the flow it
// ends and the session it replaces (each "" for none), and the sign-in's
// audit events.
type SessionStart struct {
	Session    Session
	EndFlow    string
	EndSession string
	Events     []AuditEvent
}

// Sessions keeps signed-in contacts, read on every request to the portal.
// A session is named by its workspace and id hash; one of another
// workspace is not found.
type Sessions interface {
	// PutSession stores a session until its absolute or idle expiry.
	PutSession(ctx context.Context, s Session) error
	// StartSession is a sign-in's write: it stores s as PutSession does
	// and ends the sign-in flow whose id hash is endFlow and the session
	// of s's workspace whose id hash is endSession (the browser's
	// previous one), each skipped when empty and not an error when
	// missing, and appends the audit events, as AppendAudit does. A
	// backend that can does it all in one transaction; one that cannot
	// stores the session first, and once it is stored the sign-in stands:
	// a failure to end the others or to append the events is logged, not
	// returned.
	StartSession(ctx context.Context, s Session, endFlow, endSession string, events ...AuditEvent) error
	// Session returns a live session of a workspace by the hash of its id.
	Session(ctx context.Context, workspace, idHash string) (Session, error)
	// TouchSession records activity, extending the idle expiry.
	TouchSession(ctx context.Context, workspace, idHash string, seen time.Time) error
	// DeleteSession ends one session; deleting a missing one is not an error.
	DeleteSession(ctx context.Context, workspace, idHash string) error
	// Sessions lists the live sessions of a workspace, of one contact when
	// contactID is not empty.
	Sessions(ctx context.Context, workspace, contactID string) ([]Session, error)
	// DeleteContactSessions ends every session of a contact and reports how
	// many there were.
	DeleteContactSessions(ctx context.Context, workspace, contactID string) (int, error)
}

// Limits keeps rate-limit counters and resend cooldowns.
type Limits interface {
	// Hit counts one event against key in a fixed window. It reports whether
	// the count is still within limit and, when not, how long until the
	// window resets.
	Hit(ctx context.Context, key string, limit int, window time.Duration) (ok bool, retryAfter time.Duration, err error)
	// Count counts one event against key in a fixed window, as Hit does
	// (the two share counters), and returns the window's count so far,
	// this event included, and how long until the window resets.
	Count(ctx context.Context, key string, window time.Duration) (n int, reset time.Duration, err error)
	// Cooldown starts a cooldown of length d on key unless one is running,
	// in which case it reports the time left.
	Cooldown(ctx context.Context, key string, d time.Duration) (ok bool, wait time.Duration, err error)
	// HitAll counts one event against each of hits in order and stops at
	// the first whose count passes its limit: that one is counted, the
	// ones after it are not touched, so a client over its own limit
	// spends no one else's budget. Each counter is the one Hit and Count
	// keep for its key and window. A backend that can does it in one
	// transaction; the counts are exact under concurrency either way.
	HitAll(ctx context.Context, hits ...Hit) (HitResult, error)
}

// Once keeps single-use values, such as SSO state and personalized-link
// nonces, that can be taken exactly once.
type Once interface {
	// PutOnce stores a single-use value until ttl passes.
	PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// TakeOnce returns and deletes a single-use value atomically; of two
	// concurrent callers only one gets it, the other gets ErrNotFound.
	TakeOnce(ctx context.Context, key string) ([]byte, error)
}

// Outbox keeps mail (and other deliveries) waiting for the outbox worker,
// so nothing is sent inside a request.
type Outbox interface {
	// Enqueue adds a message to the outbox.
	Enqueue(ctx context.Context, m OutboxMessage) error
	// EnqueueForFlow adds m to the outbox and stores f, the sign-in flow
	// that asked for it, as PutFlow does, and appends the audit events, as
	// AppendAudit does: a code request's write. A backend that can does it
	// in one transaction; where it cannot, the flow comes first, so a
	// message is never queued for a flow that was not kept, and the events
	// last, a failure to append them logged, not returned.
	EnqueueForFlow(ctx context.Context, m OutboxMessage, f SignInFlow, events ...AuditEvent) error
	// RequestCode is a code request's store work: first the resend
	// cooldown of cooldownKey (while one runs nothing else is done, and
	// Wait says how long is left); then hits, as HitAll does (past a limit
	// nothing is queued, no cooldown starts, and Hits.Over says which);
	// then the cooldown starts, as Cooldown does, and m, f and events are
	// stored, as EnqueueForFlow does. A backend that can does it in one
	// transaction; where it cannot, by calls in turn (RequestCodeEach).
	RequestCode(ctx context.Context, cooldownKey string, cooldown time.Duration, hits []Hit, m OutboxMessage, f SignInFlow, events ...AuditEvent) (CodeRequest, error)
	// ClaimOutbox leases up to max due messages for lease; a message is
	// handed to one claimer at a time and comes back when its lease lapses.
	ClaimOutbox(ctx context.Context, lease time.Duration, max int) ([]OutboxMessage, error)
	// AckOutbox removes a delivered (or abandoned) message, and appends
	// the audit events of its delivery, as AppendAudit does: in the same
	// transaction where the backend can; where it cannot, after, a
	// failure to append them logged, not returned.
	AckOutbox(ctx context.Context, id string, events ...AuditEvent) error
	// RetryOutbox releases a message to be tried again at due.
	RetryOutbox(ctx context.Context, id string, due time.Time, lastErr string) error
	// OutboxLen reports how many messages wait in the outbox.
	OutboxLen(ctx context.Context) (int, error)
	// ReleaseLeases ends every lease at once: each message claimed and
	// neither acknowledged nor retried becomes claimable now, keeping its
	// attempts; messages waiting for a later due time stay as they are.
	// It reports how many leases it ended. Only a backend used by one
	// process calls it, when it opens: no earlier claimer is still
	// delivering, so waiting for the lease would only delay the mail.
	ReleaseLeases(ctx context.Context) (int, error)
}

// AuditTrail keeps the sign-in events of every workspace for the store's
// audit retention.
type AuditTrail interface {
	// AppendAudit records an event, kept for the store's audit retention.
	// The store sets its id (a SortableID of its time) and fills in a
	// missing time.
	AppendAudit(ctx context.Context, e AuditEvent) error
	// Audit returns events of a workspace matching q, newest first, and a
	// cursor for the next page (empty on the last page).
	Audit(ctx context.Context, q AuditQuery) ([]AuditEvent, string, error)
}

// SignInFlow is one browser's sign-in in progress: where the contact wanted
// to go and which email they gave. Its id lives in a cookie; the store only
// sees the hash.
type SignInFlow struct {
	// IDHash is the hash of the flow id kept in the browser's flow cookie;
	// the store never sees the id itself. The flow's codes are kept under
	// it (see Codes), unless LinkHash is set.
	IDHash string `json:"id_hash"`
	// Workspace names the workspace the sign-in is for.
	Workspace string `json:"workspace"`
	// ReturnTo is the local path (with query) the contact wanted, restored
	// after sign-in; it is never an absolute URL.
	ReturnTo string `json:"return_to"`
	// Email is the address the contact submitted, normalized, or the
	// contact's email for a personalized link; empty until one is known.
	Email string `json:"email,omitempty"`
	// Method is how the code is being asked for: "code" (email submitted on
	// the sign-in page) or "link" (personalized link); empty before either.
	Method string `json:"method,omitempty"`
	// ContactID is set when the flow is tied to one contact (a
	// personalized link); a shared-link flow finds the contact by Email.
	ContactID string `json:"contact_id,omitempty"`
	// LinkHash, for a flow started by a personalized link, is the hash of
	// the link's token: every browser that opens the same link (a mail
	// scanner first, then the contact) shares its code, kept under this
	// hash instead of IDHash. Empty for other flows.
	LinkHash string `json:"link_hash,omitempty"`
	// ResendAt is when the page may offer another code.
	ResendAt time.Time `json:"resend_at,omitzero"`
	// Held is set when the last request sent no code because one went to
	// the same email within the resend cooldown.
	Held bool `json:"held,omitempty"`
	// CodesSent counts the codes this flow has asked for; its tries are
	// counted per code.
	CodesSent int `json:"codes_sent,omitempty"`
	// CreatedAt is when the flow started, by the store's clock.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the flow ends; the store forgets it then and
	// reports ErrNotFound from that instant on.
	ExpiresAt time.Time `json:"expires_at"`
}

// CodeFlow is the flow hash the flow's codes are kept under: LinkHash
// when the flow came from a personalized link, IDHash otherwise.
func (f SignInFlow) CodeFlow() string {
	if f.LinkHash != "" {
		return f.LinkHash
	}
	return f.IDHash
}

// Code is a one-time sign-in code, stored only as a keyed hash.
type Code struct {
	// Hash is the code's keyed hash (keyed with the instance secret and
	// bound to the contact); the code itself is never stored.
	Hash []byte `json:"hash"`
	// IssuedAt is when the code was made.
	IssuedAt time.Time `json:"issued_at"`
	// ExpiresAt is when the code stops being accepted; RedeemCode reports
	// CodeMissing from that instant on.
	ExpiresAt time.Time `json:"expires_at"`
	// Tries counts the wrong tries so far; at the caller's maximum the code
	// is dead and deleted.
	Tries int `json:"tries"`
}

// CodeResult is the outcome of RedeemCode.
type CodeResult int

// Outcomes of redeeming a code.
const (
	// CodeMissing: no live code (never sent, used, expired or dead).
	CodeMissing CodeResult = iota
	// CodeAccepted: the code matched and is now consumed.
	CodeAccepted
	// CodeWrong: no match; the try was counted.
	CodeWrong
	// CodeDead: no match, and that was the last allowed try.
	CodeDead
)

// String names the outcome, as in logs.
func (r CodeResult) String() string {
	switch r {
	case CodeAccepted:
		return "accepted"
	case CodeWrong:
		return "wrong"
	case CodeDead:
		return "dead"
	default:
		return "missing"
	}
}

// Session is a signed-in contact. The id lives in a cookie; the store only
// sees its hash.
type Session struct {
	// IDHash is the hash of the session id kept in the session cookie; the
	// store never sees the id itself.
	IDHash string `json:"id_hash"`
	// Workspace names the workspace the contact signed in to.
	Workspace string `json:"workspace"`
	// ContactID is the id of the signed-in contact; every session of a
	// contact ends with DeleteContactSessions.
	ContactID string `json:"contact_id"`
	// Method is how the contact signed in: "code", "link" or
	// "sso:<provider>".
	Method string `json:"method"`
	// CSRF, when set, is the token that sign-out forms of this session
	// must carry; sessions made by earlier versions have it. Newer ones
	// leave it empty: their token is keyed from the id hash, not stored.
	CSRF string `json:"csrf,omitempty"`
	// ClientIP is the client address the sign-in came from (as Caddy
	// determines it, trusted proxies honoured), for the admin API's session
	// list.
	ClientIP string `json:"client_ip,omitempty"`
	// UserAgent is the browser's User-Agent at sign-in, cut to 256 bytes,
	// for the admin API's session list.
	UserAgent string `json:"user_agent,omitempty"`
	// CreatedAt is when the contact signed in.
	CreatedAt time.Time `json:"created_at"`
	// LastSeen is the latest activity TouchSession recorded; the idle
	// expiry counts from it.
	LastSeen time.Time `json:"last_seen"`
	// ExpiresAt is the absolute expiry: no activity extends a session past
	// it.
	ExpiresAt time.Time `json:"expires_at"`
	// Idle is how long the session lives without activity; zero means only
	// ExpiresAt ends it. Expiry combines both.
	Idle time.Duration `json:"idle"`
}

// Expiry is when the session ends if nothing touches it again.
func (s Session) Expiry() time.Time {
	if s.Idle > 0 {
		if idle := s.LastSeen.Add(s.Idle); idle.Before(s.ExpiresAt) {
			return idle
		}
	}
	return s.ExpiresAt
}

// OutboxMessage is a unit of mail work. Payload is opaque to the store.
type OutboxMessage struct {
	// ID names the message; Enqueue fills in a SortableID when it is empty.
	ID string `json:"id"`
	// Kind tells the outbox worker how to deliver Payload, such as "code".
	Kind string `json:"kind"`
	// Payload is the work itself, opaque to the store; it never holds a
	// code or a token, which the worker makes at delivery time.
	Payload []byte `json:"payload"`
	// Attempts counts the claims so far, including the current one.
	Attempts int `json:"attempts"`
	// Due is the earliest time the message may be claimed; Enqueue fills
	// in now when it is zero, RetryOutbox moves it.
	Due time.Time `json:"due"`
	// NotAfter, when set, is when the message stops being worth
	// delivering (a code that has expired); the worker then gives it up.
	NotAfter time.Time `json:"not_after,omitzero"`
	// LeaseUntil is when the current claim lapses and the message may be
	// claimed again; zero when it is not claimed.
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// LastError is the error of the latest failed delivery, for the log.
	LastError string `json:"last_error,omitempty"`
	// CreatedAt is when the message was enqueued; Enqueue fills in now
	// when it is zero.
	CreatedAt time.Time `json:"created_at"`
}

// WithDefaults fills an enqueued message's id, creation and due times.
func (m OutboxMessage) WithDefaults(now time.Time) OutboxMessage {
	if m.ID == "" {
		m.ID = SortableID(now)
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now
	}
	if m.Due.IsZero() {
		m.Due = now
	}
	return m
}

// AuditEvent is one entry of the audit trail. It never holds a code, a
// token or a secret.
type AuditEvent struct {
	// ID names the event: a SortableID of Time, set by AppendAudit. It is
	// also the paging cursor.
	ID string `json:"id"`
	// Time is when the event happened; AppendAudit fills in the store's
	// clock when it is zero and keeps it in UTC.
	Time time.Time `json:"time"`
	// Workspace names the workspace whose trail holds the event.
	Workspace string `json:"workspace"`
	// Event says what happened, such as "code_sent" or "sso_success" (the
	// names are the handlers' Event constants).
	Event string `json:"event"`
	// ContactID is the contact the event concerns, when one is known.
	ContactID string `json:"contact_id,omitempty"`
	// Email is the address involved, such as the one submitted on the
	// sign-in page, when there is one.
	Email string `json:"email,omitempty"`
	// Method is the sign-in method involved: "code", "link" or
	// "sso:<provider>".
	Method string `json:"method,omitempty"`
	// ClientIP is the client address the request came from (as Caddy
	// determines it, trusted proxies honoured).
	ClientIP string `json:"client_ip,omitempty"`
	// UserAgent is the browser's User-Agent, cut to 128 bytes.
	UserAgent string `json:"user_agent,omitempty"`
	// Actor is who caused an admin event (link_created, contacts_imported,
	// contact_changed, …): the admin API caller as Caddy sees it (its
	// client certificate's subject with remote admin, else its remote
	// address), "file" for a contacts_file import, "config" for
	// config_loaded. Empty for sign-in events, which the contact causes.
	Actor string `json:"actor,omitempty"`
	// Reason explains a refusal or a failure in words for the operator,
	// such as "workspace disabled"; never a code, token or secret.
	Reason string `json:"reason,omitempty"`
	// Count is, for a refusal that is recorded once for many (rate_limited,
	// link_invalid, portal_unavailable), how many such refusals of the same
	// kind and client its window had when it was recorded: the first, the
	// 10th, the 100th and so on are recorded. For contacts_imported,
	// link_revoked and sessions_revoked, how many records the call
	// touched. Zero for other events.
	Count int `json:"count,omitempty"`
}

// AuditQuery filters the audit trail of one workspace.
type AuditQuery struct {
	// Workspace names the trail to read; required.
	Workspace string
	// ContactID, when set, keeps only that contact's events.
	ContactID string
	// Event, when set, keeps only events of that name.
	Event string
	// Since, when set, keeps only events at or after it.
	Since time.Time
	// Until, when set, keeps only events before it.
	Until time.Time
	// Limit is the most events in one page; default (and past 1000) 100.
	Limit int
	// Cursor, from the previous page, continues after that page's last
	// event; empty starts at the newest.
	Cursor string
}

// ValidName reports whether s may name a workspace or an SSO provider:
// lowercase letters, digits, - and _, starting with a letter.
func ValidName(s string) bool {
	return namePattern.MatchString(s)
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// Backend is implemented by the guest modules in the portal.storage
// namespace. Provision must not connect or take locks (so `caddy validate`
// works beside a running server); Open does, and may be called again.
type Backend interface {
	Open() (Store, error)
}

// Links keeps personalized sign-in links as objects: the token in a link
// names one of these by id, so a link can be listed and revoked, and its
// contact and return path never travel in the URL.
type Links interface {
	// PutLink stores a new link until l.ExpiresAt; an id already in use is
	// replaced. The caller makes the id (random, unguessable).
	PutLink(ctx context.Context, l PortalLink) error
	// Link returns a live link by id; ErrNotFound once it expired or was
	// revoked.
	Link(ctx context.Context, workspace, id string) (PortalLink, error)
	// Links lists the live links of a workspace, of one contact when
	// contactID is not empty, newest first.
	Links(ctx context.Context, workspace, contactID string) ([]PortalLink, error)
	// DeleteLink revokes a link at once. ErrNotFound if it is absent (never
	// made, expired or already revoked).
	DeleteLink(ctx context.Context, workspace, id string) error
	// DeleteContactLinks revokes every link of a contact and reports how
	// many live ones there were.
	DeleteContactLinks(ctx context.Context, workspace, contactID string) (int, error)
	// OpenLink is the atomic step of a link being opened: in one call it
	// checks the link is live (ErrNotFound if not), counts the open and
	// records its time, and returns the link as it now is. Of concurrent
	// opens each is counted once.
	OpenLink(ctx context.Context, workspace, id string) (PortalLink, error)
}

// PortalLink is a personalized sign-in link: it sends its contact a code
// at once and returns them to ReturnTo after sign-in.
type PortalLink struct {
	// ID names the link: 32 lowercase hex digits (128 random bits), the
	// only thing the link's token carries besides its MAC.
	ID string `json:"id"`
	// Workspace names the workspace the link signs in to.
	Workspace string `json:"workspace"`
	// ContactID is the contact the link was made for; a link of a contact
	// that is disabled or deleted is refused when opened.
	ContactID string `json:"contact_id"`
	// ReturnTo is the local path (with query) the contact lands on after
	// sign-in; never an absolute URL.
	ReturnTo string `json:"return_to"`
	// CreatedAt is when the link was made.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the link stops working; the store forgets it then
	// and reports ErrNotFound from that instant on.
	ExpiresAt time.Time `json:"expires_at"`
	// CreatedBy is who made the link (the admin API caller, as in
	// AuditEvent.Actor).
	CreatedBy string `json:"created_by,omitempty"`
	// Opens counts the times the link was opened (OpenLink), by anyone,
	// mail scanners included.
	Opens int `json:"opens"`
	// LastOpenedAt is when OpenLink last counted an open, by the store's
	// clock; zero until the first.
	LastOpenedAt time.Time `json:"last_opened_at,omitzero"`
}

// Live reports whether the link still works at now.
func (l PortalLink) Live(now time.Time) bool { return now.Before(l.ExpiresAt) }

// SortLinks orders links newest first (then by id, so equal times sort
// the same way in every backend).
func SortLinks(ls []PortalLink) {
	sort.Slice(ls, func(i, j int) bool {
		if !ls[i].CreatedAt.Equal(ls[j].CreatedAt) {
			return ls[i].CreatedAt.After(ls[j].CreatedAt)
		}
		return ls[i].ID > ls[j].ID
	})
}
