package redisstore

// CachedRecords is how many decoded sessions and contacts the store holds.
func (s *Store) CachedRecords() (sessions, contacts int) {
	return s.sessions.Len(), s.contacts.Len()
}
