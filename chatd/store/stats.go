package store

import "time"

// Stats is a snapshot of the store's figures.
type Stats struct {
	// Rooms is the number of rooms held; Messages the messages they keep.
	Rooms    int
	Messages uint64
	// DiskBytes is the space Pebble's files take (tables, WAL, MANIFEST).
	DiskBytes uint64
	// FreeBytes is the filesystem's free space at the last look.
	FreeBytes int64
	// Full tells that writes are refused for lack of space (at the last
	// look); Failed is the sticky engine failure, if any.
	Full   bool
	Failed error
	// LastSync is the duration of the last group commit; Syncs counts
	// group commits and SyncedWrites the writes they made durable.
	LastSync     time.Duration
	Syncs        uint64
	SyncedWrites uint64
	// Retention describes the last retention pass.
	Retention RetentionStats
}

// Stats returns the store's figures.
func (s *Store) Stats() Stats {
	var st Stats
	s.mu.RLock()
	st.Rooms = len(s.rooms)
	st.Messages = s.messages
	st.FreeBytes = s.space.avail.Load()
	st.Full = s.space.engineFull.Load() || (s.space.reserve >= 0 && st.FreeBytes > 0 && st.FreeBytes < s.space.reserve)
	closed := s.closed
	s.mu.RUnlock()
	st.Failed = s.failure()
	s.stats.Lock()
	st.LastSync = s.stats.lastSync
	st.Syncs = s.stats.syncs
	st.SyncedWrites = s.stats.syncedWrites
	st.Retention = s.stats.retention
	s.stats.Unlock()
	if !closed {
		s.life.RLock()
		if !s.readClosed {
			st.DiskBytes = s.db.Metrics().DiskSpaceUsage()
		}
		s.life.RUnlock()
	}
	return st
}
