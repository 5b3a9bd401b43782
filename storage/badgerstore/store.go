// Package badgerstore is portalgate's embedded storage backend: state in a
// Badger database on local disk, for one Caddy on one machine.
package badgerstore

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/kdesk/portalgate/storage"
)

// Options tune a Store.
type Options struct {
	// Now is the clock; default time.Now.
	Now func() time.Time
	// AuditRetention is how long audit events are kept; default 90 days.
	AuditRetention time.Duration
	// Logger receives Badger's own messages; default no-op.
	Logger *zap.Logger
	// InMemory keeps everything in memory (tests only).
	InMemory bool
	// GCInterval is how often value-log GC runs, and expired audit events
	// are deleted (sweepAudit); default 5 minutes.
	GCInterval time.Duration
	// Compression is "zstd" (default), "snappy" or "none"; see
	// Backend.Compression.
	Compression string
}

// blockCacheBytes is Badger's cache of decompressed blocks, used only
// with compression.
const blockCacheBytes = 16 << 20

// compression is Badger's compression for name.
func compression(name string) (options.CompressionType, error) {
	switch name {
	case "none":
		return options.None, nil
	case "snappy":
		return options.Snappy, nil
	case "", "zstd":
		return options.ZSTD, nil
	}
	return options.None, fmt.Errorf("storage badger: compression %q: want none, snappy or zstd", name)
}

// Store is a storage.Store on Badger.
type Store struct {
	db    *badger.DB
	space space
	now   func() time.Time
	// retention and log are the latest config's (see Reconfigure).
	retention atomic.Int64
	log       atomic.Pointer[zap.Logger]

	stop chan struct{}
	done chan struct{}

	// sessions and contacts hold decoded hot records. Badger has one
	// writer per directory, so every write goes through this Store and
	// drops what it changed in the same call: a revoked session or a
	// disabled contact is refused on the very next request.
	sessions *storage.HotCache[string, storage.Session]
	contacts *storage.HotCache[contactKey, storage.Contact]
	// byIndex is the same for a contact found by email or directory id,
	// keyed by its index key: a sign-in looks its contact up by email
	// twice (the outbox worker, the code form), each an index read and a
	// record read through Badger otherwise. Every write of a workspace's
	// contacts drops the workspace's entries.
	byIndex *storage.HotCache[contactKey, storage.Contact]
	// flows is the same for sign-in flows, read by most pages of a
	// sign-in; each write of a flow drops it, so a flow is read through
	// Badger once after each write and from here until the next.
	flows *storage.HotCache[string, storage.SignInFlow]

	// contactsMu serializes the writes of contacts, so that an import
	// written in several transactions applies exactly the plan checked
	// before its first one (see import.go).
	contactsMu sync.Mutex

	// hitMu serializes the counts of one counter: under a burst on one
	// counter, optimistic transactions keep conflicting and run out of
	// retries. Counters are spread over the stripes by key, so counts of
	// different counters (every sign-in form counts one or two) never wait
	// for each other's commit.
	hitMu [64]sync.Mutex
	// hitSeen is each counter as this process last wrote it, by stripe
	// (hitSeen[i] is guarded by hitMu[i]). A count reads its counter here
	// rather than through Badger, whose Get searches every level for the
	// newest version even when the memtable holds it (4% of Caddy's CPU in
	// the sign-in rush, for four counters a sign-in). Badger's directory
	// lock makes this process the counters' only writer; a counter not
	// written since the start, or whose memo ended, is read from Badger.
	hitSeen [64]map[string]seenCount

	// outboxFloor is where claims start reading the outbox.
	outboxFloor outboxFloor
}

// hitStripe is the stripe of hitMu that serializes counter k.
func (s *Store) hitStripe(k string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(k))
	return int(h.Sum32() % uint32(len(s.hitMu)))
}

// lockHits locks the stripes of every key, each once and in stripe order
// (so two callers never wait for each other crosswise), and returns the
// function that unlocks them.
func (s *Store) lockHits(keys ...string) (unlock func()) {
	stripes := make([]int, 0, len(keys))
	for _, k := range keys {
		stripes = append(stripes, s.hitStripe(k))
	}
	slices.Sort(stripes)
	stripes = slices.Compact(stripes)
	for _, i := range stripes {
		s.hitMu[i].Lock()
	}
	return func() {
		for _, i := range stripes {
			s.hitMu[i].Unlock()
		}
	}
}

// Open opens (creating if needed) the database in dir.
func Open(dir string, o Options) (*Store, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.GCInterval <= 0 {
		o.GCInterval = 5 * time.Minute
	}
	// Badger's defaults reserve hundreds of MB (64 MB memtables, 1 GB
	// value-log files, a 256 MB block cache); a sign-in gate needs little.
	// Its records are small, so small tables keep the table builders'
	// buffers small too (with 100,000 sessions: ~40 MB of heap instead of
	// ~125 MB). Tables are compressed with zstd unless Options.Compression
	// says otherwise, and read through a 16 MB block cache; uncompressed
	// ones are read from the memory map, without a block cache. The
	// memtables are 8 MB, not smaller: a flush writes every version a
	// memtable holds, ended records too, so the bytes flushed are the same
	// either way, but the flushes and the level-0 compactions after them
	// come a quarter as often; with 2 MB memtables the sign-in rush spent
	// about 11% more of Caddy's CPU per sign-in, and its p99s were longer.
	// Level 0 is compacted once it holds 4 tables, not 2: each of those
	// compactions rewrites the part of the level below that the tables
	// overlap (sessions and counters have random keys, so nearly all of
	// it), and doing that half as often cut Caddy's CPU per sign-in and the
	// rush's p99s, more so the longer it ran (30,000 sign-ins: 2.23 ms
	// against 2.61, mail p99 233 ms against 343).
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{o.Logger.Sugar()}).
		WithLoggingLevel(badger.WARNING).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(256 << 10).
		WithValueLogFileSize(32 << 20).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithZSTDCompressionLevel(1).
		WithIndexCacheSize(8 << 20).
		WithValueThreshold(1 << 10).
		WithNumCompactors(2).
		WithNumVersionsToKeep(1).
		WithMetricsEnabled(false)
	if o.InMemory {
		opts = opts.WithDir("").WithValueDir("").WithInMemory(true)
	}
	switch c, err := compression(o.Compression); {
	case err != nil:
		return nil, err
	case c != options.None:
		opts = opts.WithCompression(c).WithBlockCacheSize(blockCacheBytes)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("opening badger database in %s: %w", dir, err)
	}
	if err := migrateAuditIDs(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("badger database in %s: %w", dir, err)
	}
	if err := indexAuditContacts(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("badger database in %s: %w", dir, err)
	}
	s := &Store{
		db:       db,
		now:      o.Now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		sessions: storage.NewHotCache[string, storage.Session](hotRecords, 0),
		contacts: storage.NewHotCache[contactKey, storage.Contact](hotRecords, 0),
		byIndex:  storage.NewHotCache[contactKey, storage.Contact](hotRecords, 0),
		flows:    storage.NewHotCache[string, storage.SignInFlow](hotRecords, 0),
	}
	s.Reconfigure(o.AuditRetention, o.Logger)
	s.space.dir, s.space.log = dir, s.log.Load
	s.space.free.Store(1 << 62) // until the first check
	if err := s.finishImports(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("badger database in %s: finishing an interrupted contacts import: %w", dir, err)
	}
	if n, err := s.ReleaseLeases(context.Background()); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("badger database in %s: releasing outbox leases: %w", dir, err)
	} else if n > 0 {
		o.Logger.Info("outbox messages of the previous process released for delivery now", zap.Int("messages", n))
	}
	go s.gcLoop(o.GCInterval, o.InMemory)
	return s, nil
}

