// Package redisstore is portalgate's shared storage backend: state in Redis
// (a single server, Sentinel or Cluster), for several Caddy instances behind
// a load balancer.
//
// Every operation that must be atomic is one Lua script or one command
// (GETDEL), so two instances can never both accept one code, take one
// single-use value or claim one outbox message. Expiry is a Redis TTL and is
// also kept inside the value and checked against the store's clock. Sessions
// and contacts, read on every request, are served from rueidis'
// server-assisted client-side cache: Redis tells every instance when a
// cached key changes, so a revoked session or a disabled contact is refused
// without a round trip per request.
//
// Keys, after the key prefix ("portalgate:" by default). Keys that one
// script touches together share a hash tag ({ws:W}, {outbox}), so the
// layout works on a Cluster:
//
//	secret                     instance secret (raw bytes)
//	{ws:W}:c:<id>              contact (JSON)
//	{ws:W}:ids                 set of contact ids
//	{ws:W}:ce:<email>          email index -> id
//	{ws:W}:cd:<directory id>   directory index -> id
//	{ws:W}:code:<contact id>   code (hash: h = the code's hash, e = expiry, t = tries, i = issued)
//	{ws:W}:sessions            session id hashes of the workspace, scored by absolute expiry
//	{ws:W}:si:<contact id>     the same, per contact
//	sess:<id hash>             session (JSON)
//	flow:<id hash>             sign-in flow (JSON)
//	once:<key>                 single-use value (JSON)
//	hit:<key>:<window start>   rate-limit counter
//	cool:<key>                 cooldown end (unix microseconds)
//	{outbox}:due               message ids, scored by when claimable
//	{outbox}:m:<id>            message (hash: msg = JSON, attempts, due, lease, err)
//	audit:W                    events (id + JSON), scored by time in microseconds
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
	"go.uber.org/zap"

	"github.com/kdesk/portalgate/storage"
)

// Options tune a Store.
type Options struct {
	// Address lists host:port of the server; several for a Cluster, or the
	// sentinels when MasterName is set.
	Address []string
	// Username and Password authenticate to Redis (ACL or requirepass).
	Username string
	Password string
	// DB is the database number of a single server or Sentinel master.
	DB int
	// KeyPrefix starts every key; default "portalgate:". It must not
	// contain '{' or '}' (the store uses hash tags).
	KeyPrefix string
	// TLS, when set, is used for every connection.
	TLS *tls.Config
	// MasterName, when set, makes Address the sentinels of that master.
	MasterName string
	// DialTimeout bounds each connection attempt; default 5 seconds.
	DialTimeout time.Duration
	// AuditRetention is how long audit events are kept; default 90 days.
	AuditRetention time.Duration
	// CacheTTL is the longest a session or contact stays in the local
	// cache without being read again from Redis; default 1 minute. Redis
	// invalidates changed keys at once; this only bounds memory.
	CacheTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives outage and recovery messages; default no-op.
	Logger *zap.Logger
}

// Store is a storage.Store on Redis.
type Store struct {
	opt       rueidis.ClientOption
	p         string // key prefix
	now       func() time.Time
	retention time.Duration
	cacheTTL  time.Duration
	log       *zap.Logger

	// client is set once a connection succeeded; rueidis reconnects it by
	// itself from then on. Until then, calls try to create it (see conn).
	client  atomic.Pointer[clientRef]
	connMu  sync.Mutex
	lastTry time.Time
	lastErr error
	closed  bool

	// healthy drops on the first unavailable error and rises on the next
	// success, so an outage is logged once, not per call.
	healthy atomic.Bool

	written ownWrites
	// near holds decoded sessions and contacts in front of rueidis's
	// client-side cache, so a signed-in request costs two map reads.
	near near
}

// near is the decoded copy of records read through the client-side cache.
// It forgets a key when Redis invalidates it (rueidis's OnInvalidations),
// everything when a connection is lost or Redis flushes, and each entry
// after CacheTTL. Only values read with tracking on are kept, and a read
// that an invalidation overtook is not kept (gen), so nothing here is
// staler than rueidis's own cache.
type near struct {
	mu  sync.RWMutex
	m   map[string]nearEntry
	gen uint64 // bumped by every invalidation
}

type nearEntry struct {
	v     any
	until time.Time
}

// nearMax bounds the entries; past it, a tenth is dropped at random.
const nearMax = 1 << 17

func (n *near) get(key string, now time.Time) (any, bool) {
	n.mu.RLock()
	e, ok := n.m[key]
	n.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.v, true
	}
	return nil, false
}

// generation is read before a cached read whose result may be kept.
func (n *near) generation() uint64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.gen
}

// put keeps v unless an invalidation arrived since gen was read.
func (n *near) put(key string, v any, gen uint64, until time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gen != gen {
		return
	}
	if n.m == nil {
		n.m = make(map[string]nearEntry)
	}
	if len(n.m) >= nearMax {
		drop := nearMax / 10
		for k := range n.m {
			delete(n.m, k)
			if drop--; drop <= 0 {
				break
			}
		}
	}
	n.m[key] = nearEntry{v: v, until: until}
}

// invalidate is rueidis's OnInvalidations hook: keys Redis says changed,
// or nil for all of them (flush, lost connection).
func (n *near) invalidate(keys []rueidis.RedisMessage) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gen++
	if keys == nil {
		clear(n.m)
		return
	}
	for _, k := range keys {
		if key, err := k.ToString(); err == nil {
			delete(n.m, key)
		}
	}
}

