package storage

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// SortableIDLen is the length of a SortableID.
const SortableIDLen = 32

// SortableID returns a time-ordered unique id for t. It is the one id
// format of audit events and outbox messages in every backend:
//
//	16 lowercase hex digits   t's Unix time in nanoseconds, big-endian
//	16 lowercase hex digits   64 random bits
//
// Ids compare as strings the way their times compare (for times from 1970
// to 2262), so a backend can keep events in id order and page by "the last
// id seen"; ids of the same nanosecond order arbitrarily, and the random
// half makes a collision negligible. SortableIDTime reads the time back.
func SortableID(t time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.UnixNano()))
	_, _ = rand.Read(b[8:])
	return hex.EncodeToString(b[:])
}

// SortableIDTime returns the time a SortableID was made for, and false
// when id is not one.
func SortableIDTime(id string) (time.Time, bool) {
	if len(id) != SortableIDLen {
		return time.Time{}, false
	}
	var b [16]byte
	if _, err := hex.Decode(b[:], []byte(id)); err != nil || !isLowerHex(id) {
		return time.Time{}, false
	}
	ns := binary.BigEndian.Uint64(b[:8])
	if ns > 1<<63-1 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(ns)), true
}

func isLowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