// Close stops value-log GC and the audit sweep, waits for them, and
// closes the database.
func (s *Store) Close() error {
	close(s.stop)
	<-s.done
	return s.db.Close()
}

// gcLoop deletes expired audit events, then repeats value-log GC until
// there is nothing to rewrite, on a ticker.
func (s *Store) gcLoop(every time.Duration, inMemory bool) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if n, err := s.sweepAudit(); err != nil {
			s.log.Load().Warn("deleting expired audit events", zap.Int("deleted", n), zap.Error(err))
		} else if n > 0 {
			s.log.Load().Debug("deleted expired audit events", zap.Int("deleted", n))
		}
		if inMemory {
			continue
		}
		for {
			err := s.db.RunValueLogGC(0.5)
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Load().Warn("badger value log gc", zap.Error(err))
			}
			break
		}
	}
}

// Key prefixes. Workspace names are validated names without '/'.
const (
	kSecret   = "secret"
	kContact  = "c/"  // c/<ws>/<id>
	kEmail    = "ce/" // ce/<ws>/<email> -> id
	kDir      = "cd/" // cd/<ws>/<directory id> -> id
	kFlow     = "f/"  // f/<hash>
	kCode     = "k/"  // k/<ws>/<contact id>/<flow hash>
	kSession  = "s/"  // s/<hash>
	kSessIdx  = "si/" // si/<ws>/<contact id>/<hash>
	kHit      = "r/"  // r/<key>/<window start>
	kCooldown = "w/"  // w/<key>
	kOnce     = "o/"  // o/<key>
	kOutbox   = "q/"  // q/<id>
	kAudit    = "a/"  // a/<ws>/<id> (a storage.SortableID)
	kAuditIdx = "ai/" // ai/<ws>/<contact id>/<id>: a copy of each event of a contact, same expiry
	kMeta     = "m/"  // m/<name>: facts about the database itself
)

// update runs fn in a read-write transaction, retrying on conflicts.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	if err := s.space.room(); err != nil {
		return err
	}
	var err error
	for i := range 50 {
		err = s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		// Back off a little, with jitter, so contending writers spread out.
		time.Sleep(time.Duration(mrand.Int64N(int64(50*time.Microsecond) << min(i, 6))))
	}
	return err
}

func getJSON(txn *badger.Txn, key string, v any) error {
	item, err := txn.Get([]byte(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return storage.ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
}

func setJSON(txn *badger.Txn, key string, v any, ttl time.Duration) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	e := badger.NewEntry([]byte(key), b)
	if ttl > 0 {
		// Badger's TTL has one-second resolution; round up so the entry
		// never disappears before the expiry kept inside the value.
		e = e.WithTTL(ttl + time.Second)
	}
	return txn.SetEntry(e)
}

// Secret implements storage.Store.
func (s *Store) Secret(_ context.Context, generate func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kSecret))
		if err == nil {
			out, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		b, err := generate()
		if err != nil {
			return err
		}
		out = b
		return txn.Set([]byte(kSecret), b)
	})
	return out, err
}

// putContacts upserts contacts inside txn, each replacing its old indexes;
// a new email must not belong to another contact. A contact written as
// disabled, or whose email changes, loses its sessions and codes; their
// id hashes are returned for contactsWritten.
func (s *Store) putContacts(txn *badger.Txn, ws string, contacts []storage.Contact, now time.Time) ([]string, error) {
	var ended []string
	for _, c := range contacts {
		key := kContact + ws + "/" + c.ID
		var old storage.Contact
		switch err := getJSON(txn, key, &old); {
		case err == nil:
			if old.Email != c.Email {
				_, hs, err := s.endContact(txn, ws, c.ID)
				if err != nil {
					return nil, err
				}
				ended = append(ended, hs...)
			}
			if err := txn.Delete([]byte(kEmail + ws + "/" + old.Email)); err != nil {
				return nil, err
			}
			if old.DirectoryID != "" {
				if err := txn.Delete([]byte(kDir + ws + "/" + old.DirectoryID)); err != nil {
					return nil, err
				}
			}
		case !errors.Is(err, storage.ErrNotFound):
			return nil, err
		}
		if !c.Active() {
			_, hs, err := s.endContact(txn, ws, c.ID)
			if err != nil {
				return nil, err
			}
			ended = append(ended, hs...)
		}
		// Another contact may already hold this email.
		if item, err := txn.Get([]byte(kEmail + ws + "/" + c.Email)); err == nil {
			var other []byte
			if other, err = item.ValueCopy(nil); err != nil {
				return nil, err
			}
			if string(other) != c.ID {
				return nil, fmt.Errorf("contact %s: email %s already belongs to contact %s", c.ID, c.Email, other)
			}
		}
		c.UpdatedAt = now
		if err := setJSON(txn, key, c, 0); err != nil {
			return nil, err
		}
		if err := txn.Set([]byte(kEmail+ws+"/"+c.Email), []byte(c.ID)); err != nil {
			return nil, err
		}
		if c.DirectoryID != "" {
			if err := txn.Set([]byte(kDir+ws+"/"+c.DirectoryID), []byte(c.ID)); err != nil {
				return nil, err
			}
		}
	}
	return ended, nil
}

