package handlers

import (
	"context"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kdesk/portalgate/storage"
)

// Rate limits. None of them is a budget that anonymous traffic can spend
// for others: code sends are charged only when a code is actually sent to
// an eligible contact (by the outbox worker, so the answer to an email
// tells nothing in content or timing), per-client limits refuse only that
// client's network, and code tries are capped per contact and per flow.

// Limits are the rate limits on sign-in requests, code sends and tries.
type Limits struct {
	// SendsPerEmail, SendsPerIP and SendsPerWorkspace cap the code emails
	// sent to eligible contacts per Window: to one address, asked for from
	// one client network, and in one workspace.
	SendsPerEmail, SendsPerIP, SendsPerWorkspace int
	// RequestsPerIP caps the sign-in requests (emails submitted, codes
	// resent, links opened, single sign-ons started) from one client
	// network per Window, whether or not they name a contact.
	RequestsPerIP int
	// TriesPerIP caps code entries from one client network per Window.
	TriesPerIP int
	// TriesPerContact caps code entries for one contact per Window, across
	// all its sign-in flows.
	TriesPerContact int
	// Window is the period the counters cover.
	Window time.Duration
	// IPv4Prefix and IPv6Prefix are the network sizes a client's address
	// is counted by: one IPv4 address, and one IPv6 /64 (what one
	// household or host usually gets), by default.
	IPv4Prefix, IPv6Prefix int
}

// DefaultLimits are used for zero fields of Limits.
var DefaultLimits = Limits{
	SendsPerEmail:     5,
	SendsPerIP:        30,
	SendsPerWorkspace: 2000,
	RequestsPerIP:     60,
	TriesPerIP:        60,
	TriesPerContact:   30,
	Window:            10 * time.Minute,
	IPv4Prefix:        32,
	IPv6Prefix:        64,
}

// WithDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	pick := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	l.SendsPerEmail = pick(l.SendsPerEmail, d.SendsPerEmail)
	l.SendsPerIP = pick(l.SendsPerIP, d.SendsPerIP)
	l.SendsPerWorkspace = pick(l.SendsPerWorkspace, d.SendsPerWorkspace)
	l.RequestsPerIP = pick(l.RequestsPerIP, d.RequestsPerIP)
	l.TriesPerIP = pick(l.TriesPerIP, d.TriesPerIP)
	l.TriesPerContact = pick(l.TriesPerContact, d.TriesPerContact)
	l.IPv4Prefix = pick(l.IPv4Prefix, d.IPv4Prefix)
	l.IPv6Prefix = pick(l.IPv6Prefix, d.IPv6Prefix)
	if l.Window <= 0 {
		l.Window = d.Window
	}
	return l
}

// clientNet is the network a client address is counted by, like
// "192.0.2.10/32" or "2001:db8:1:2::/64"; an address that does not parse
// counts as itself.
func (l Limits) clientNet(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	bits := l.IPv6Prefix
	if a.Is4() {
		bits = l.IPv4Prefix
	}
	p, err := a.WithZone("").Prefix(bits)
	if err != nil {
		return ip
	}
	return p.String()
}

// rateLimit is one counter a request is checked against: key names the
// kind, the scope ("ip", "email", "ws", …) and its value; window, when
// set, is its own window instead of the limits' Window.
type rateLimit struct {
	key    string
	limit  int
	window time.Duration
}

// scope is the scope part of a counter's key: "ip" in "send/ip/…".
func (l rateLimit) scope() string {
	parts := strings.SplitN(l.key, "/", 3)
	if len(parts) < 2 {
		return l.key
	}
	return parts[1]
}

// hitAll counts one event against each limit in order, in one store
// call, up to the first one exceeded: ok is false then, over is that one
// and res.RetryAfter the time until its window ends. res.Counts has the
// counts of the counters counted.
func hitAll(ctx context.Context, store storage.Store, window time.Duration, limits ...rateLimit) (res storage.HitResult, over rateLimit, ok bool, err error) {
	res, err = store.HitAll(ctx, hitsOf(window, limits)...)
	if err != nil {
		return res, rateLimit{}, false, err
	}
	if res.Over >= 0 {
		return res, limits[res.Over], false, nil
	}
	return res, rateLimit{}, true, nil
}

// hitsOf are the store's counters of limits, each in window unless it
// has its own.
func hitsOf(window time.Duration, limits []rateLimit) []storage.Hit {
	hits := make([]storage.Hit, len(limits))
	for i, l := range limits {
		hits[i] = storage.Hit{Key: l.key, Limit: l.limit, Window: window}
		if l.window > 0 {
			hits[i].Window = l.window
		}
	}
	return hits
}

// overLimit counts the request against each limit; when one is exceeded it
// audits that (once per counter and window) and answers 429 with when to
// try again. answered is set when the answer is written.
func (q *request) overLimit(ev storage.AuditEvent, what string, limits ...rateLimit) (answered bool, err error) {
	res, over, ok, err := hitAll(q.r.Context(), q.store, q.g.portal.Limits.Window, limits...)
	if err != nil {
		return true, q.failed("counting "+what, err)
	}
	if ok {
		return false, nil
	}
	return true, q.refuse(ev, what, over, res.RetryAfter)
}

// refuse answers a request over limit: it audits that (once per counter
// and window) and answers 429 with when to try again (a form: redirected
// to the notice page that says so).
func (q *request) refuse(ev storage.AuditEvent, what string, over rateLimit, wait time.Duration) error {
	ev.Event, ev.Reason = EventRateLimited, what+": "+over.scope()
	q.auditRefusal(ev, over.key)
	if q.r.Method == http.MethodPost {
		// Post/Redirect/Get: a reload shows the wait, not the form again.
		q.w.Header().Set("Retry-After", strconv.Itoa(waitSeconds(wait)))
		return q.redirectWith("/notice", carried{key: noticeTooMany, count: waitSeconds(wait)})
	}
	return q.tooMany(wait)
}

// tooMany answers 429: nothing was sent or checked, and the page says when
// to try again.
func (q *request) tooMany(wait time.Duration) error {
	q.w.Header().Set("Retry-After", strconv.Itoa(waitSeconds(wait)))
	d := q.page(q.t("too_many_heading"))
	d.Message = q.t("too_many")
	d.Next = q.t("too_many_next", "Wait", q.tr.Duration(wait))
	d.ActionURL, d.ActionLabel = q.ws.AuthPath+"/signin", q.t("back_to_signin")
	return q.ws.pages(q.g.portal).render(q.w, http.StatusTooManyRequests, pageMessage, d)
}

// auditRefusal audits a refused request as the 1st, 10th, 100th, …
// refusal of its key in the window, with that count: a flood of refusals
// costs a handful of records, not one per request.
func (q *request) auditRefusal(ev storage.AuditEvent, key string) {
	q.g.portal.auditRefusal(q.r.Context(), q.rt, ev, key)
}

func (p *Portal) auditRefusal(ctx context.Context, rt *runtime, ev storage.AuditEvent, key string) {
	n, _, err := rt.store.Count(ctx, "audited/"+ev.Event+"/"+key, p.Limits.Window)
	if err == nil {
		if !powerOfTen(n) {
			return
		}
		ev.Count = n
	}
	p.audit(ctx, rt, ev)
}

// powerOfTen reports whether n is 1, 10, 100, …
func powerOfTen(n int) bool {
	for n >= 10 && n%10 == 0 {
		n /= 10
	}
	return n == 1
}
