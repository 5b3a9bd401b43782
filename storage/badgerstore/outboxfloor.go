package badgerstore

import "sync"

// outboxFloor is where ClaimOutbox starts reading. Delivered messages are
// deleted, and until compaction drops their tombstones every claim
// stepped over them from the first outbox key on: in the sign-in rush
// that was 5% of Caddy's CPU. Badger has one process per directory, so
// the store can remember a floor below which nothing is live.
//
// The invariant: every live message's id is at least at. An enqueue
// lowers the floor before its message is written; a claim that read the
// outbox raises it to the first live id it saw, but never above an id
// enqueued while it read (its snapshot may not show that message).
// Claims, retries and releases only rewrite live messages, and a retry
// of a deleted one finds nothing.
type outboxFloor struct {
	// scan serializes claims, so that low belongs to the one running.
	scan sync.Mutex

	mu sync.Mutex
	at string // "" reads from the first outbox key
	// low is the lowest id enqueued since the running claim began.
	low    string
	lowSet bool
}

// enqueued lowers the floor to id, before the message is written.
func (f *outboxFloor) enqueued(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id < f.at {
		f.at = id
	}
	if !f.lowSet || id < f.low {
		f.low, f.lowSet = id, true
	}
}

// begin starts a claim and returns where it reads from; end must follow.
func (f *outboxFloor) begin() string {
	f.scan.Lock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lowSet = false
	return f.at
}

// end finishes a claim. When its read succeeded, first is the first live
// id it saw (found false: it saw none), and the floor rises to it, or to
// the lowest id enqueued meanwhile.
func (f *outboxFloor) end(read bool, first string, found bool) {
	defer f.scan.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !read {
		return
	}
	next := first
	if !found {
		next = "\xff" // every id is lower: hex digits
	}
	if f.lowSet && f.low < next {
		next = f.low
	}
	f.at = next
}
