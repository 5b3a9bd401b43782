package badgerstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

// Sessions are the store's most numerous records (a million live ones in
// a large customer base), and Badger maps every table page a read
// touches into Caddy: a session's size is resident memory. So a session
// is kept in a compact binary record rather than JSON, without the id
// hash its key already holds and with times as integers: about a third
// of the JSON record's size.
//
//	0x01                                   the format
//	uvarint length + bytes, six times      Workspace, ContactID, Method,
//	                                       CSRF, ClientIP, UserAgent
//	varint seconds + uvarint nanoseconds,  CreatedAt, LastSeen, ExpiresAt
//	three times                            (Unix, UTC)
//	varint                                 Idle, in nanoseconds
//
// Records written by earlier versions are JSON (their first byte is
// '{'); they are read as they are and written in binary at their next
// touch.
const sessionFormat = 0x01

// encodeSession is sess's binary record.
func encodeSession(sess storage.Session) []byte {
	b := make([]byte, 0, 64+len(sess.Workspace)+len(sess.ContactID)+len(sess.Method)+len(sess.CSRF)+len(sess.ClientIP)+len(sess.UserAgent))
	b = append(b, sessionFormat)
	for _, s := range []string{sess.Workspace, sess.ContactID, sess.Method, sess.CSRF, sess.ClientIP, sess.UserAgent} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, t := range []time.Time{sess.CreatedAt, sess.LastSeen, sess.ExpiresAt} {
		b = binary.AppendVarint(b, t.Unix())
		b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	return binary.AppendVarint(b, int64(sess.Idle))
}

var errSessionRecord = errors.New("badger: malformed session record")

// decodeSession reads the session stored under idHash: a binary record,
// or the JSON of an earlier version.
func decodeSession(b []byte, idHash string) (storage.Session, error) {
	var sess storage.Session
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &sess); err != nil {
			return storage.Session{}, fmt.Errorf("badger: session: %w", err)
		}
		return sess, nil
	}
	if len(b) == 0 || b[0] != sessionFormat {
		return storage.Session{}, errSessionRecord
	}
	b = b[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s, true
	}
	for _, f := range []*string{&sess.Workspace, &sess.ContactID, &sess.Method, &sess.CSRF, &sess.ClientIP, &sess.UserAgent} {
		s, ok := str()
		if !ok {
			return storage.Session{}, errSessionRecord
		}
		*f = s
	}
	for _, f := range []*time.Time{&sess.CreatedAt, &sess.LastSeen, &sess.ExpiresAt} {
		sec, k := binary.Varint(b)
		if k <= 0 {
			return storage.Session{}, errSessionRecord
		}
		b = b[k:]
		ns, k := binary.Uvarint(b)
		if k <= 0 || ns >= uint64(time.Second) {
			return storage.Session{}, errSessionRecord
		}
		b = b[k:]
		*f = time.Unix(sec, int64(ns)).UTC()
	}
	idle, k := binary.Varint(b)
	if k <= 0 || k != len(b) {
		return storage.Session{}, errSessionRecord
	}
	sess.Idle = time.Duration(idle)
	sess.IDHash = idHash
	return sess, nil
}

// getSession reads the session under idHash in txn; storage.ErrNotFound
// when there is none.
func getSession(txn *badger.Txn, idHash string) (storage.Session, error) {
	item, err := txn.Get([]byte(kSession + idHash))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return storage.Session{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Session{}, err
	}
	var sess storage.Session
	err = item.Value(func(b []byte) error {
		sess, err = decodeSession(b, idHash)
		return err
	})
	return sess, err
}

// setSession writes sess's record in txn, kept for ttl (plus Badger's
// one-second grace, as setJSON does).
func setSession(txn *badger.Txn, sess storage.Session, ttl time.Duration) error {
	return txn.SetEntry(badger.NewEntry([]byte(kSession+sess.IDHash), encodeSession(sess)).WithTTL(ttl + time.Second))
}
