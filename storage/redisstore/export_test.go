package redisstore

import "time"

// CachedRecords is how many decoded sessions and contacts the store holds.
func (s *Store) CachedRecords() (sessions, contacts int) {
	return s.sessions.Len(), s.contacts.Len()
}

// ClockOffset is how far Redis's clock was measured ahead of this one,
// once measured.
func (s *Store) ClockOffset() (time.Duration, bool) {
	return time.Duration(s.clockOffset.Load()) * time.Millisecond, s.clockKnown.Load()
}

// SetClockOffset makes the store believe Redis's clock is d ahead of this
// one, until it measures again (clockEvery).
func (s *Store) SetClockOffset(d time.Duration) {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	s.clockOffset.Store(d.Milliseconds())
	s.clockKnown.Store(true)
	s.clockAt.Store(time.Now().UnixNano())
}
