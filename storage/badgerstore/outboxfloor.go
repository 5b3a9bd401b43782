package badgerstore

import "sync"

// outboxFloor is where ClaimOutbox starts reading. Delivered messages are
// deleted, and until compaction drops their tombstones every claim
// stepped over them from the first outbox key on: in the sign-in rush
// that was 5% of Caddy's CPU. Badger has one process per directory, so
// the store can remember a floor below which nothing is live.
//
// The invariant: every live message's id is at least at. An enqueue
// lowers the floor before its message is written. A claim raises it to
// the first live id its snapshot showed, but never above a message its
// snapshot may have missed: one whose enqueue was under way when the
// claim began (its write may land after the snapshot), or began after.
// Claims, retries and releases only rewrite live messages, and a retry of
// a deleted one finds nothing.
type outboxFloor struct {
	// scan serializes claims, so that the notes below belong to the one
	// running.
	scan sync.Mutex

	mu sync.Mutex
	at string // "" reads from the first outbox key
	// writing counts the enqueues under way, by id.
	writing map[string]int
	// low is the lowest id the running claim may have missed.
	low    string
	lowSet bool
}

// lower notes id as one the running claim may have missed; f.mu is held.
func (f *outboxFloor) lower(id string) {
	if !f.lowSet || id < f.low {
		f.low, f.lowSet = id, true
	}
}

// enqueuing lowers the floor to id before the message is written; wrote
// must follow once the write is done (or has failed).
func (f *outboxFloor) enqueuing(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id < f.at {
		f.at = id
	}
	if f.writing == nil {
		f.writing = map[string]int{}
	}
	f.writing[id]++
	f.lower(id)
}

// wrote ends an enqueue that enqueuing began.
func (f *outboxFloor) wrote(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.writing[id]--; f.writing[id] <= 0 {
		delete(f.writing, id)
	}
}

// begin starts a claim and returns where it reads from; end must follow.
func (f *outboxFloor) begin() string {
	f.scan.Lock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lowSet = false
	for id := range f.writing {
		f.lower(id)
	}
	return f.at
}

// end finishes a claim. When its read succeeded, first is the first live
// id it saw (found false: it saw none), and the floor rises to it, or to
// the lowest id the claim may have missed.
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