// record reads a session or contact: from near, or through the client-side
// cache and decode, keeping the result in near when Redis tracks it.
func (s *Store) record(ctx context.Context, key string, decode func(string) (any, error)) (any, bool, error) {
	own := s.written.recent(key)
	if !own {
		if v, ok := s.near.get(key, time.Now()); ok {
			return v, true, nil
		}
	}
	gen := s.near.generation()
	raw, ok, tracked, err := s.getCached(ctx, key, own)
	if err != nil || !ok {
		return nil, false, err
	}
	v, err := decode(raw)
	if err != nil {
		return nil, false, err
	}
	if tracked {
		s.near.put(key, v, gen, time.Now().Add(s.cacheTTL))
	}
	return v, true, nil
}

type clientRef struct{ rueidis.Client }

// retryEvery spaces attempts to create the client while Redis is down, so
// a burst of requests does not turn into a burst of dials.
const retryEvery = time.Second

// Open returns a Store for the given Redis. It connects at once, but an
// unreachable Redis is not an error: calls then fail with errors wrapping
// storage.ErrUnavailable, and the store keeps trying to connect on use.
func Open(o Options) (*Store, error) {
	if len(o.Address) == 0 {
		return nil, errors.New("redis: no address")
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "portalgate:"
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return nil, fmt.Errorf("redis: key prefix %q must not contain { or }", o.KeyPrefix)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.AuditRetention <= 0 {
		o.AuditRetention = 90 * 24 * time.Hour
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	s := &Store{
		opt: rueidis.ClientOption{
			InitAddress: slices.Clone(o.Address),
			Username:    o.Username,
			Password:    o.Password,
			SelectDB:    o.DB,
			TLSConfig:   o.TLS,
			ClientName:  "portalgate",
			Sentinel:    rueidis.SentinelOption{MasterSet: o.MasterName, TLSConfig: o.TLS},
			// Sessions and contacts are small; this is per connection.
			CacheSizeEachConn: 32 << 20,
			// rueidis retries read-only commands until the context ends;
			// a caller without a deadline would hang through an outage.
			RetryDelay: func(attempts int, _ rueidis.Completed, _ error) time.Duration {
				if attempts > 2 {
					return -1
				}
				return time.Duration(attempts) * 20 * time.Millisecond
			},
		},
		p:         o.KeyPrefix,
		now:       o.Now,
		retention: o.AuditRetention,
		cacheTTL:  o.CacheTTL,
		log:       o.Logger,
		written:   ownWrites{m: map[string]time.Time{}},
	}
	s.opt.OnInvalidations = s.near.invalidate
	s.opt.Dialer.Timeout = o.DialTimeout
	s.opt.Sentinel.Dialer.Timeout = o.DialTimeout
	s.healthy.Store(true)
	_, _ = s.conn()
	return s, nil
}

// Close closes the connections. Calls after Close fail.
func (s *Store) Close() error {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	s.closed = true
	if c := s.client.Swap(nil); c != nil {
		c.Close()
	}
	return nil
}

// conn returns the client, creating it if no attempt has succeeded yet.
func (s *Store) conn() (rueidis.Client, error) {
	if c := s.client.Load(); c != nil {
		return c.Client, nil
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if c := s.client.Load(); c != nil {
		return c.Client, nil
	}
	if s.closed {
		return nil, fmt.Errorf("redis: %w: store closed", storage.ErrUnavailable)
	}
	if !s.lastTry.IsZero() && time.Since(s.lastTry) < retryEvery {
		return nil, s.unavailable(s.lastErr)
	}
	s.lastTry = time.Now()
	c, err := rueidis.NewClient(s.opt)
	if errors.Is(err, rueidis.ErrNoCache) {
		// Redis before 6 speaks no RESP3: work without the local cache.
		s.log.Warn("redis has no client-side caching (RESP3); every session check is a round trip")
		opt := s.opt
		opt.DisableCache = true
		c, err = rueidis.NewClient(opt)
	}
	if err != nil {
		s.lastErr = err
		return nil, s.unavailable(err)
	}
	s.client.Store(&clientRef{c})
	s.up()
	return c, nil
}

// unavailable wraps err as storage.ErrUnavailable and logs the outage if it
// is new.
func (s *Store) unavailable(err error) error {
	if s.healthy.CompareAndSwap(true, false) {
		s.log.Warn("redis unavailable; storage calls fail until it answers again",
			zap.Strings("address", s.opt.InitAddress), zap.Error(err))
	}
	return fmt.Errorf("redis: %w: %w", storage.ErrUnavailable, err)
}

func (s *Store) up() {
	if !s.healthy.Load() && s.healthy.CompareAndSwap(false, true) {
		s.log.Info("redis available again", zap.Strings("address", s.opt.InitAddress))
	}
}

// check classifies the error of a Redis call: nil and Redis nil replies
// pass through, server-side errors that mean "not now" and every network
// or client error become storage.ErrUnavailable.
func (s *Store) check(err error) error {
	if err == nil || rueidis.IsRedisNil(err) {
		s.up()
		return err
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		if re.IsLoading() || re.IsClusterDown() || re.IsTryAgain() ||
			strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "READONLY") ||
			strings.HasPrefix(msg, "BUSY") || strings.HasPrefix(msg, "NOREPLICAS") {
			return s.unavailable(err)
		}
		s.up()
		return fmt.Errorf("redis: %w", err)
	}
	return s.unavailable(err)
}

// do runs one command.
func (s *Store) do(ctx context.Context, build func(rueidis.Builder) rueidis.Completed) (rueidis.RedisResult, error) {
	c, err := s.conn()
	if err != nil {
		return rueidis.RedisResult{}, err
	}
	r := c.Do(ctx, build(c.B()))
	return r, s.check(r.Error())
}

// doMulti runs commands in one pipeline (not atomically); it returns the
// first error other than a nil reply.
func (s *Store) doMulti(ctx context.Context, build func(rueidis.Builder) []rueidis.Completed) ([]rueidis.RedisResult, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	cmds := build(c.B())
	if len(cmds) == 0 {
		return nil, nil
	}
	rs := c.DoMulti(ctx, cmds...)
	for _, r := range rs {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return rs, s.check(err)
		}
	}
	s.up()
	return rs, nil
}

// run executes a Lua script.
func (s *Store) run(ctx context.Context, script *rueidis.Lua, keys []string, args ...string) (rueidis.RedisResult, error) {
	c, err := s.conn()
	if err != nil {
		return rueidis.RedisResult{}, err
	}
	r := script.Exec(ctx, c, keys, args)
	return r, s.check(r.Error())
}

// getString reads a string key; ok is false when it does not exist.
func (s *Store) getString(ctx context.Context, key string) (string, bool, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Get().Key(key).Build() })
	if rueidis.IsRedisNil(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, err := r.ToString()
	return v, err == nil, err
}

