package storage

import (
	"context"
	"errors"
	"time"
)

// Hit is one counter HitAll counts an event against.
type Hit struct {
	// Key names the counter; Hit and Count share it.
	Key string
	// Limit is how many events the window allows; the next one is over.
	Limit int
	// Window is the length of the counter's fixed window.
	Window time.Duration
}

// HitResult is the outcome of HitAll.
type HitResult struct {
	// Counts are the window counts of the counters HitAll counted, this
	// event included, in the order given: all of them unless one was
	// over its limit, and then up to that one.
	Counts []int
	// Over is the index of the counter past its limit, or -1 when every
	// one is within.
	Over int
	// RetryAfter is how long until Over's window resets; zero when none
	// is over.
	RetryAfter time.Duration
}

// Counter counts events in fixed windows, as Limits.Count does.
type Counter interface {
	Count(ctx context.Context, key string, window time.Duration) (n int, reset time.Duration, err error)
}

// HitEach is HitAll for a backend whose counters cannot share one
// transaction (Redis Cluster keeps each in its own slot): one Count per
// hit, in order, stopping at the first over its limit.
func HitEach(ctx context.Context, c Counter, hits []Hit) (HitResult, error) {
	res := HitResult{Over: -1, Counts: make([]int, 0, len(hits))}
	for i, h := range hits {
		n, reset, err := c.Count(ctx, h.Key, h.Window)
		if err != nil {
			return HitResult{Over: -1}, err
		}
		res.Counts = append(res.Counts, n)
		if n > h.Limit {
			res.Over, res.RetryAfter = i, reset
			break
		}
	}
	return res, nil
}

// CodeRequest is what RequestCode did.
type CodeRequest struct {
	// Wait, above zero, is what is left of a running cooldown: nothing
	// else was done.
	Wait time.Duration
	// Hits are the request's counters, counted once the cooldown had
	// passed (Over is -1 when none was past its limit).
	Hits HitResult
}

// Queued reports whether the message was queued.
func (r CodeRequest) Queued() bool { return r.Wait <= 0 && r.Hits.Over < 0 }

// codeRequester is what RequestCodeEach calls.
type codeRequester interface {
	// CooldownLeft is how long the cooldown of key still runs (0: none),
	// starting none.
	CooldownLeft(ctx context.Context, key string) (time.Duration, error)
	Cooldown(ctx context.Context, key string, d time.Duration) (bool, time.Duration, error)
	HitAll(ctx context.Context, hits ...Hit) (HitResult, error)
	EnqueueForFlow(ctx context.Context, m OutboxMessage, f SignInFlow, events ...AuditEvent) error
}

// RequestCodeEach is RequestCode by calls in turn, for a backend that
// cannot make them one transaction: the cooldown is looked at, the hits
// counted, and only then started (a concurrent request that started it
// in between wins, and this one waits, its counts spent).
func RequestCodeEach(ctx context.Context, s codeRequester, cooldownKey string, cooldown time.Duration, hits []Hit, m OutboxMessage, f SignInFlow, events ...AuditEvent) (CodeRequest, error) {
	none := CodeRequest{Hits: HitResult{Over: -1}}
	wait, err := s.CooldownLeft(ctx, cooldownKey)
	if err != nil || wait > 0 {
		none.Wait = wait
		return none, err
	}
	res := CodeRequest{Hits: HitResult{Over: -1}}
	if len(hits) > 0 {
		if res.Hits, err = s.HitAll(ctx, hits...); err != nil || res.Hits.Over >= 0 {
			return res, err
		}
	}
	ok, wait, err := s.Cooldown(ctx, cooldownKey, cooldown)
	if err != nil || !ok {
		none.Wait = wait
		return none, err
	}
	return res, s.EnqueueForFlow(ctx, m, f, events...)
}

// flowContacts is what FlowContactEach calls.
type flowContacts interface {
	Flow(ctx context.Context, idHash string) (SignInFlow, error)
	contactFinder
}

// FlowContactEach is FlowContact by its calls in turn, for a backend that
// cannot make them one read.
func FlowContactEach(ctx context.Context, s flowContacts, idHash string) (SignInFlow, Contact, error) {
	f, err := s.Flow(ctx, idHash)
	if err != nil {
		return f, Contact{}, err
	}
	c, err := ContactOfFlow(ctx, s, f)
	return f, c, err
}

// ContactOfFlow is the contact f is for, as FlowContact finds it, by the
// calls in turn.
func ContactOfFlow(ctx context.Context, s flowContacts, f SignInFlow) (Contact, error) {
	if f.ContactID == "" && f.Email == "" {
		return Contact{}, nil
	}
	c, err := ContactOf(ctx, s, f.Workspace, f.ContactID, f.Email)
	if errors.Is(err, ErrNotFound) {
		return Contact{}, nil
	}
	return c, err
}

// contactFinder is what ContactOf calls.
type contactFinder interface {
	Contact(ctx context.Context, workspace, id string) (Contact, error)
	ContactByEmail(ctx context.Context, workspace, email string) (Contact, error)
}

// ContactOf is the contact of workspace that id names, or, without an id,
// the one whose email is email; ErrNotFound when there is none.
func ContactOf(ctx context.Context, s contactFinder, workspace, id, email string) (Contact, error) {
	if id != "" {
		return s.Contact(ctx, workspace, id)
	}
	return s.ContactByEmail(ctx, workspace, email)
}

// codePutter is what CountAndPutEach calls.
type codePutter interface {
	HitAll(ctx context.Context, hits ...Hit) (HitResult, error)
	PutCode(ctx context.Context, workspace, contactID, flowHash string, c Code) error
}

// CountAndPutEach is CountAndPutCode by its calls in turn, for a backend
// that cannot make them one transaction.
func CountAndPutEach(ctx context.Context, s codePutter, hits []Hit, workspace, contactID, flowHash string, c Code) (HitResult, error) {
	res := HitResult{Over: -1}
	if len(hits) > 0 {
		var err error
		if res, err = s.HitAll(ctx, hits...); err != nil || res.Over >= 0 {
			return res, err
		}
	}
	return res, s.PutCode(ctx, workspace, contactID, flowHash, c)
}

// codeRedeemer is what CountAndRedeemEach calls.
type codeRedeemer interface {
	HitAll(ctx context.Context, hits ...Hit) (HitResult, error)
	RedeemCode(ctx context.Context, workspace, contactID, flowHash string, hash []byte, maxTries int) (CodeResult, error)
	StartSession(ctx context.Context, sess Session, endFlow, endSession string, events ...AuditEvent) error
}

// CountAndRedeemEach is CountAndRedeemCode by its calls in turn, for a
// backend that cannot make them one transaction.
func CountAndRedeemEach(ctx context.Context, s codeRedeemer, hits []Hit, workspace, contactID, flowHash string, hash []byte, maxTries int, start *SessionStart) (HitResult, CodeResult, error) {
	res := HitResult{Over: -1}
	if len(hits) > 0 {
		var err error
		if res, err = s.HitAll(ctx, hits...); err != nil || res.Over >= 0 {
			return res, CodeMissing, err
		}
	}
	r, err := s.RedeemCode(ctx, workspace, contactID, flowHash, hash, maxTries)
	if err == nil && r == CodeAccepted && start != nil {
		err = s.StartSession(ctx, start.Session, start.EndFlow, start.EndSession, start.Events...)
	}
	return res, r, err
}