// contactsWritten follows a transaction that wrote n contacts of ws: on
// success it drops what changed from the hot caches.
func (s *Store) contactsWritten(ws string, n int, ended []string, err error) error {
	if err == nil {
		s.contacts.DropFunc(func(k contactKey) bool { return k.ws == ws })
		s.byIndex.DropFunc(func(k contactKey) bool { return k.ws == ws })
		for _, h := range ended {
			s.sessions.Drop(h)
		}
	}
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("too many contacts in one call (%d): send them in smaller batches", n)
	}
	return err
}

// Contact implements storage.Store.
func (s *Store) Contact(_ context.Context, ws, id string) (storage.Contact, error) {
	ck := contactKey{ws: ws, id: id}
	if c, ok := s.contacts.Get(ck); ok {
		return c, nil
	}
	gen := s.contacts.Generation()
	var c storage.Contact
	err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, kContact+ws+"/"+id, &c) })
	if err == nil {
		s.contacts.Put(ck, c, gen)
	}
	return c, err
}

func (s *Store) contactByIndex(ws, key string) (storage.Contact, error) {
	ck := contactKey{ws: ws, id: key}
	if c, ok := s.byIndex.Get(ck); ok {
		return c, nil
	}
	gen := s.byIndex.Generation()
	var c storage.Contact
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return storage.ErrNotFound
		}
		if err != nil {
			return err
		}
		id, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		return getJSON(txn, kContact+ws+"/"+string(id), &c)
	})
	if err == nil {
		s.byIndex.Put(ck, c, gen)
	}
	return c, err
}

// ContactByEmail implements storage.Store.
func (s *Store) ContactByEmail(_ context.Context, ws, email string) (storage.Contact, error) {
	return s.contactByIndex(ws, kEmail+ws+"/"+strings.ToLower(strings.TrimSpace(email)))
}

// ContactByDirectoryID implements storage.Store.
func (s *Store) ContactByDirectoryID(_ context.Context, ws, dirID string) (storage.Contact, error) {
	if dirID == "" {
		return storage.Contact{}, storage.ErrNotFound
	}
	return s.contactByIndex(ws, kDir+ws+"/"+dirID)
}

// Contacts implements storage.Store.
func (s *Store) Contacts(ctx context.Context, ws string) ([]storage.Contact, error) {
	return s.ContactsAfter(ctx, ws, "", math.MaxInt)
}

// DeleteContact implements storage.Store.
func (s *Store) DeleteContact(_ context.Context, ws, id string) (int, error) {
	s.contactsMu.Lock()
	defer s.contactsMu.Unlock()
	key := kContact + ws + "/" + id
	var n int
	var ended []string
	err := s.update(func(txn *badger.Txn) error {
		var c storage.Contact
		if err := getJSON(txn, key, &c); err != nil {
			return err
		}
		for _, k := range []string{key, kEmail + ws + "/" + c.Email} {
			if err := txn.Delete([]byte(k)); err != nil {
				return err
			}
		}
		var err error
		if n, ended, err = s.endContact(txn, ws, id); err != nil {
			return err
		}
		if c.DirectoryID != "" {
			return txn.Delete([]byte(kDir + ws + "/" + c.DirectoryID))
		}
		return nil
	})
	s.contacts.Drop(contactKey{ws: ws, id: id})
	s.byIndex.DropFunc(func(k contactKey) bool { return k.ws == ws })
	for _, h := range ended {
		s.sessions.Drop(h)
	}
	return n, err
}

// endContact deletes, inside txn, every session and code of a contact. It
// returns how many of the sessions were live and the id hashes of all of
// them, for the caller to drop from the hot cache once txn commits.
func (s *Store) endContact(txn *badger.Txn, ws, contactID string) (int, []string, error) {
	if err := deletePrefix(txn, codePrefix(ws, contactID)); err != nil {
		return 0, nil, err
	}
	return s.endSessions(txn, ws, contactID)
}

// endSessions deletes, inside txn, every session of a contact; it returns
// what endContact does.
func (s *Store) endSessions(txn *badger.Txn, ws, contactID string) (int, []string, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kSessIdx + ws + "/" + contactID + "/")})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	now := s.now()
	n := 0
	hashes := make([]string, 0, len(keys))
	for _, k := range keys {
		hash := string(k[bytes.LastIndexByte(k, '/')+1:])
		switch sess, err := getSession(txn, hash); {
		case err == nil:
			if now.Before(sess.Expiry()) {
				n++
			}
		case !errors.Is(err, storage.ErrNotFound):
			return 0, nil, err
		}
		hashes = append(hashes, hash)
		if err := txn.Delete(k); err != nil {
			return 0, nil, err
		}
		if err := txn.Delete([]byte(kSession + hash)); err != nil {
			return 0, nil, err
		}
	}
	return n, hashes, nil
}

// PutFlow implements storage.Store.
func (s *Store) PutFlow(_ context.Context, f storage.SignInFlow) error {
	ttl := f.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return errors.New("flow already expired")
	}
	defer s.flows.Drop(f.IDHash)
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, kFlow+f.IDHash, f, ttl) })
}

// Flow implements storage.Store.
func (s *Store) Flow(_ context.Context, idHash string) (storage.SignInFlow, error) {
	f, ok := s.flows.Get(idHash)
	if !ok {
		gen := s.flows.Generation()
		if err := s.db.View(func(txn *badger.Txn) error { return getJSON(txn, kFlow+idHash, &f) }); err != nil {
			return storage.SignInFlow{}, err
		}
		s.flows.Put(idHash, f, gen)
	}
	if !s.now().Before(f.ExpiresAt) {
		return storage.SignInFlow{}, storage.ErrNotFound
	}
	return f, nil
}

// FlowContact implements storage.Store: the flow and the contact, each
// from its cache when it is there.
func (s *Store) FlowContact(ctx context.Context, idHash string) (storage.SignInFlow, storage.Contact, error) {
	return storage.FlowContactEach(ctx, s, idHash)
}

// DeleteFlow implements storage.Store.
func (s *Store) DeleteFlow(_ context.Context, idHash string) error {
	defer s.flows.Drop(idHash)
	return s.update(func(txn *badger.Txn) error { return txn.Delete([]byte(kFlow + idHash)) })
}