// getCached reads a string key through the client-side cache, except for
// keys this instance wrote a moment ago (own; see ownWrites). tracked says
// the value came with tracking on, so Redis will invalidate it.
func (s *Store) getCached(ctx context.Context, key string, own bool) (v string, ok, tracked bool, err error) {
	if own {
		v, ok, err = s.getString(ctx, key)
		return v, ok, false, err
	}
	c, err := s.conn()
	if err != nil {
		return "", false, false, err
	}
	r := c.DoCache(ctx, c.B().Get().Key(key).Cache(), s.cacheTTL)
	if errors.Is(r.Error(), rueidis.ErrDoCacheAborted) {
		v, ok, err = s.getString(ctx, key)
		return v, ok, false, err
	}
	if err := s.check(r.Error()); rueidis.IsRedisNil(err) {
		return "", false, false, nil
	} else if err != nil {
		return "", false, false, err
	}
	v, err = r.ToString()
	return v, err == nil, err == nil, err
}

// ownWrites remembers the keys of cached records (sessions, contacts) this
// instance just wrote. Redis sends the invalidation of a write to the
// tracking connection, which rueidis reads on its own goroutine, a moment
// after the write's reply; until that has surely been processed, reads of
// the key skip the cache, so this instance sees its own writes at once.
type ownWrites struct {
	mu    sync.RWMutex
	m     map[string]time.Time
	swept time.Time
	// until is when the latest window ends (Unix ns): past it, no key is
	// recent, and reads skip the lock.
	until atomic.Int64
}

// ownWriteWindow is how long after a write its key is read past the cache;
// an invalidation takes microseconds to arrive.
const ownWriteWindow = time.Second

func (w *ownWrites) mark(keys ...string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range keys {
		w.m[k] = now.Add(ownWriteWindow)
	}
	w.until.Store(now.Add(ownWriteWindow).UnixNano())
	if len(w.m) > 1024 && now.Sub(w.swept) > ownWriteWindow {
		for k, until := range w.m {
			if now.After(until) {
				delete(w.m, k)
			}
		}
		w.swept = now
	}
}

func (w *ownWrites) recent(key string) bool {
	if time.Now().UnixNano() > w.until.Load() {
		return false
	}
	w.mu.RLock()
	until, ok := w.m[key]
	w.mu.RUnlock()
	return ok && time.Now().Before(until)
}

// ---------------------------------------------------------------- keys

func (s *Store) ws(ws string) string             { return s.p + "{ws:" + ws + "}:" }
func (s *Store) contactKey(ws, id string) string { return s.ws(ws) + "c:" + id }
func (s *Store) sessionKey(hash string) string   { return s.p + "sess:" + hash }
func (s *Store) outboxDue() string               { return s.p + "{outbox}:due" }
func (s *Store) outboxMsgPrefix() string         { return s.p + "{outbox}:m:" }

// micros is a time as Redis scores and Lua numbers hold it exactly.
func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// px is a TTL in whole milliseconds, rounded up and at least 1.
func px(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}

func pxString(d time.Duration) string { return strconv.FormatInt(px(d), 10) }

// ---------------------------------------------------------------- secret

// Secret implements storage.Store.
func (s *Store) Secret(ctx context.Context, generate func() ([]byte, error)) ([]byte, error) {
	key := s.p + "secret"
	if v, ok, err := s.getString(ctx, key); err != nil {
		return nil, err
	} else if ok {
		return []byte(v), nil
	}
	b, err := generate()
	if err != nil {
		return nil, err
	}
	if _, err := s.do(ctx, func(bd rueidis.Builder) rueidis.Completed {
		return bd.Set().Key(key).Value(rueidis.BinaryString(b)).Nx().Build()
	}); err != nil && !rueidis.IsRedisNil(err) {
		return nil, err
	}
	// Whoever set it first won; everyone returns that.
	v, ok, err := s.getString(ctx, key)
	if err == nil && !ok {
		return nil, errors.New("redis: secret vanished after it was set")
	}
	return []byte(v), err
}

// ---------------------------------------------------------------- contacts

