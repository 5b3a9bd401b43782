package handlers

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Post/Redirect/Get: a form that is refused (a wrong code, a resend within
// the cooldown, an email that is no address) is not answered with a page,
// which a reload would post again, but with a redirect to the page it came
// from; the refusal rides along in a short-lived cookie, read once. That
// page then answers with the refusal's status (401, 429, 400), so the
// answer still says what happened; a reload shows the page afresh.

// cookieNotice carries one refusal from a POST to the page it redirects to.
const cookieNotice = "portal_notice"

// noticeTTL is how long a refusal waits for its page.
const noticeTTL = time.Minute

// maxNoticeInput bounds the typed input a refusal carries back.
const maxNoticeInput = 254

// notices are the refusals a redirect may carry, with the status their
// page answers; nothing else is read from the cookie.
var notices = map[string]int{
	"code_failed":          http.StatusUnauthorized,
	"code_dead":            http.StatusUnauthorized,
	"code_malformed":       http.StatusUnauthorized,
	"code_please_wait":     http.StatusTooManyRequests,
	"signin_invalid_email": http.StatusBadRequest,
	"code_new_sent":        http.StatusOK,
	noticeTooMany:          http.StatusTooManyRequests,
	"form_unreadable":      http.StatusBadRequest,
	"form_not_ours":        http.StatusForbidden,
	"flow_expired":         http.StatusBadRequest,
}

// noticeTooMany is a form refused by a rate limit; its count is the wait
// in seconds.
const noticeTooMany = "too_many"

// A refusal that leaves no form to show again (a form that is not ours,
// a sign-in that expired, a rate limit) redirects to the notice page,
// {auth_path}/notice, which shows it once with its status; opened again,
// or without a notice, it sends the contact to sign in.
func (q *request) noticePage() error {
	n, ok := q.takeNotice()
	if !ok {
		return q.redirect("/signin")
	}
	switch n.key {
	case noticeTooMany:
		return q.tooMany(time.Duration(n.count) * time.Second)
	case "form_unreadable":
		return q.message(n.status(), "signin_failed", n.key, "", q.ws.AuthPath+"/signin", "start_again")
	case "form_not_ours", "flow_expired":
		return q.message(n.status(), "signin_failed", n.key, "start_again_next", q.ws.AuthPath+"/signin", "start_again")
	}
	// A notice meant for another page: the sign-in page is the way on.
	return q.redirect("/signin")
}

// refuseForm answers a form that cannot go on (key: form_unreadable,
// form_not_ours or flow_expired) with a redirect to the notice page.
func (q *request) refuseForm(key string) error {
	return q.redirectWith("/notice", carried{key: key})
}

// carried is one refusal carried to its page (or, for code_new_sent, news).
type carried struct {
	key   string
	count int
	input string
}

// redirectWith answers a form with a redirect to sub that shows n.
func (q *request) redirectWith(sub string, n carried) error {
	if len(n.input) > maxNoticeInput {
		n.input = ""
	}
	v := n.key + "." + strconv.Itoa(n.count) + "." + base64.RawURLEncoding.EncodeToString([]byte(n.input))
	q.setCookie(cookieNotice, v, noticeTTL)
	return q.redirect(sub)
}

// takeNotice reads and clears the request's carried notice; ok is false
// when there is none.
func (q *request) takeNotice() (n carried, ok bool) {
	v := q.cookie(cookieNotice)
	if v == "" {
		return n, false
	}
	q.setCookie(cookieNotice, "", -1)
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return n, false
	}
	if _, known := notices[parts[0]]; !known {
		return n, false
	}
	count, err := strconv.Atoi(parts[1])
	if err != nil || count < 0 || count > 1<<20 {
		return n, false
	}
	in, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(in) > maxNoticeInput {
		return n, false
	}
	return carried{key: parts[0], count: count, input: string(in)}, true
}

// text is the notice in the request's language.
func (n carried) text(q *request) string {
	if n.key == "code_please_wait" {
		return q.t(n.key, "Count", n.count)
	}
	return q.t(n.key)
}

// status is the status of the page that shows the notice.
func (n carried) status() int { return notices[n.key] }