// codePrefix starts the keys of every code of a contact. Contact ids hold
// no '/', so one contact's prefix never covers another's codes.
func codePrefix(ws, contactID string) string { return kCode + ws + "/" + contactID + "/" }

// deletePrefix deletes every key under prefix inside txn.
func deletePrefix(txn *badger.Txn, prefix string) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// PutCode implements storage.Store.
func (s *Store) PutCode(_ context.Context, ws, contactID, flowHash string, c storage.Code) error {
	ttl := c.ExpiresAt.Sub(s.now())
	if ttl <= 0 {
		return errors.New("code already expired")
	}
	return s.update(func(txn *badger.Txn) error { return putCodeIn(txn, ws, contactID, flowHash, c, ttl) })
}

// putCodeIn is PutCode inside txn, for a code that lives ttl more.
func putCodeIn(txn *badger.Txn, ws, contactID, flowHash string, c storage.Code, ttl time.Duration) error {
	key := codePrefix(ws, contactID) + flowHash
	var old storage.Code
	switch err := getJSON(txn, key, &old); {
	case err == nil:
		if subtle.ConstantTimeCompare(old.Hash, c.Hash) == 1 && old.Tries > c.Tries {
			c.Tries = old.Tries
		}
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	return setJSON(txn, key, c, ttl)
}

// CountAndPutCode implements storage.Store: one transaction.
func (s *Store) CountAndPutCode(_ context.Context, hits []storage.Hit, ws, contactID, flowHash string, c storage.Code) (storage.HitResult, error) {
	now := s.now()
	ttl := c.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return storage.HitResult{Over: -1}, errors.New("code already expired")
	}
	return s.countThen(now, hits, func(txn *badger.Txn) error { return putCodeIn(txn, ws, contactID, flowHash, c, ttl) })
}

// RedeemCode implements storage.Store.
func (s *Store) RedeemCode(_ context.Context, ws, contactID, flowHash string, hash []byte, maxTries int) (storage.CodeResult, error) {
	var res storage.CodeResult
	err := s.update(func(txn *badger.Txn) error {
		var err error
		res, err = s.redeemIn(txn, ws, contactID, flowHash, hash, maxTries)
		return err
	})
	return res, err
}

// redeemIn is RedeemCode inside txn.
func (s *Store) redeemIn(txn *badger.Txn, ws, contactID, flowHash string, hash []byte, maxTries int) (storage.CodeResult, error) {
	key := codePrefix(ws, contactID) + flowHash
	var c storage.Code
	err := getJSON(txn, key, &c)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.CodeMissing, nil
	}
	if err != nil {
		return storage.CodeMissing, err
	}
	now := s.now()
	if !now.Before(c.ExpiresAt) || c.Tries >= maxTries {
		return storage.CodeMissing, txn.Delete([]byte(key))
	}
	if subtle.ConstantTimeCompare(c.Hash, hash) == 1 {
		return storage.CodeAccepted, txn.Delete([]byte(key))
	}
	c.Tries++
	if c.Tries >= maxTries {
		return storage.CodeDead, txn.Delete([]byte(key))
	}
	return storage.CodeWrong, setJSON(txn, key, c, c.ExpiresAt.Sub(now))
}

// CountAndRedeemCode implements storage.Store: one transaction, under
// the counters' stripes.
func (s *Store) CountAndRedeemCode(_ context.Context, hits []storage.Hit, ws, contactID, flowHash string, hash []byte, maxTries int, start *storage.SessionStart) (storage.HitResult, storage.CodeResult, error) {
	now := s.now()
	var begin *sessionStart
	if start != nil {
		var err error
		if begin, err = s.prepareStart(start.Session, start.EndFlow, start.EndSession, start.Events, now); err != nil {
			return storage.HitResult{Over: -1}, storage.CodeMissing, err
		}
		defer begin.dropCached(s)
	}
	var code storage.CodeResult
	res, err := s.countThen(now, hits, func(txn *badger.Txn) error {
		var err error
		if code, err = s.redeemIn(txn, ws, contactID, flowHash, hash, maxTries); err != nil || code != storage.CodeAccepted || begin == nil {
			return err
		}
		return begin.in(txn, now)
	})
	if err != nil || res.Over >= 0 {
		// Past a limit the code was not tried (nor in an attempt the
		// transaction retried).
		return res, storage.CodeMissing, err
	}
	return res, code, nil
}

// PutSession implements storage.Store.
func (s *Store) PutSession(ctx context.Context, sess storage.Session) error {
	return s.StartSession(ctx, sess, "", "")
}

// StartSession implements storage.Store: one transaction.
func (s *Store) StartSession(_ context.Context, sess storage.Session, endFlow, endSession string, events ...storage.AuditEvent) error {
	now := s.now()
	begin, err := s.prepareStart(sess, endFlow, endSession, events, now)
	if err != nil {
		return err
	}
	defer begin.dropCached(s)
	return s.update(func(txn *badger.Txn) error { return begin.in(txn, now) })
}

// sessionStart is a session start ready to write: StartSession's, or
// CountAndRedeemCode's once the code is accepted.
type sessionStart struct {
	sess                storage.Session
	ttl                 time.Duration
	endFlow, endSession string
	audit               []*badger.Entry
}

func (s *Store) prepareStart(sess storage.Session, endFlow, endSession string, events []storage.AuditEvent, now time.Time) (*sessionStart, error) {
	ttl := sess.Expiry().Sub(now)
	if ttl <= 0 {
		return nil, errors.New("session already expired")
	}
	audit, err := s.auditEntriesOf(events)
	if err != nil {
		return nil, err
	}
	return &sessionStart{sess: sess, ttl: ttl, endFlow: endFlow, endSession: endSession, audit: audit}, nil
}

// in writes the session, its index and events, and ends the flow and the
// replaced session.
func (b *sessionStart) in(txn *badger.Txn, now time.Time) error {
	sess := b.sess
	if err := setSession(txn, sess, b.ttl); err != nil {
		return err
	}
	if err := setEntries(txn, b.audit); err != nil {
		return err
	}
	idx := badger.NewEntry([]byte(kSessIdx+sess.Workspace+"/"+sess.ContactID+"/"+sess.IDHash), nil).
		WithTTL(sess.ExpiresAt.Sub(now) + time.Second)
	if err := txn.SetEntry(idx); err != nil {
		return err
	}
	if b.endFlow != "" {
		if err := txn.Delete([]byte(kFlow + b.endFlow)); err != nil {
			return err
		}
	}
	if b.endSession != "" && b.endSession != sess.IDHash {
		return endSessionIn(txn, sess.Workspace, b.endSession)
	}
	return nil
}