// putContacts checks the whole batch first and writes only if every
// contact fits, so a conflict leaves Redis unchanged (a script is atomic
// but does not roll back). It mirrors Badger's transaction: contacts apply
// in order, each replacing its old indexes, and a new email must not
// belong to another contact. ARGV: the workspace's key prefix, then id,
// email, directory id and JSON per contact. Returns {1}, or {0, index of
// the contact, id of the email's owner}.
var putContacts = rueidis.NewLuaScript(`
local pre = ARGV[1]
local n = (#ARGV - 1) / 4
local cur, owner = {}, {}
local function current(id)
  local c = cur[id]
  if c == nil then
    local raw = redis.call('GET', pre .. 'c:' .. id)
    c = false
    if raw then
      local d = cjson.decode(raw)
      c = {d.email or '', d.directory_id or ''}
    end
    cur[id] = c
  end
  return c
end
for i = 0, n - 1 do
  local id, email, dir = ARGV[2 + 4*i], ARGV[3 + 4*i], ARGV[4 + 4*i]
  local old = current(id)
  if old then owner[old[1]] = false end
  local o = owner[email]
  if o == nil then o = redis.call('GET', pre .. 'ce:' .. email) end
  if o and o ~= id then return {0, i, o} end
  owner[email] = id
  cur[id] = {email, dir}
end
for i = 0, n - 1 do
  local id, email, dir, doc = ARGV[2 + 4*i], ARGV[3 + 4*i], ARGV[4 + 4*i], ARGV[5 + 4*i]
  local raw = redis.call('GET', pre .. 'c:' .. id)
  if raw then
    local d = cjson.decode(raw)
    redis.call('DEL', pre .. 'ce:' .. d.email)
    if d.directory_id and d.directory_id ~= '' then
      redis.call('DEL', pre .. 'cd:' .. d.directory_id)
    end
  end
  redis.call('SET', pre .. 'c:' .. id, doc)
  redis.call('SET', pre .. 'ce:' .. email, id)
  if dir ~= '' then redis.call('SET', pre .. 'cd:' .. dir, id) end
  redis.call('SADD', pre .. 'ids', id)
end
return {1}
`)

// PutContacts implements storage.Store.
func (s *Store) PutContacts(ctx context.Context, ws string, contacts []storage.Contact) error {
	if len(contacts) == 0 {
		return nil
	}
	now := s.now().UTC()
	pre := s.ws(ws)
	keys := []string{pre + "ids"}
	args := make([]string, 1, 1+4*len(contacts))
	args[0] = pre
	written := make([]string, 0, len(contacts))
	for _, c := range contacts {
		c.UpdatedAt = now
		doc, err := json.Marshal(c)
		if err != nil {
			return err
		}
		args = append(args, c.ID, c.Email, c.DirectoryID, string(doc))
		keys = append(keys, s.contactKey(ws, c.ID))
		written = append(written, s.contactKey(ws, c.ID))
	}
	r, err := s.run(ctx, putContacts, keys, args...)
	s.written.mark(written...)
	if err != nil {
		return err
	}
	res, err := r.ToArray()
	if err != nil || len(res) == 0 {
		return fmt.Errorf("redis: put contacts: unexpected reply: %v", err)
	}
	if ok, _ := res[0].AsInt64(); ok == 1 {
		return nil
	}
	if len(res) != 3 {
		return errors.New("redis: put contacts: unexpected reply")
	}
	i, _ := res[1].AsInt64()
	other, _ := res[2].ToString()
	if i < 0 || int(i) >= len(contacts) {
		return errors.New("redis: put contacts: unexpected reply")
	}
	c := contacts[i]
	return fmt.Errorf("contact %s: email %s already belongs to contact %s", c.ID, c.Email, other)
}

// Contact implements storage.Store. It is on the hot path: served from the
// client-side cache, which Redis invalidates on every change.
func (s *Store) Contact(ctx context.Context, ws, id string) (storage.Contact, error) {
	v, ok, err := s.record(ctx, s.contactKey(ws, id), func(raw string) (any, error) {
		var c storage.Contact
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, fmt.Errorf("redis: contact %s: %w", id, err)
		}
		return c, nil
	})
	if err != nil {
		return storage.Contact{}, err
	}
	if !ok {
		return storage.Contact{}, storage.ErrNotFound
	}
	return v.(storage.Contact), nil
}

// contactByIndex follows an index key to the contact. The index and the
// record are read one after the other, so a contact changed in between
// is looked up again; match says whether the record still fits the index.
func (s *Store) contactByIndex(ctx context.Context, ws, key string, match func(storage.Contact) bool) (storage.Contact, error) {
	for range 3 {
		id, ok, err := s.getString(ctx, key)
		if err != nil {
			return storage.Contact{}, err
		}
		if !ok {
			return storage.Contact{}, storage.ErrNotFound
		}
		c, err := s.Contact(ctx, ws, id)
		if err == nil && match(c) {
			return c, nil
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return storage.Contact{}, err
		}
	}
	return storage.Contact{}, storage.ErrNotFound
}

// ContactByEmail implements storage.Store.
func (s *Store) ContactByEmail(ctx context.Context, ws, email string) (storage.Contact, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	return s.contactByIndex(ctx, ws, s.ws(ws)+"ce:"+email, func(c storage.Contact) bool { return c.Email == email })
}

// ContactByDirectoryID implements storage.Store.
func (s *Store) ContactByDirectoryID(ctx context.Context, ws, dirID string) (storage.Contact, error) {
	if dirID == "" {
		return storage.Contact{}, storage.ErrNotFound
	}
	return s.contactByIndex(ctx, ws, s.ws(ws)+"cd:"+dirID, func(c storage.Contact) bool { return c.DirectoryID == dirID })
}

// Contacts implements storage.Store.
func (s *Store) Contacts(ctx context.Context, ws string) ([]storage.Contact, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Smembers().Key(s.ws(ws) + "ids").Build() })
	if err != nil {
		return nil, err
	}
	ids, err := r.AsStrSlice()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	sort.Strings(ids)
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.contactKey(ws, id)
	}
	// All of a workspace's contact keys share a hash tag: one MGET.
	r, err = s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Mget().Key(keys...).Build() })
	if err != nil {
		return nil, err
	}
	vals, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]storage.Contact, 0, len(vals))
	for i, v := range vals {
		raw, err := v.ToString()
		if err != nil {
			continue // deleted since SMEMBERS
		}
		var c storage.Contact
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, fmt.Errorf("redis: contact %s: %w", ids[i], err)
		}
		out = append(out, c)
	}
	return out, nil
}

