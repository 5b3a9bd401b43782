// Package redisstore is portalgate's shared storage backend: state in Redis
// (a single server, Sentinel or Cluster), for several Caddy instances behind
// a load balancer.
//
// Every operation that must be atomic is one Lua script or one command
// (GETDEL), so two instances can never both accept one code, take one
// single-use value or claim one outbox message. The scripts live in
// scripts/*.lua, embedded beside the Go code that runs them. Expiry is a Redis TTL and is
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
//	{ws:W}:imp:lock            a large import's lock: the importer's token, a lease
//	{ws:W}:imp:plan            a large import's planned records: list of JSON chunks
//	                           of [id, email, directory id, contact JSON]
//	{ws:W}:imp:mark            a large import's commit mark (see import.go)
//	{ws:W}:code:<contact id>:<flow hash>  code of one sign-in flow (hash: h = the code's hash, e = expiry, t = tries, i = issued)
//	{ws:W}:codes:<contact id>  flow hashes holding a code of the contact
//	{ws:W}:g:<id>              directory group (JSON)
//	{ws:W}:gids                set of group ids
//	{ws:W}:sessions            session id hashes of the workspace, scored by absolute expiry
//	{ws:W}:si:<contact id>     the same, per contact
//	{ws:W}:sess:<id hash>      session (JSON), beside its contact so one script ends both
//	flow:<id hash>             sign-in flow (JSON)
//	once:<key>                 single-use value (JSON)
//	hit:<key>:<window start>   rate-limit counter
//	cool:<key>                 cooldown end (unix microseconds)
//	{outbox}:due               message ids, scored by when claimable
//	{outbox}:m:<id>            message (hash: msg = JSON, attempts, due, lease, err)
//	audit:W                    events (id + JSON), scored by time in microseconds; and "!indexed", scored by when the contact indexes began
//	audit:W:c:<contact id>     the same members, for the events of one contact
//	{ws:W}:l:<id>              link (hash: doc = JSON, e = expiry µs, c = contact id, o = opens, l = last open)
//	{ws:W}:links               link ids of the workspace, scored by expiry (µs)
//	{ws:W}:li:<contact id>     the same, per contact
package redisstore

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"slices"
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
	// Username names the ACL user to authenticate as; empty for the
	// default user (requirepass).
	Username string
	// Password authenticates to Redis (ACL or requirepass); empty for none.
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
	// CallTimeout bounds each call to Redis (a frozen or overloaded server
	// must not hold requests); past it the call fails with
	// storage.ErrUnavailable. Default 2 seconds.
	CallTimeout time.Duration
	// AuditRetention is how long audit events are kept; default 90 days.
	AuditRetention time.Duration
	// CacheRecords bounds each of the decoded caches, of sessions and of
	// contacts; default 131072 (DefaultCacheRecords).
	CacheRecords int
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
	callLimit time.Duration
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

	// clockOffset is how far Redis's clock is ahead of this one, in ms,
	// once clockKnown; clockAt is when it was last measured (unix ns),
	// and clockMu is held while it is measured.
	clockOffset atomic.Int64
	clockKnown  atomic.Bool
	clockAt     atomic.Int64
	clockMu     sync.Mutex

	written ownWrites
	// sessions and contacts hold decoded records in front of rueidis's
	// client-side cache, so a signed-in request costs two map reads (see
	// cache.go).
	sessions *storage.HotCache[string, storage.Session]
	contacts *storage.HotCache[string, storage.Contact]
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
	if o.CacheRecords <= 0 {
		o.CacheRecords = DefaultCacheRecords
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Minute
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 2 * time.Second
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
			// A request makes its calls one after another, and waits for
			// each: each call on a connection of its own (pooled) costs
			// Caddy 3% less CPU per sign-in than sharing one pipelined
			// connection, whose reader and writer goroutines are two more
			// hand-offs a call. Cached reads (sessions, contacts) still go
			// through the shared connection that tracks invalidations.
			DisableAutoPipelining: true,
			// The pool's bound: the calls under way at once per server,
			// beyond which a call waits for a connection (within its
			// deadline). 64 serves the sign-in rush's 64 clients; rueidis's
			// default, 1,000 per instance, would let a few instances use up
			// Redis's 10,000 clients in a burst.
			BlockingPoolSize: 64,
			Sentinel:         rueidis.SentinelOption{MasterSet: o.MasterName, TLSConfig: o.TLS},
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
		callLimit: o.CallTimeout,
		log:       o.Logger,
		written:   ownWrites{m: map[string]time.Time{}},
		sessions:  storage.NewHotCache[string, storage.Session](o.CacheRecords, o.CacheTTL),
		contacts:  storage.NewHotCache[string, storage.Contact](o.CacheRecords, o.CacheTTL),
	}
	s.opt.OnInvalidations = s.invalidate
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
		s.log.Error("portal storage unavailable: redis does not answer; storage calls fail closed until it does",
			zap.Strings("address", s.opt.InitAddress), zap.Error(err))
	}
	return fmt.Errorf("redis: %w: %w", storage.ErrUnavailable, err)
}