// dropCached forgets the replaced session and the ended flow in the hot
// caches, after the write (deferred).
func (b *sessionStart) dropCached(s *Store) {
	if b.endSession != "" {
		s.sessions.Drop(b.endSession)
	}
	if b.endFlow != "" {
		s.flows.Drop(b.endFlow)
	}
}

// Session implements storage.Store.
func (s *Store) Session(_ context.Context, ws, idHash string) (storage.Session, error) {
	now := s.now()
	if sess, ok := s.sessions.Get(idHash); ok {
		if now.Before(sess.Expiry()) && sess.Workspace == ws {
			return sess, nil
		}
		return storage.Session{}, storage.ErrNotFound
	}
	gen := s.sessions.Generation()
	var sess storage.Session
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		sess, err = getSession(txn, idHash)
		return err
	})
	if err != nil {
		return storage.Session{}, err
	}
	s.sessions.Put(idHash, sess, gen)
	if !now.Before(sess.Expiry()) || sess.Workspace != ws {
		return storage.Session{}, storage.ErrNotFound
	}
	return sess, nil
}

// TouchSession implements storage.Store.
func (s *Store) TouchSession(_ context.Context, ws, idHash string, seen time.Time) error {
	err := s.update(func(txn *badger.Txn) error {
		sess, err := getSession(txn, idHash)
		if err != nil {
			return err
		}
		if sess.Workspace != ws {
			return storage.ErrNotFound
		}
		// Badger's TTL runs on real time with a second's grace: an entry
		// may outlive its expiry, and a touch must not revive it.
		if !s.now().Before(sess.Expiry()) {
			return storage.ErrNotFound
		}
		if !seen.After(sess.LastSeen) {
			return nil
		}
		sess.LastSeen = seen
		ttl := sess.Expiry().Sub(s.now())
		if ttl <= 0 {
			return storage.ErrNotFound
		}
		return setSession(txn, sess, ttl)
	})
	// Dropped, not replaced: a concurrent delete must win.
	s.sessions.Drop(idHash)
	return err
}

// DeleteSession implements storage.Store.
func (s *Store) DeleteSession(_ context.Context, ws, idHash string) error {
	defer s.sessions.Drop(idHash)
	return s.update(func(txn *badger.Txn) error { return endSessionIn(txn, ws, idHash) })
}

// endSessionIn deletes a session of workspace ws and its index entry in
// txn; a missing one, or one of another workspace, is left alone.
func endSessionIn(txn *badger.Txn, ws, idHash string) error {
	key := kSession + idHash
	sess, err := getSession(txn, idHash)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	if sess.Workspace != ws {
		return nil
	}
	if err := txn.Delete([]byte(kSessIdx + sess.Workspace + "/" + sess.ContactID + "/" + idHash)); err != nil {
		return err
	}
	return txn.Delete([]byte(key))
}