// deleteContact removes a contact, its indexes (where they still point to
// it) and its code. KEYS: contact, ids set, code. ARGV: workspace key
// prefix, id. Returns 1, or 0 when there was no such contact.
var deleteContact = rueidis.NewLuaScript(`
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local d = cjson.decode(raw)
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('SREM', KEYS[2], ARGV[2])
local ek = ARGV[1] .. 'ce:' .. (d.email or '')
if redis.call('GET', ek) == ARGV[2] then redis.call('DEL', ek) end
if d.directory_id and d.directory_id ~= '' then
  local dk = ARGV[1] .. 'cd:' .. d.directory_id
  if redis.call('GET', dk) == ARGV[2] then redis.call('DEL', dk) end
end
return 1
`)

// DeleteContact implements storage.Store.
func (s *Store) DeleteContact(ctx context.Context, ws, id string) error {
	pre := s.ws(ws)
	key := s.contactKey(ws, id)
	r, err := s.run(ctx, deleteContact, []string{key, pre + "ids", pre + "code:" + id}, pre, id)
	s.written.mark(key)
	if err != nil {
		return err
	}
	if n, err := r.AsInt64(); err != nil {
		return err
	} else if n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// ---------------------------------------------------------------- flows

// PutFlow implements storage.Store.
func (s *Store) PutFlow(ctx context.Context, f storage.SignInFlow) error {
	ttl := f.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return errors.New("flow already expired")
	}
	doc, err := json.Marshal(f)
	if err != nil {
		return err
	}
	_, err = s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
		return b.Set().Key(s.p + "flow:" + f.IDHash).Value(string(doc)).PxMilliseconds(px(ttl)).Build()
	})
	return err
}

// Flow implements storage.Store.
func (s *Store) Flow(ctx context.Context, idHash string) (storage.SignInFlow, error) {
	raw, ok, err := s.getString(ctx, s.p+"flow:"+idHash)
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

// DeleteFlow implements storage.Store.
func (s *Store) DeleteFlow(ctx context.Context, idHash string) error {
	_, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Del().Key(s.p + "flow:" + idHash).Build() })
	return err
}

// ---------------------------------------------------------------- codes

// putCode replaces a contact's code. KEYS: code. ARGV: hash, expiry
// (unix microseconds), tries, issued at, TTL in milliseconds.
var putCode = rueidis.NewLuaScript(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'e', ARGV[2], 't', ARGV[3], 'i', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// PutCode implements storage.Store.
func (s *Store) PutCode(ctx context.Context, ws, contactID string, c storage.Code) error {
	ttl := c.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return errors.New("code already expired")
	}
	_, err := s.run(ctx, putCode, []string{s.ws(ws) + "code:" + contactID},
		rueidis.BinaryString(c.Hash), micros(c.ExpiresAt), strconv.Itoa(c.Tries),
		c.IssuedAt.UTC().Format(time.RFC3339Nano), pxString(ttl))
	return err
}

// redeemCode is RedeemCode in one step. KEYS: code. ARGV: hash, now (unix
// microseconds), max tries. Returns a storage.CodeResult: 0 missing,
// 1 accepted, 2 wrong, 3 dead.
var redeemCode = rueidis.NewLuaScript(`
local c = redis.call('HMGET', KEYS[1], 'h', 'e', 't')
if not c[1] then return 0 end
local tries, max = tonumber(c[3]) or 0, tonumber(ARGV[3])
if tonumber(ARGV[2]) >= tonumber(c[2]) or tries >= max then
  redis.call('DEL', KEYS[1])
  return 0
end
if c[1] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
tries = tries + 1
if tries >= max then
  redis.call('DEL', KEYS[1])
  return 3
end
redis.call('HSET', KEYS[1], 't', tries)
return 2
`)

// RedeemCode implements storage.Store.
func (s *Store) RedeemCode(ctx context.Context, ws, contactID string, hash []byte, maxTries int) (storage.CodeResult, error) {
	r, err := s.run(ctx, redeemCode, []string{s.ws(ws) + "code:" + contactID},
		rueidis.BinaryString(hash), micros(s.now()), strconv.Itoa(maxTries))
	if err != nil {
		return storage.CodeMissing, err
	}
	n, err := r.AsInt64()
	if err != nil {
		return storage.CodeMissing, err
	}
	switch n {
	case 1:
		return storage.CodeAccepted, nil
	case 2:
		return storage.CodeWrong, nil
	case 3:
		return storage.CodeDead, nil
	default:
		return storage.CodeMissing, nil
	}
}

// ---------------------------------------------------------------- sessions

// indexSession adds a session to its workspace's and contact's indexes,
// drops entries past their absolute expiry, and keeps each index alive as
// long as its longest session. KEYS: workspace index, contact index.
// ARGV: absolute expiry (unix ms), id hash, now (unix ms), TTL in ms.
var indexSession = rueidis.NewLuaScript(`
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[3])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[4]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  end
end
return 1
`)

// PutSession implements storage.Store.
func (s *Store) PutSession(ctx context.Context, sess storage.Session) error {
	now := s.now()
	ttl := sess.Expiry().Sub(now)
	if ttl <= 0 {
		return errors.New("session already expired")
	}
	doc, err := json.Marshal(sess)
	if err != nil {
		return err
	}
	// Index first: a session that exists must be found by
	// DeleteContactSessions; a dangling index entry is harmless.
	pre := s.ws(sess.Workspace)
	if _, err := s.run(ctx, indexSession, []string{pre + "sessions", pre + "si:" + sess.ContactID},
		strconv.FormatInt(sess.ExpiresAt.UnixMilli(), 10), sess.IDHash,
		strconv.FormatInt(now.UnixMilli(), 10), pxString(sess.ExpiresAt.Sub(now)+time.Second)); err != nil {
		return err
	}
	key := s.sessionKey(sess.IDHash)
	_, err = s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
		return b.Set().Key(key).Value(string(doc)).PxMilliseconds(px(ttl)).Build()
	})
	s.written.mark(key)
	return err
}

