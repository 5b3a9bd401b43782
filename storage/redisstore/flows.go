package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/kdesk/portalgate/storage"
)

// PutFlow implements storage.Store.
func (s *Store) PutFlow(ctx context.Context, f storage.SignInFlow) error {
	doc, ttl, err := s.flowRecord(f)
	if err != nil {
		return err
	}
	return s.setPX(ctx, s.flowKey(f.IDHash), doc, ttl)
}

// flowRecord is f as stored, and how long it lives.
func (s *Store) flowRecord(f storage.SignInFlow) (string, time.Duration, error) {
	ttl := f.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return "", 0, errors.New("flow already expired")
	}
	doc, err := json.Marshal(f)
	return string(doc), ttl, err
}

// Flow implements storage.Store.
func (s *Store) Flow(ctx context.Context, idHash string) (storage.SignInFlow, error) {
	raw, ok, err := s.getString(ctx, s.flowKey(idHash))
	if err != nil {
		return storage.SignInFlow{}, err
	}
	if !ok {
		return storage.SignInFlow{}, storage.ErrNotFound
	}
	var f storage.SignInFlow
	if err := json.Unmarshal([]byte(raw), &f); err != nil {
		return storage.SignInFlow{}, fmt.Errorf("redis: flow: %w", err)
	}
	if !s.now().Before(f.ExpiresAt) {
		return storage.SignInFlow{}, storage.ErrNotFound
	}
	return f, nil
}

// flowContact reads a flow and the contact it is for in one step (see
// storage.Flows.FlowContact). KEYS: the flow. ARGV: the key prefix.
// Returns {the flow, the contact when there is one}, or nil.
//
//go:embed scripts/flow_contact.lua
var flowContactLua string

var flowContact = newScript(flowContactLua)

// FlowContact implements storage.Store: one script on a single server or
// Sentinel (a code try's flow and contact in one round trip); on a
// Cluster, whose slots keep flows and contacts apart, one read after the
// other.
func (s *Store) FlowContact(ctx context.Context, idHash string) (storage.SignInFlow, storage.Contact, error) {
	if s.clustered() {
		return storage.FlowContactEach(ctx, s, idHash)
	}
	r, err := s.run(ctx, flowContact, []string{s.flowKey(idHash)}, s.p)
	if rueidis.IsRedisNil(err) {
		return storage.SignInFlow{}, storage.Contact{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.SignInFlow{}, storage.Contact{}, err
	}
	reply, err := r.AsStrSlice()
	if err != nil || len(reply) == 0 || len(reply) > 2 {
		return storage.SignInFlow{}, storage.Contact{}, fmt.Errorf("redis: flow and contact: unexpected reply (%v)", err)
	}
	var f storage.SignInFlow
	if err := json.Unmarshal([]byte(reply[0]), &f); err != nil {
		return storage.SignInFlow{}, storage.Contact{}, fmt.Errorf("redis: flow: %w", err)
	}
	if !s.now().Before(f.ExpiresAt) {
		return storage.SignInFlow{}, storage.Contact{}, storage.ErrNotFound
	}
	byEmail := f.ContactID == ""
	if byEmail && f.Email != strings.ToLower(strings.TrimSpace(f.Email)) {
		// The script looked the email up as it is: one not normalized
		// is looked up again the way ContactByEmail does.
		c, err := storage.ContactOfFlow(ctx, s, f)
		return f, c, err
	}
	if len(reply) < 2 {
		return f, storage.Contact{}, nil
	}
	c, err := decodeContact(reply[1])
	if err != nil {
		return storage.SignInFlow{}, storage.Contact{}, err
	}
	if byEmail && c.Email != f.Email {
		return f, storage.Contact{}, nil
	}
	return f, c, nil
}

// DeleteFlow implements storage.Store.
func (s *Store) DeleteFlow(ctx context.Context, idHash string) error {
	return s.del(ctx, s.flowKey(idHash))
}

// ---------------------------------------------------------------- codes

// putCode replaces the code of a contact's sign-in flow and lists the
// flow in the contact's code set (so deleting the contact finds every
// code); the same hash again keeps its tries. KEYS: code, the contact's
// code set. ARGV: hash, expiry (unix microseconds), tries, issued at, TTL
// in milliseconds, flow hash.
//
//go:embed scripts/put_code.lua
var putCodeLua string

// codeLua defines put_code, which the scripts that store a code share.
// They start with it.
//
//go:embed scripts/code_lib.lua
var codeLua string

var putCode = newScript(codeLua + putCodeLua)

// countPut is CountAndPutCode on a single server or Sentinel. KEYS:
// putCode's, then the counters. ARGV: putCode's, the number of counters,
// each counter's limit and TTL in ms in turn. Returns {1 when the code
// was stored, 0 when a counter is past its limit, then the counts, up to
// that one}.
//
//go:embed scripts/count_put.lua
var countPutLua string

var countPut = newScript(countersLua + codeLua + countPutLua)

// PutCode implements storage.Store.
func (s *Store) PutCode(ctx context.Context, ws, contactID, flowHash string, c storage.Code) error {
	keys, args, err := s.codeArgs(ws, contactID, flowHash, c)
	if err != nil {
		return err
	}
	_, err = s.run(ctx, putCode, keys, args...)
	return err
}

// codeArgs are putCode's keys and arguments.
func (s *Store) codeArgs(ws, contactID, flowHash string, c storage.Code) (keys, args []string, err error) {
	ttl := c.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return nil, nil, errors.New("code already expired")
	}
	return []string{s.codeKey(ws, contactID, flowHash), s.codeSet(ws, contactID)},
		[]string{rueidis.BinaryString(c.Hash), micros(c.ExpiresAt), strconv.Itoa(c.Tries),
			c.IssuedAt.UTC().Format(time.RFC3339Nano), pxString(ttl), flowHash}, nil
}