// Sessions implements storage.Store.
func (s *Store) Sessions(_ context.Context, ws, contactID string) ([]storage.Session, error) {
	prefix := kSessIdx + ws + "/"
	if contactID != "" {
		prefix += contactID + "/"
	}
	now := s.now()
	var out []storage.Session
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := string(it.Item().Key())
			hash := k[strings.LastIndexByte(k, '/')+1:]
			sess, err := getSession(txn, hash)
			if errors.Is(err, storage.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if now.Before(sess.Expiry()) {
				out = append(out, sess)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// DeleteContactSessions implements storage.Store.
func (s *Store) DeleteContactSessions(_ context.Context, ws, contactID string) (int, error) {
	var n int
	var hashes []string
	err := s.update(func(txn *badger.Txn) error {
		var err error
		n, hashes, err = s.endSessions(txn, ws, contactID)
		return err
	})
	for _, h := range hashes {
		s.sessions.Drop(h)
	}
	return n, err
}

// Hit implements storage.Store.
func (s *Store) Hit(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error) {
	n, reset, err := s.Count(ctx, key, window)
	if err != nil {
		return false, 0, err
	}
	if n > limit {
		return false, reset, nil
	}
	return true, 0, nil
}

// Count implements storage.Store.
func (s *Store) Count(_ context.Context, key string, window time.Duration) (int, time.Duration, error) {
	now := s.now()
	var n int
	var reset time.Duration
	defer s.lockHits(key)()
	var w counted
	err := s.update(func(txn *badger.Txn) error {
		var err error
		n, reset, w, err = s.countHit(txn, now, key, window)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	s.remember(w)
	return n, reset, nil
}

// HitAll implements storage.Store: every counter in one transaction.
func (s *Store) HitAll(_ context.Context, hits ...storage.Hit) (storage.HitResult, error) {
	return s.countThen(s.now(), hits, nil)
}

// countThen counts hits in one transaction and, when none is past its
// limit, does then in the same transaction (nil: nothing more); the
// counts are remembered once it commits.
func (s *Store) countThen(now time.Time, hits []storage.Hit, then func(txn *badger.Txn) error) (storage.HitResult, error) {
	defer s.lockHitsOf(hits)()
	var res storage.HitResult
	var writes []counted
	err := s.update(func(txn *badger.Txn) error {
		var err error
		if res, writes, err = s.countHits(txn, now, hits); err != nil || res.Over >= 0 || then == nil {
			return err
		}
		return then(txn)
	})
	if err != nil {
		return storage.HitResult{Over: -1}, err
	}
	s.remember(writes...)
	return res, nil
}

// seenCount is a counter's value as this process wrote it, good until
// the window ends (by the wall clock, before Badger's TTL of the entry).
type seenCount struct {
	n     uint64
	until time.Time
}

// maxSeenPerStripe bounds hitSeen: at it a stripe forgets the windows
// that ended, and everything if more than half were still live (a
// forgotten counter is read from Badger again).
const maxSeenPerStripe = 1024

// counted is a counter write of a transaction, remembered once it commits.
type counted struct {
	stripe int
	key    string
	seen   seenCount
}

// countHit counts one event against key's counter of the window that
// holds now, in txn, and returns the window's count so far and how long
// until it resets. The caller holds the counter's stripe of hitMu, and
// remembers the write (remember) once txn commits.
func (s *Store) countHit(txn *badger.Txn, now time.Time, key string, window time.Duration) (int, time.Duration, counted, error) {
	stripe := s.hitStripe(key)
	start := now.Truncate(window)
	reset := start.Add(window).Sub(now)
	k := kHit + key + "/" + strconv.FormatInt(start.Unix(), 10)
	var count uint64
	if m, ok := s.hitSeen[stripe][k]; ok && time.Now().Before(m.until) {
		count = m.n
	} else {
		item, err := txn.Get([]byte(k))
		switch {
		case err == nil:
			if err := item.Value(func(b []byte) error {
				if len(b) == 8 {
					count = binary.BigEndian.Uint64(b)
				}
				return nil
			}); err != nil {
				return 0, 0, counted{}, err
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return 0, 0, counted{}, err
		}
	}
	count++
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], count)
	if err := txn.SetEntry(badger.NewEntry([]byte(k), b[:]).WithTTL(reset + time.Second)); err != nil {
		return 0, 0, counted{}, err
	}
	return int(count), reset, counted{stripe: stripe, key: k, seen: seenCount{n: count, until: time.Now().Add(reset)}}, nil
}

// countHits counts one event against each of hits in txn, as HitAll
// does, stopping at the first past its limit, and returns the writes to
// remember once txn commits. The caller holds the hits' stripes.
func (s *Store) countHits(txn *badger.Txn, now time.Time, hits []storage.Hit) (storage.HitResult, []counted, error) {
	res := storage.HitResult{Over: -1, Counts: make([]int, 0, len(hits))}
	writes := make([]counted, 0, len(hits))
	for i, h := range hits {
		n, reset, w, err := s.countHit(txn, now, h.Key, h.Window)
		if err != nil {
			return storage.HitResult{Over: -1}, nil, err
		}
		writes = append(writes, w)
		res.Counts = append(res.Counts, n)
		if n > h.Limit {
			res.Over, res.RetryAfter = i, reset
			break
		}
	}
	return res, writes, nil
}

// lockHitsOf locks the stripes of hits' counters (lockHits).
func (s *Store) lockHitsOf(hits []storage.Hit) (unlock func()) {
	keys := make([]string, len(hits))
	for i, h := range hits {
		keys[i] = h.Key
	}
	return s.lockHits(keys...)
}

// remember keeps committed counter writes in hitSeen; the caller holds
// their stripes of hitMu.
func (s *Store) remember(writes ...counted) {
	for _, w := range writes {
		m := s.hitSeen[w.stripe]
		if len(m) >= maxSeenPerStripe {
			now := time.Now()
			for k, c := range m {
				if !now.Before(c.until) {
					delete(m, k)
				}
			}
			if len(m) > maxSeenPerStripe/2 {
				// Mostly live: forget them all, rather than scan again
				// a few writes later.
				clear(m)
			}
		}
		if m == nil {
			m = map[string]seenCount{}
			s.hitSeen[w.stripe] = m
		}
		m[w.key] = w.seen
	}
}

// Cooldown implements storage.Store.
func (s *Store) Cooldown(_ context.Context, key string, d time.Duration) (bool, time.Duration, error) {
	now := s.now()
	var wait time.Duration
	err := s.update(func(txn *badger.Txn) error {
		var err error
		wait, err = cooldownIn(txn, key, d, now)
		return err
	})
	return wait <= 0, wait, err
}

// cooldownIn starts, in txn, a cooldown of length d on key unless one is
// running, and returns what is left of that one (0 when it started one).
func cooldownIn(txn *badger.Txn, key string, d time.Duration, now time.Time) (time.Duration, error) {
	if left, err := cooldownLeftIn(txn, key, now); err != nil || left > 0 {
		return left, err
	}
	return 0, startCooldownIn(txn, key, d, now)
}

// cooldownLeftIn is how long the cooldown of key still runs (0: none).
func cooldownLeftIn(txn *badger.Txn, key string, now time.Time) (time.Duration, error) {
	item, err := txn.Get([]byte(kCooldown + key))
	if err == nil {
		var until int64
		if err := item.Value(func(b []byte) error {
			if len(b) == 8 {
				until = int64(binary.BigEndian.Uint64(b))
			}
			return nil
		}); err != nil {
			return 0, err
		}
		if left := time.Unix(0, until).Sub(now); left > 0 {
			return left, nil
		}
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return 0, err
	}
	return 0, nil
}

// startCooldownIn starts the cooldown of key, for d from now.
func startCooldownIn(txn *badger.Txn, key string, d time.Duration, now time.Time) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(now.Add(d).UnixNano()))
	return txn.SetEntry(badger.NewEntry([]byte(kCooldown+key), b[:]).WithTTL(d + time.Second))
}

type onceValue struct {
	Value     []byte    `json:"v"`
	ExpiresAt time.Time `json:"e"`
}

// PutOnce implements storage.Store.
func (s *Store) PutOnce(_ context.Context, key string, value []byte, ttl time.Duration) error {
	v := onceValue{Value: value, ExpiresAt: s.now().Add(ttl)}
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, kOnce+key, v, ttl) })
}

// TakeOnce implements storage.Store.
func (s *Store) TakeOnce(_ context.Context, key string) ([]byte, error) {
	var v onceValue
	err := s.update(func(txn *badger.Txn) error {
		if err := getJSON(txn, kOnce+key, &v); err != nil {
			return err
		}
		return txn.Delete([]byte(kOnce + key))
	})
	if err != nil {
		return nil, err
	}
	if !s.now().Before(v.ExpiresAt) {
		return nil, storage.ErrNotFound
	}
	return v.Value, nil
}

// Enqueue implements storage.Store.
func (s *Store) Enqueue(_ context.Context, m storage.OutboxMessage) error {
	m = m.WithDefaults(s.now())
	s.outboxFloor.enqueuing(m.ID)
	defer s.outboxFloor.wrote(m.ID)
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, kOutbox+m.ID, m, 0) })
}

// EnqueueForFlow implements storage.Store: one transaction.
func (s *Store) EnqueueForFlow(_ context.Context, m storage.OutboxMessage, f storage.SignInFlow, events ...storage.AuditEvent) error {
	now := s.now()
	ttl := f.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return errors.New("flow already expired")
	}
	audit, err := s.auditEntriesOf(events)
	if err != nil {
		return err
	}
	m = m.WithDefaults(now)
	s.outboxFloor.enqueuing(m.ID)
	defer s.outboxFloor.wrote(m.ID)
	defer s.flows.Drop(f.IDHash)
	return s.update(func(txn *badger.Txn) error { return enqueueIn(txn, m, f, ttl, audit) })
}