func decodeSession(raw string) (storage.Session, error) {
	var sess storage.Session
	if err := json.Unmarshal([]byte(raw), &sess); err != nil {
		return storage.Session{}, fmt.Errorf("redis: session: %w", err)
	}
	return sess, nil
}

// Session implements storage.Store. It is on the hot path: served from the
// client-side cache, which Redis invalidates on every change; expiry is
// checked against the clock on every call.
func (s *Store) Session(ctx context.Context, idHash string) (storage.Session, error) {
	v, ok, err := s.record(ctx, s.sessionKey(idHash), func(raw string) (any, error) { return decodeSession(raw) })
	if err != nil {
		return storage.Session{}, err
	}
	if !ok {
		return storage.Session{}, storage.ErrNotFound
	}
	sess := v.(storage.Session)
	if !s.now().Before(sess.Expiry()) {
		return storage.Session{}, storage.ErrNotFound
	}
	return sess, nil
}

// swap replaces a value only if it is still the one read. KEYS: key.
// ARGV: old value, new value, TTL in ms. Returns 1 if replaced.
var swap = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

// TouchSession implements storage.Store.
func (s *Store) TouchSession(ctx context.Context, idHash string, seen time.Time) error {
	key := s.sessionKey(idHash)
	defer s.written.mark(key)
	for range 16 {
		raw, ok, err := s.getString(ctx, key)
		if err != nil {
			return err
		}
		if !ok {
			return storage.ErrNotFound
		}
		sess, err := decodeSession(raw)
		if err != nil {
			return err
		}
		// Redis may keep a session past the store clock's expiry; a touch
		// must not revive it.
		now := s.now()
		if !now.Before(sess.Expiry()) {
			return storage.ErrNotFound
		}
		if !seen.After(sess.LastSeen) {
			return nil
		}
		sess.LastSeen = seen
		ttl := sess.Expiry().Sub(now)
		if ttl <= 0 {
			return storage.ErrNotFound
		}
		doc, err := json.Marshal(sess)
		if err != nil {
			return err
		}
		r, err := s.run(ctx, swap, []string{key}, raw, string(doc), pxString(ttl))
		if err != nil {
			return err
		}
		if n, _ := r.AsInt64(); n == 1 {
			return nil
		}
		// Changed or deleted in between: read again.
	}
	return errors.New("redis: touch session: too many concurrent changes")
}

// unindexSessions removes ids from a contact's indexes.
func (s *Store) unindexSessions(ctx context.Context, ws, contactID string, hashes []string) error {
	if len(hashes) == 0 {
		return nil
	}
	pre := s.ws(ws)
	_, err := s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		return []rueidis.Completed{
			b.Zrem().Key(pre + "sessions").Member(hashes...).Build(),
			b.Zrem().Key(pre + "si:" + contactID).Member(hashes...).Build(),
		}
	})
	return err
}

// DeleteSession implements storage.Store.
func (s *Store) DeleteSession(ctx context.Context, idHash string) error {
	key := s.sessionKey(idHash)
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Getdel().Key(key).Build() })
	s.written.mark(key)
	if rueidis.IsRedisNil(err) {
		return nil
	}
	if err != nil {
		return err
	}
	raw, err := r.ToString()
	if err != nil {
		return err
	}
	sess, err := decodeSession(raw)
	if err != nil {
		return nil // the session is gone; only its index entry may linger
	}
	return s.unindexSessions(ctx, sess.Workspace, sess.ContactID, []string{idHash})
}

// indexed returns the id hashes in an index.
func (s *Store) indexed(ctx context.Context, key string) ([]string, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Zrange().Key(key).Min("0").Max("-1").Build() })
	if err != nil {
		return nil, err
	}
	return r.AsStrSlice()
}

// Sessions implements storage.Store.
func (s *Store) Sessions(ctx context.Context, ws, contactID string) ([]storage.Session, error) {
	idx := s.ws(ws) + "sessions"
	if contactID != "" {
		idx = s.ws(ws) + "si:" + contactID
	}
	hashes, err := s.indexed(ctx, idx)
	if err != nil {
		return nil, err
	}
	// Session keys spread over the cluster: one GET each, pipelined.
	rs, err := s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		cmds := make([]rueidis.Completed, len(hashes))
		for i, h := range hashes {
			cmds[i] = b.Get().Key(s.sessionKey(h)).Build()
		}
		return cmds
	})
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []storage.Session
	for _, r := range rs {
		raw, err := r.ToString()
		if err != nil {
			continue
		}
		sess, err := decodeSession(raw)
		if err != nil {
			return nil, err
		}
		if sess.Workspace != ws || contactID != "" && sess.ContactID != contactID || !now.Before(sess.Expiry()) {
			continue
		}
		out = append(out, sess)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// DeleteContactSessions implements storage.Store. Each session is taken
// with GETDEL, so concurrent revocations count each session once. Index
// entries whose session was not found stay until their absolute expiry: a
// sign-in racing this call indexes before it stores its session, and must
// remain revocable.
func (s *Store) DeleteContactSessions(ctx context.Context, ws, contactID string) (int, error) {
	hashes, err := s.indexed(ctx, s.ws(ws)+"si:"+contactID)
	if err != nil || len(hashes) == 0 {
		return 0, err
	}
	keys := make([]string, len(hashes))
	for i, h := range hashes {
		keys[i] = s.sessionKey(h)
	}
	rs, err := s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		cmds := make([]rueidis.Completed, len(keys))
		for i, k := range keys {
			cmds[i] = b.Getdel().Key(k).Build()
		}
		return cmds
	})
	s.written.mark(keys...)
	if err != nil {
		return 0, err
	}
	now := s.now()
	n := 0
	var gone []string
	for i, r := range rs {
		raw, err := r.ToString()
		if err != nil {
			continue
		}
		gone = append(gone, hashes[i])
		if sess, err := decodeSession(raw); err == nil && now.Before(sess.Expiry()) {
			n++
		}
	}
	return n, s.unindexSessions(ctx, ws, contactID, gone)
}