func (s *Store) up() {
	if !s.healthy.Load() && s.healthy.CompareAndSwap(false, true) {
		s.log.Info("portal storage available again: redis answers", zap.Strings("address", s.opt.InitAddress))
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
	if errors.Is(err, context.Canceled) {
		// The caller went away (a browser closed, Caddy stopping): the
		// call fails closed, but Redis has not been seen to fail.
		return fmt.Errorf("redis: %w: %w", storage.ErrUnavailable, err)
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		if re.IsLoading() || re.IsClusterDown() || re.IsTryAgain() ||
			strings.HasPrefix(msg, "MASTERDOWN") || strings.HasPrefix(msg, "READONLY") ||
			strings.HasPrefix(msg, "BUSY") || strings.HasPrefix(msg, "NOREPLICAS") ||
			strings.HasPrefix(msg, "PGLATE") {
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
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	r := c.Do(ctx, build(c.B()))
	return r, s.check(r.Error())
}

// clustered says whether Redis is a Cluster, where one script may only
// touch keys of one slot. On a single server or Sentinel any keys may go
// together, and a few calls then become one.
func (s *Store) clustered() bool {
	c, err := s.conn()
	return err == nil && c.Mode() == rueidis.ClientModeCluster
}

// bounded gives a call at most CallTimeout, or less when ctx says so.
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.callLimit {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.callLimit)
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
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	rs := c.DoMulti(ctx, cmds...)
	for _, r := range rs {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) {
			return rs, s.check(err)
		}
	}
	s.up()
	return rs, nil
}

// lateGuardLua starts every script: it takes the caller's deadline, which
// runFor appends to the arguments, and refuses to run past it.
//
//go:embed scripts/late_guard.lua
var lateGuardLua string

// newScript is a script of this store, guarded against running after its
// caller gave up.
func newScript(src string) *rueidis.Lua { return rueidis.NewLuaScript(lateGuardLua + src) }

// lateSlack is how long past its caller's deadline a script may still
// run: more than the error of the clock offset measured (half a round
// trip of at most clockRTT), so that a skewed clock never refuses a call
// its caller still waits for.
const lateSlack = 500 * time.Millisecond

// clockRTT is the longest round trip of a TIME that measures the offset
// between the clocks; clockEvery is how often it is measured again.
const (
	clockRTT   = 250 * time.Millisecond
	clockEvery = 30 * time.Second
)

// deadlineArg is the last argument of every script: ctx's deadline by
// Redis's clock, with lateSlack, or "" while the clocks' offset is not
// known (then the script runs whenever Redis gets to it).
func (s *Store) deadlineArg(ctx context.Context, c rueidis.Client) string {
	if at := s.clockAt.Load(); time.Since(time.Unix(0, at)) > clockEvery && s.clockMu.TryLock() {
		go func() {
			defer s.clockMu.Unlock()
			s.measureClock(c)
		}()
	}
	d, ok := ctx.Deadline()
	if !ok || !s.clockKnown.Load() {
		return ""
	}
	return strconv.FormatInt(d.Add(lateSlack).UnixMilli()+s.clockOffset.Load(), 10)
}

// measureClock measures how far Redis's clock is ahead of this one (TIME),
// in milliseconds. A failed or slow answer is no measure: it keeps the
// last one, and is tried again a second later.
func (s *Store) measureClock(c rueidis.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), s.callLimit)
	defer cancel()
	t0 := time.Now()
	r := c.Do(ctx, c.B().Time().Build())
	rtt := time.Since(t0)
	v, err := r.AsIntSlice()
	if err != nil || len(v) != 2 || rtt > clockRTT {
		s.clockAt.Store(time.Now().Add(time.Second - clockEvery).UnixNano())
		return
	}
	s.clockAt.Store(time.Now().UnixNano())
	redis := time.Unix(v[0], v[1]*1000)
	s.clockOffset.Store(redis.Sub(t0.Add(rtt / 2)).Milliseconds())
	s.clockKnown.Store(true)
}