// enqueueIn writes, in txn, message m, the flow f that asked for it (kept
// ttl) and the audit entries.
func enqueueIn(txn *badger.Txn, m storage.OutboxMessage, f storage.SignInFlow, ttl time.Duration, audit []*badger.Entry) error {
	if err := setJSON(txn, kFlow+f.IDHash, f, ttl); err != nil {
		return err
	}
	if err := setEntries(txn, audit); err != nil {
		return err
	}
	return setJSON(txn, kOutbox+m.ID, m, 0)
}

// RequestCode implements storage.Store: one transaction, under the
// counters' stripes.
func (s *Store) RequestCode(_ context.Context, cooldownKey string, cooldown time.Duration, hits []storage.Hit, m storage.OutboxMessage, f storage.SignInFlow, events ...storage.AuditEvent) (storage.CodeRequest, error) {
	now := s.now()
	none := storage.CodeRequest{Hits: storage.HitResult{Over: -1}}
	ttl := f.ExpiresAt.Sub(now)
	if ttl <= 0 {
		return none, errors.New("flow already expired")
	}
	audit, err := s.auditEntriesOf(events)
	if err != nil {
		return none, err
	}
	defer s.lockHitsOf(hits)()
	m = m.WithDefaults(now)
	s.outboxFloor.enqueuing(m.ID)
	defer s.outboxFloor.wrote(m.ID)
	defer s.flows.Drop(f.IDHash)
	var res storage.CodeRequest
	var writes []counted
	err = s.update(func(txn *badger.Txn) error {
		res, writes = none, nil
		wait, err := cooldownLeftIn(txn, cooldownKey, now)
		if err != nil || wait > 0 {
			res.Wait = wait
			return err
		}
		// A request over a limit counts, and starts no cooldown.
		if res.Hits, writes, err = s.countHits(txn, now, hits); err != nil || res.Hits.Over >= 0 {
			return err
		}
		if err := startCooldownIn(txn, cooldownKey, cooldown, now); err != nil {
			return err
		}
		return enqueueIn(txn, m, f, ttl, audit)
	})
	if err != nil {
		return none, err
	}
	s.remember(writes...)
	return res, nil
}

// ClaimOutbox implements storage.Store.
func (s *Store) ClaimOutbox(_ context.Context, lease time.Duration, max int) ([]storage.OutboxMessage, error) {
	now := s.now()
	var out []storage.OutboxMessage
	from := s.outboxFloor.begin()
	var first string
	var found bool
	err := s.update(func(txn *badger.Txn) error {
		out, first, found = out[:0], "", false
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kOutbox), PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Seek([]byte(kOutbox + from)); it.Valid() && len(out) < max; it.Next() {
			if !found {
				first, found = string(it.Item().Key()[len(kOutbox):]), true
			}
			var m storage.OutboxMessage
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &m) }); err != nil {
				return err
			}
			if now.Before(m.Due) || now.Before(m.LeaseUntil) {
				continue
			}
			m.LeaseUntil = now.Add(lease)
			m.Attempts++
			out = append(out, m)
		}
		for _, m := range out {
			if err := setJSON(txn, kOutbox+m.ID, m, 0); err != nil {
				return err
			}
		}
		return nil
	})
	s.outboxFloor.end(err == nil, first, found)
	if errors.Is(err, badger.ErrConflict) {
		return nil, nil
	}
	return out, err
}

// AckOutbox implements storage.Store: one transaction.
func (s *Store) AckOutbox(_ context.Context, id string, events ...storage.AuditEvent) error {
	audit, err := s.auditEntriesOf(events)
	if err != nil {
		return err
	}
	return s.update(func(txn *badger.Txn) error {
		if err := setEntries(txn, audit); err != nil {
			return err
		}
		return txn.Delete([]byte(kOutbox + id))
	})
}

// RetryOutbox implements storage.Store.
func (s *Store) RetryOutbox(_ context.Context, id string, due time.Time, lastErr string) error {
	return s.update(func(txn *badger.Txn) error {
		var m storage.OutboxMessage
		if err := getJSON(txn, kOutbox+id, &m); err != nil {
			return err
		}
		m.Due, m.LeaseUntil, m.LastError = due, time.Time{}, lastErr
		return setJSON(txn, kOutbox+id, m, 0)
	})
}

// ReleaseLeases implements storage.Store. Open calls it: Badger has one
// process per directory, so a lease still running at open belongs to a
// process that died mid-delivery.
func (s *Store) ReleaseLeases(_ context.Context) (int, error) {
	now := s.now()
	n := 0
	err := s.update(func(txn *badger.Txn) error {
		n = 0
		var leased []storage.OutboxMessage
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kOutbox), PrefetchValues: true, PrefetchSize: 16})
		for it.Rewind(); it.Valid(); it.Next() {
			var m storage.OutboxMessage
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &m) }); err != nil {
				it.Close()
				return err
			}
			if now.Before(m.LeaseUntil) {
				leased = append(leased, m)
			}
		}
		it.Close()
		for _, m := range leased {
			m.LeaseUntil = time.Time{}
			if err := setJSON(txn, kOutbox+m.ID, m, 0); err != nil {
				return err
			}
		}
		n = len(leased)
		return nil
	})
	return n, err
}