// ---------------------------------------------------------------- hit, cooldown

// hit counts one event in a window. KEYS: counter. ARGV: TTL in ms.
// Returns the count.
var hit = rueidis.NewLuaScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)

// Hit implements storage.Store.
func (s *Store) Hit(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	now := s.now()
	start := now.Truncate(window)
	reset := start.Add(window)
	k := s.p + "hit:" + key + ":" + strconv.FormatInt(start.Unix(), 10)
	r, err := s.run(ctx, hit, []string{k}, pxString(reset.Sub(now)+time.Second))
	if err != nil {
		return false, 0, err
	}
	n, err := r.AsInt64()
	if err != nil {
		return false, 0, err
	}
	if n > int64(limit) {
		return false, reset.Sub(now), nil
	}
	return true, 0, nil
}

// cooldown starts a cooldown unless one is running. KEYS: cooldown.
// ARGV: now and end of a new cooldown (unix microseconds), TTL in ms.
// Returns 0 when started, else the microseconds left.
var cooldown = rueidis.NewLuaScript(`
local u = redis.call('GET', KEYS[1])
if u then
  local left = tonumber(u) - tonumber(ARGV[1])
  if left > 0 then return left end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 0
`)

// Cooldown implements storage.Store.
func (s *Store) Cooldown(ctx context.Context, key string, d time.Duration) (bool, time.Duration, error) {
	now := s.now()
	r, err := s.run(ctx, cooldown, []string{s.p + "cool:" + key}, micros(now), micros(now.Add(d)), pxString(d+time.Second))
	if err != nil {
		return false, 0, err
	}
	left, err := r.AsInt64()
	if err != nil {
		return false, 0, err
	}
	if left > 0 {
		return false, time.Duration(left) * time.Microsecond, nil
	}
	return true, 0, nil
}

// ---------------------------------------------------------------- once

type onceValue struct {
	Value     []byte    `json:"v"`
	ExpiresAt time.Time `json:"e"`
}

// PutOnce implements storage.Store.
func (s *Store) PutOnce(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	k := s.p + "once:" + key
	if ttl <= 0 {
		// Already expired: what was there is no longer takeable either.
		_, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Del().Key(k).Build() })
		return err
	}
	doc, err := json.Marshal(onceValue{Value: value, ExpiresAt: s.now().Add(ttl)})
	if err != nil {
		return err
	}
	_, err = s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
		return b.Set().Key(k).Value(string(doc)).PxMilliseconds(px(ttl)).Build()
	})
	return err
}

// TakeOnce implements storage.Store.
func (s *Store) TakeOnce(ctx context.Context, key string) ([]byte, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Getdel().Key(s.p + "once:" + key).Build() })
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

// ---------------------------------------------------------------- outbox

// enqueue stores a message and schedules it. KEYS: due set, message.
// ARGV: id, message JSON, attempts, due, lease until, last error, score
// (unix microseconds when claimable).
var enqueue = rueidis.NewLuaScript(`
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'msg', ARGV[2], 'attempts', ARGV[3], 'due', ARGV[4], 'lease', ARGV[5], 'err', ARGV[6])
redis.call('ZADD', KEYS[1], ARGV[7], ARGV[1])
return 1
`)

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// Enqueue implements storage.Store.
func (s *Store) Enqueue(ctx context.Context, m storage.OutboxMessage) error {
	m = m.WithDefaults(s.now())
	claimable := m.Due
	if m.LeaseUntil.After(claimable) {
		claimable = m.LeaseUntil
	}
	// The fields that change live beside the JSON, so the scripts never
	// re-encode it.
	base := m
	base.Attempts, base.Due, base.LeaseUntil, base.LastError = 0, time.Time{}, time.Time{}, ""
	doc, err := json.Marshal(base)
	if err != nil {
		return err
	}
	_, err = s.run(ctx, enqueue, []string{s.outboxDue(), s.outboxMsgPrefix() + m.ID},
		m.ID, string(doc), strconv.Itoa(m.Attempts), formatTime(m.Due), formatTime(m.LeaseUntil), m.LastError, micros(claimable))
	return err
}

// claimOutbox leases up to max due messages: it counts an attempt, sets
// the lease and reschedules each at its lease's end, so a message leased
// by a worker that died comes back by itself. KEYS: due set. ARGV: now and
// lease end (unix microseconds), max, message key prefix, lease end
// (RFC 3339). Returns {id, JSON, attempts, due, last error} per message.
var claimOutbox = rueidis.NewLuaScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[4] .. id
  local f = redis.call('HMGET', k, 'msg', 'due', 'err')
  if f[1] then
    local n = redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('HSET', k, 'lease', ARGV[5])
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = {id, f[1], n, f[2] or '', f[3] or ''}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
`)

// ClaimOutbox implements storage.Store.
func (s *Store) ClaimOutbox(ctx context.Context, lease time.Duration, max int) ([]storage.OutboxMessage, error) {
	if max <= 0 {
		return nil, nil
	}
	now := s.now()
	until := now.Add(lease)
	r, err := s.run(ctx, claimOutbox, []string{s.outboxDue()},
		micros(now), micros(until), strconv.Itoa(max), s.outboxMsgPrefix(), formatTime(until))
	if err != nil {
		return nil, err
	}
	rows, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]storage.OutboxMessage, 0, len(rows))
	for _, row := range rows {
		f, err := row.ToArray()
		if err != nil || len(f) != 5 {
			return nil, errors.New("redis: claim outbox: unexpected reply")
		}
		id, _ := f[0].ToString()
		doc, _ := f[1].ToString()
		var m storage.OutboxMessage
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("redis: outbox message %s: %w", id, err)
		}
		attempts, _ := f[2].AsInt64()
		due, _ := f[3].ToString()
		lastErr, _ := f[4].ToString()
		m.ID, m.Attempts, m.Due, m.LeaseUntil, m.LastError = id, int(attempts), parseTime(due), until, lastErr
		out = append(out, m)
	}
	return out, nil
}

// ackOutbox removes a message. KEYS: due set, message. ARGV: id.
var ackOutbox = rueidis.NewLuaScript(`
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
`)

// AckOutbox implements storage.Store.
func (s *Store) AckOutbox(ctx context.Context, id string) error {
	_, err := s.run(ctx, ackOutbox, []string{s.outboxDue(), s.outboxMsgPrefix() + id}, id)
	return err
}

// retryOutbox releases a message until a new due time. KEYS: due set,
// message. ARGV: id, due (RFC 3339), due (unix microseconds), last error.
// Returns 0 when there is no such message.
var retryOutbox = rueidis.NewLuaScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'due', ARGV[2], 'lease', '', 'err', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`)