// CountAndPutCode implements storage.Store: one script on a single
// server or Sentinel; on a Cluster, whose slots keep the counters apart,
// HitAll and PutCode in turn.
func (s *Store) CountAndPutCode(ctx context.Context, hits []storage.Hit, ws, contactID, flowHash string, c storage.Code) (storage.HitResult, error) {
	if s.clustered() {
		return storage.CountAndPutEach(ctx, s, hits, ws, contactID, flowHash, c)
	}
	none := storage.HitResult{Over: -1}
	keys, args, err := s.codeArgs(ws, contactID, flowHash, c)
	if err != nil {
		return none, err
	}
	counters, limits, resets := s.counterArgs(hits, s.now())
	keys = append(keys, counters...)
	args = append(append(args, strconv.Itoa(len(counters))), limits...)
	r, err := s.run(ctx, countPut, keys, args...)
	if err != nil {
		return none, err
	}
	reply, err := r.AsIntSlice()
	if err != nil || len(reply) == 0 || len(reply) > len(hits)+1 {
		return none, fmt.Errorf("redis: count and put code: unexpected reply (%v)", err)
	}
	return hitResult(reply[1:], hits, resets), nil
}

// codeKey names the code of one contact's sign-in flow; flow hashes are
// hex, so the last ':' separates them from the contact id.
func (s *Store) codeKey(ws, contactID, flowHash string) string {
	return s.ws(ws) + "code:" + contactID + ":" + flowHash
}

// codeSet names the set of flow hashes that hold a code of a contact.
func (s *Store) codeSet(ws, contactID string) string { return s.ws(ws) + "codes:" + contactID }

// redeemCode is RedeemCode in one step (redeem, in redeem_lib.lua).
// KEYS: code, the contact's code set. ARGV: hash, now (unix
// microseconds), max tries, flow hash. Returns a storage.CodeResult: 0
// missing, 1 accepted, 2 wrong, 3 dead.
//
//go:embed scripts/redeem_code.lua
var redeemCodeLua string

// redeemLua defines redeem, which the scripts that redeem a code share.
// They start with it.
//
//go:embed scripts/redeem_lib.lua
var redeemLua string

var redeemCode = newScript(redeemLua + redeemCodeLua)

// countRedeem is CountAndRedeemCode on a single server or Sentinel. KEYS:
// code, the contact's code set, the counters, then put_session's for a
// session to start. ARGV: redeemCode's, the number of counters, each
// counter's limit and TTL in ms in turn, then put_session's with the
// events. Returns {the storage.CodeResult, or 0 when a counter is past
// its limit, then the counts, up to that one}.
//
//go:embed scripts/count_redeem.lua
var countRedeemLua string

