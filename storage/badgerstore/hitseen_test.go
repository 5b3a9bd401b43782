package badgerstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kdesk/portalgate/storage"
)

// TestCountersRemembered checks the memo of counters this process wrote:
// a count reads it instead of Badger, a full stripe forgets and reads
// Badger again without losing a count, and a reopened store counts on
// from what Badger kept.
func TestCountersRemembered(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const window = time.Hour
	count := func(key string) int {
		t.Helper()
		n, _, err := s.Count(ctx, key, window)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The memo is what a count reads: a value written to Badger behind
	// its back is not seen while the memo lives.
	if n := count("k"); n != 1 {
		t.Fatalf("first count = %d", n)
	}
	k := kHit + "k/" + strconv.FormatInt(time.Now().Truncate(window).Unix(), 10)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], 100)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(k), b[:]) }); err != nil {
		t.Fatal(err)
	}
	if n := count("k"); n != 2 {
		t.Fatalf("count with the memo = %d, want 2 (read from the memo, not Badger)", n)
	}
	// HitAll counts through the same memo, stopping at the counter over
	// its limit.
	res, err := s.HitAll(ctx, storage.Hit{Key: "k", Limit: 2, Window: window}, storage.Hit{Key: "never", Limit: 9, Window: window})
	if err != nil || res.Over != 0 || res.Counts[0] != 3 {
		t.Fatalf("HitAll = %+v, %v; want k at 3 and over", res, err)
	}
	if n := count("never"); n != 1 {
		t.Fatalf("a counter after the one over the limit was counted: %d", n)
	}

	// Fill one stripe past its bound: it forgets, and every counter still
	// counts on from Badger.
	stripe := s.hitStripe("k")
	var same []string
	for i := 0; len(same) < maxSeenPerStripe+10; i++ {
		if key := fmt.Sprintf("fill/%d", i); s.hitStripe(key) == stripe {
			same = append(same, key)
		}
	}
	for _, key := range same {
		count(key)
	}
	if got := len(s.hitSeen[stripe]); got > maxSeenPerStripe {
		t.Fatalf("stripe holds %d counters, bound %d", got, maxSeenPerStripe)
	}
	for _, key := range same[:20] {
		if n := count(key); n != 2 {
			t.Fatalf("%s after the stripe forgot = %d, want 2", key, n)
		}
	}
	if n := count("k"); n != 4 {
		t.Fatalf("k after the stripe forgot = %d, want 4", n)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := count("k"); n != 5 {
		t.Fatalf("k after reopening = %d, want 5", n)
	}
}