// oneCommandLua runs a single write command as a guarded script: a call
// that waited in a frozen Redis must not take effect later, whatever its
// size.
//
//go:embed scripts/one_command.lua
var oneCommandLua string

var oneCommand = newScript(oneCommandLua)

// setPX stores value at key for ttl, guarded (SET … PX).
func (s *Store) setPX(ctx context.Context, key, value string, ttl time.Duration) error {
	_, err := s.run(ctx, oneCommand, []string{key}, "SET", value, strconv.FormatInt(px(ttl), 10))
	return err
}

// getDel takes the value at key, guarded (GETDEL); a Redis nil error
// when there is none.
func (s *Store) getDel(ctx context.Context, key string) (rueidis.RedisResult, error) {
	return s.run(ctx, oneCommand, []string{key}, "GETDEL")
}

// del deletes key, guarded.
func (s *Store) del(ctx context.Context, key string) error {
	_, err := s.run(ctx, oneCommand, []string{key}, "DEL")
	return err
}

// run executes a Lua script.
func (s *Store) run(ctx context.Context, script *rueidis.Lua, keys []string, args ...string) (rueidis.RedisResult, error) {
	return s.runFor(ctx, 0, script, keys, args...)
}

// perContact is how much longer than CallTimeout a script that writes
// many contacts may take, per contact: a script is atomic, so a large
// import is one long call (about 40 µs a contact) that must not be cut
// off, and then reported as failed, while Redis completes it.
const perContact = 200 * time.Microsecond

// runFor executes a Lua script that may take extra beyond CallTimeout.
func (s *Store) runFor(ctx context.Context, extra time.Duration, script *rueidis.Lua, keys []string, args ...string) (rueidis.RedisResult, error) {
	c, err := s.conn()
	if err != nil {
		return rueidis.RedisResult{}, err
	}
	var cancel context.CancelFunc
	if extra > 0 {
		ctx, cancel = context.WithTimeout(ctx, s.callLimit+extra)
	} else {
		ctx, cancel = s.bounded(ctx)
	}
	defer cancel()
	r := script.Exec(ctx, c, keys, append(args[:len(args):len(args)], s.deadlineArg(ctx, c)))
	if re, ok := rueidis.IsRedisErr(r.Error()); ok && strings.HasPrefix(re.Error(), "PGLATE") {
		// Refused while the caller still waits: the clocks moved apart
		// (a new master after a failover, a clock stepped). Measure again
		// at the next call.
		s.clockAt.Store(0)
		s.log.Warn("redis refused a call as late by its clock: measuring the clocks' offset again", zap.Error(re))
	}
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

// ---------------------------------------------------------------- keys

func (s *Store) ws(ws string) string               { return s.p + "{ws:" + ws + "}:" }
func (s *Store) contactKey(ws, id string) string   { return s.ws(ws) + "c:" + id }
func (s *Store) sessionKey(ws, hash string) string { return s.ws(ws) + "sess:" + hash }
func (s *Store) flowKey(hash string) string        { return s.p + "flow:" + hash }
func (s *Store) outboxDue() string                 { return s.p + "{outbox}:due" }
func (s *Store) outboxMsgPrefix() string           { return s.p + "{outbox}:m:" }

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

// Interface guards
var _ storage.Store = (*Store)(nil)