// OutboxLen implements storage.Store.
func (s *Store) OutboxLen(_ context.Context) (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(kOutbox)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// AppendAudit implements storage.Store. An event of a contact is also
// written under the contact (kAuditIdx), in the same transaction with the
// same expiry, so that one contact's events are read as one short range of
// keys, without scanning the workspace's or a read per event: the
// retention drops both together.
func (s *Store) AppendAudit(_ context.Context, e storage.AuditEvent) error {
	entries, err := s.auditEntries(e)
	if err != nil || entries == nil {
		return err
	}
	return s.update(func(txn *badger.Txn) error { return setEntries(txn, entries) })
}

// auditEntriesOf are the entries recording each of events.
func (s *Store) auditEntriesOf(events []storage.AuditEvent) ([]*badger.Entry, error) {
	var out []*badger.Entry
	for _, e := range events {
		entries, err := s.auditEntries(e)
		if err != nil {
			return nil, err
		}
		out = append(out, entries...)
	}
	return out, nil
}

// setEntries writes entries in txn.
func setEntries(txn *badger.Txn, entries []*badger.Entry) error {
	for _, en := range entries {
		if err := txn.SetEntry(en); err != nil {
			return err
		}
	}
	return nil
}

// auditEntries are the entries recording e: the event and, when it
// concerns a contact, its index key; none when e is already past the
// retention.
func (s *Store) auditEntries(e storage.AuditEvent) ([]*badger.Entry, error) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	e.ID = storage.SortableID(e.Time)
	ttl := time.Duration(s.retention.Load()) - s.now().Sub(e.Time)
	if ttl <= 0 {
		return nil, nil
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	// Badger's TTL has one-second resolution; round up so the entry never
	// disappears before the retention says.
	out := []*badger.Entry{badger.NewEntry([]byte(kAudit+e.Workspace+"/"+e.ID), b).WithTTL(ttl + time.Second)}
	if e.ContactID != "" {
		out = append(out, badger.NewEntry([]byte(kAuditIdx+e.Workspace+"/"+e.ContactID+"/"+e.ID), b).WithTTL(ttl+time.Second))
	}
	return out, nil
}

// ImportAudit records many events as AppendAudit would each, in batches
// of transactions that do not wait for one another: for filling a trail
// in bulk (moving one from elsewhere, the scale tests). Events past the
// retention are skipped.
func (s *Store) ImportAudit(_ context.Context, events []storage.AuditEvent) error {
	if err := s.space.room(); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range events {
		entries, err := s.auditEntries(e)
		if err != nil {
			return err
		}
		for _, en := range entries {
			if err := wb.SetEntry(en); err != nil {
				return fmt.Errorf("importing audit events: %w", err)
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("importing audit events: %w", err)
	}
	return nil
}

// Audit implements storage.Store. Keys end in the event's id, which sorts
// like its time: a reverse scan yields newest first, from the cursor (the
// last id seen) or from the query's upper bound. A query for one contact
// scans that contact's copies instead.
func (s *Store) Audit(_ context.Context, q storage.AuditQuery) ([]storage.AuditEvent, string, error) {
	limit := q.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	prefix := []byte(kAudit + q.Workspace + "/")
	if q.ContactID != "" {
		prefix = []byte(kAuditIdx + q.Workspace + "/" + q.ContactID + "/")
	}
	// A reverse seek lands on the last key at or before seek.
	seek := append(append([]byte{}, prefix...), 0xff)
	if q.Cursor != "" {
		seek = append(append([]byte{}, prefix...), q.Cursor...)
	} else if !q.Until.IsZero() {
		// Every id of a time before Until sorts before Until's 16 digits
		// of nanoseconds; every id at or after it, after them.
		seek = fmt.Appendf(append([]byte{}, prefix...), "%016x", uint64(q.Until.UnixNano()))
	}
	oldest := s.now().Add(-time.Duration(s.retention.Load()))
	var out []storage.AuditEvent
	next := ""
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Item().Key()
			if q.Cursor != "" && string(k[len(prefix):]) == q.Cursor {
				continue
			}
			var e storage.AuditEvent
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &e) }); err != nil {
				return err
			}
			if !q.Since.IsZero() && e.Time.Before(q.Since) || e.Time.Before(oldest) {
				break
			}
			if !q.Until.IsZero() && !e.Time.Before(q.Until) {
				continue
			}
			if q.ContactID != "" && e.ContactID != q.ContactID || q.Event != "" && e.Event != q.Event {
				continue
			}
			if len(out) == limit {
				next = out[len(out)-1].ID
				break
			}
			out = append(out, e)
		}
		return nil
	})
	return out, next, err
}

// hotRecords bounds each of the in-memory caches of sessions and contacts.
const hotRecords = 8192

// contactKey names a cached contact without building a string on the hot
// path.
type contactKey struct{ ws, id string }

type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any) { l.s.Errorf(strings.TrimSpace(f), a...) }
func (l badgerLogger) Warningf(f string, a ...any) {
	// Badger's advice to grow its caches, every minute under random
	// reads: their sizes are chosen here, for the resident memory.
	if strings.Contains(f, "might be too small") || strings.HasPrefix(f, "Cache life expectancy") {
		l.s.Debugf(strings.TrimSpace(f), a...)
		return
	}
	l.s.Warnf(strings.TrimSpace(f), a...)
}
func (l badgerLogger) Infof(f string, a ...any)  { l.s.Infof(strings.TrimSpace(f), a...) }
func (l badgerLogger) Debugf(f string, a ...any) { l.s.Debugf(strings.TrimSpace(f), a...) }

// Interface guards
var (
	_ storage.Store        = (*Store)(nil)
	_ storage.ContactPager = (*Store)(nil)
)

// Records reports how many live records of each kind the database holds,
// by key prefix name ("flows", "sessions", "audit", …): for diagnostics
// and for tests that check what traffic leaves behind.
func (s *Store) Records() (map[string]int, error) {
	names := map[string]string{kContact: "contacts", kFlow: "flows", kCode: "codes", kSession: "sessions",
		kHit: "counters", kCooldown: "cooldowns", kOnce: "once", kOutbox: "outbox", kAudit: "audit", kAuditIdx: "audit index"}
	out := map[string]int{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if i := bytes.IndexByte(k, '/'); i > 0 {
				if name, ok := names[string(k[:i+1])]; ok {
					out[name]++
				}
			}
		}
		return nil
	})
	return out, err
}

// Reconfigure applies a config's audit retention and logger to the open
// database: the database is shared across config reloads, and the newest
// config's settings are the ones that count.
func (s *Store) Reconfigure(retention time.Duration, logger *zap.Logger) {
	if retention <= 0 {
		retention = DefaultAuditRetention
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	s.retention.Store(int64(retention))
	s.log.Store(logger)
}

// DefaultAuditRetention is how long audit events are kept unless the
// config says otherwise.
const DefaultAuditRetention = 90 * 24 * time.Hour

// ContactsAfter implements storage.ContactPager: a seek in the contacts'
// key range, so a page costs the same in a workspace of any size.
func (s *Store) ContactsAfter(_ context.Context, ws, after string, limit int) ([]storage.Contact, error) {
	var out []storage.Contact
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte(kContact + ws + "/")
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: min(limit, 100)})
		defer it.Close()
		// The first key after prefix+after: after followed by a zero byte.
		seek := append(append(append([]byte{}, prefix...), after...), 0)
		if after == "" {
			seek = prefix
		}
		for it.Seek(seek); it.Valid() && len(out) < limit; it.Next() {
			var c storage.Contact
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &c) }); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	return out, err
}