// RetryOutbox implements storage.Store.
func (s *Store) RetryOutbox(ctx context.Context, id string, due time.Time, lastErr string) error {
	r, err := s.run(ctx, retryOutbox, []string{s.outboxDue(), s.outboxMsgPrefix() + id},
		id, formatTime(due), micros(due), lastErr)
	if err != nil {
		return err
	}
	if n, _ := r.AsInt64(); n == 0 {
		return storage.ErrNotFound
	}
	return nil
}

// OutboxLen implements storage.Store.
func (s *Store) OutboxLen(ctx context.Context) (int, error) {
	r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed { return b.Zcard().Key(s.outboxDue()).Build() })
	if err != nil {
		return 0, err
	}
	n, err := r.AsInt64()
	return int(n), err
}

// ---------------------------------------------------------------- audit

// auditIDLen is the length of an event id (storage.SortableID): 16 hex
// digits of nanoseconds and 16 of randomness. A sorted-set member is the id
// followed by the event's JSON, so events of one microsecond still order by
// id.
const auditIDLen = 32

// AppendAudit implements storage.Store.
func (s *Store) AppendAudit(ctx context.Context, e storage.AuditEvent) error {
	now := s.now()
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	e.ID = storage.SortableID(e.Time)
	oldest := now.Add(-s.retention)
	if e.Time.Before(oldest) {
		return nil
	}
	doc, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := s.p + "audit:" + e.Workspace
	_, err = s.doMulti(ctx, func(b rueidis.Builder) []rueidis.Completed {
		return []rueidis.Completed{
			b.Zadd().Key(key).ScoreMember().ScoreMember(float64(e.Time.UnixMicro()), e.ID+string(doc)).Build(),
			b.Zremrangebyscore().Key(key).Min("-inf").Max("(" + micros(oldest)).Build(),
			b.Pexpire().Key(key).Milliseconds(px(s.retention + time.Hour)).Build(),
		}
	})
	return err
}

// Audit implements storage.Store. Events are read newest first, in
// batches, between the query's time bounds. Ids order exactly like the
// events (score, then member), so both the cursor and the position between
// batches are "the last id seen": no offsets that a concurrent append
// could shift.
func (s *Store) Audit(ctx context.Context, q storage.AuditQuery) ([]storage.AuditEvent, string, error) {
	limit := q.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	oldest := s.now().Add(-s.retention)
	lo := oldest
	if q.Since.After(lo) {
		lo = q.Since
	}
	hi := "+inf"
	if !q.Until.IsZero() {
		hi = micros(q.Until)
	}
	after := strings.ToLower(q.Cursor)
	if t, ok := auditIDTime(after); ok && (hi == "+inf" || t.UnixMicro() < q.Until.UnixMicro()) {
		hi = micros(t)
	}
	key := s.p + "audit:" + q.Workspace
	batch := int64(max(limit+1, 64))
	var out []storage.AuditEvent
	for len(out) <= limit {
		r, err := s.do(ctx, func(b rueidis.Builder) rueidis.Completed {
			return b.Zrange().Key(key).Min(hi).Max(micros(lo)).Byscore().Rev().Limit(0, batch).Build()
		})
		if err != nil {
			return nil, "", err
		}
		members, err := r.AsStrSlice()
		if err != nil {
			return nil, "", err
		}
		progressed := false
		for _, m := range members {
			if len(m) <= auditIDLen || after != "" && m[:auditIDLen] >= after {
				continue
			}
			progressed, after = true, m[:auditIDLen]
			var e storage.AuditEvent
			if err := json.Unmarshal([]byte(m[auditIDLen:]), &e); err != nil {
				return nil, "", fmt.Errorf("redis: audit event: %w", err)
			}
			if e.Time.Before(lo) || !q.Until.IsZero() && !e.Time.Before(q.Until) {
				continue
			}
			if q.ContactID != "" && e.ContactID != q.ContactID || q.Event != "" && e.Event != q.Event {
				continue
			}
			if out = append(out, e); len(out) > limit {
				break
			}
		}
		if int64(len(members)) < batch {
			break
		}
		if !progressed {
			// A whole batch within one microsecond, all seen: widen.
			batch *= 2
			continue
		}
		if t, ok := auditIDTime(after); ok {
			hi = micros(t)
		}
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = out[limit-1].ID
	}
	return out, next, nil
}

// auditIDTime is the time an event id starts with.
func auditIDTime(id string) (time.Time, bool) {
	if len(id) < 16 {
		return time.Time{}, false
	}
	ns, err := strconv.ParseUint(id[:16], 16, 64)
	if err != nil || ns > math.MaxInt64 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)), true
}

// Interface guards
var _ storage.Store = (*Store)(nil)