var countRedeem = newScript(auditLua + sessionLua + redeemLua + countersLua + countRedeemLua)

// CountAndRedeemCode implements storage.Store: one script on a single
// server or Sentinel; on a Cluster, whose slots keep the counters apart,
// HitAll, RedeemCode and StartSession in turn.
func (s *Store) CountAndRedeemCode(ctx context.Context, hits []storage.Hit, ws, contactID, flowHash string, hash []byte, maxTries int, start *storage.SessionStart) (storage.HitResult, storage.CodeResult, error) {
	if s.clustered() {
		return storage.CountAndRedeemEach(ctx, s, hits, ws, contactID, flowHash, hash, maxTries, start)
	}
	now := s.now()
	none := storage.HitResult{Over: -1}
	counters, limits, resets := s.counterArgs(hits, now)
	keys := append([]string{s.codeKey(ws, contactID, flowHash), s.codeSet(ws, contactID)}, counters...)
	args := append([]string{rueidis.BinaryString(hash), micros(now), strconv.Itoa(maxTries), flowHash, strconv.Itoa(len(counters))}, limits...)
	if start != nil {
		flowKey := ""
		if start.EndFlow != "" {
			flowKey = s.flowKey(start.EndFlow)
		}
		sk, sa, err := s.sessionArgs(start.Session, flowKey, start.Events)
		if err != nil {
			return none, storage.CodeMissing, err
		}
		keys, args = append(keys, sk...), append(args, sa...)
	}
	r, err := s.run(ctx, countRedeem, keys, args...)
	if err != nil {
		return none, storage.CodeMissing, err
	}
	reply, err := r.AsIntSlice()
	if err != nil || len(reply) == 0 || len(reply) > len(hits)+1 {
		return none, storage.CodeMissing, fmt.Errorf("redis: count and redeem: unexpected reply (%v)", err)
	}
	res := hitResult(reply[1:], hits, resets)
	if res.Over >= 0 {
		return res, storage.CodeMissing, nil
	}
	code := codeResult(reply[0])
	if code == storage.CodeAccepted && start != nil {
		s.written.mark(s.sessionKey(start.Session.Workspace, start.Session.IDHash))
		s.afterStart(ctx, start.Session, "", start.EndSession, nil)
	}
	return res, code, nil
}

// RedeemCode implements storage.Store.
func (s *Store) RedeemCode(ctx context.Context, ws, contactID, flowHash string, hash []byte, maxTries int) (storage.CodeResult, error) {
	r, err := s.run(ctx, redeemCode, []string{s.codeKey(ws, contactID, flowHash), s.codeSet(ws, contactID)},
		rueidis.BinaryString(hash), micros(s.now()), strconv.Itoa(maxTries), flowHash)
	if err != nil {
		return storage.CodeMissing, err
	}
	n, err := r.AsInt64()
	if err != nil {
		return storage.CodeMissing, err
	}
	return codeResult(n), nil
}

// codeResult is redeem's answer (redeem_lib.lua) as a storage.CodeResult.
func codeResult(n int64) storage.CodeResult {
	switch n {
	case 1:
		return storage.CodeAccepted
	case 2:
		return storage.CodeWrong
	case 3:
		return storage.CodeDead
	default:
		return storage.CodeMissing
	}
}

type onceValue struct {
	Value     []byte    `json:"v"`
	ExpiresAt time.Time `json:"e"`
}

// PutOnce implements storage.Store.
func (s *Store) PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	k := s.p + "once:" + key
	if ttl <= 0 {
		// Already expired: what was there is no longer takeable either.
		return s.del(ctx, k)
	}
	doc, err := json.Marshal(onceValue{Value: value, ExpiresAt: s.now().Add(ttl)})
	if err != nil {
		return err
	}
	return s.setPX(ctx, k, string(doc), ttl)
}

// TakeOnce implements storage.Store.
func (s *Store) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	r, err := s.getDel(ctx, s.p+"once:"+key)
	if rueidis.IsRedisNil(err) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	raw, err := r.AsBytes()
	if err != nil {
		return nil, err
	}
	var v onceValue
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("redis: single-use value: %w", err)
	}
	if !s.now().Before(v.ExpiresAt) {
		return nil, storage.ErrNotFound
	}
	return v.Value, nil
}
