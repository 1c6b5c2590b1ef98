package store

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// notice hands the done callbacks of one group commit to the notifier.
type notice struct {
	writes []pendingWrite
	err    error
}

// syncMarker is the WAL record the syncer commits with Sync: syncing it
// syncs every record written before it (the WAL is one sequential file, and
// a WAL rotation closes and syncs the previous file before the next is
// used).
var syncMarker = []byte("ringchat-sync")

// syncLoop is the group commit: whenever writes are waiting, it syncs the
// WAL once for all of them, records the watermark, and hands their done
// callbacks to the notifier. Writes made while a sync runs wait for the
// next one, so under load one fsync covers many writes.
func (s *Store) syncLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.kick:
			s.syncOnce()
		case <-s.quit:
			s.syncOnce() // Close refuses new writes before quitting.
			return
		}
	}
}

func (s *Store) syncOnce() {
	s.mu.Lock()
	writes := s.pending
	s.pending = nil
	upto := s.writeNum
	s.mu.Unlock()
	if len(writes) == 0 {
		return
	}
	bytes := 0
	for _, w := range writes {
		bytes += w.bytes
	}
	start := time.Now()
	err := s.failure()
	if err == nil {
		err = s.syncWAL()
	}
	if err == nil && upto > s.synced.last {
		if err = s.synced.advance(upto); err != nil {
			s.setFailure(err)
			err = s.failure()
		}
	}
	took := time.Since(start)
	s.stats.Lock()
	s.stats.lastSync = took
	s.stats.syncs++
	if err == nil {
		s.stats.syncedWrites += uint64(len(writes))
	}
	s.stats.Unlock()
	s.obs.GroupCommit(took, len(writes), bytes, err)
	s.notify <- notice{writes: writes, err: err}
}

// syncWAL forces the WAL to disk. It waits for the sync itself
// (ApplyNoSyncWait + SyncWait), which returns a sync error instead of
// handing it to Fatalf as a synchronous Apply would.
func (s *Store) syncWAL() (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.setFailure(fmt.Errorf("pebble sync panicked: %v", r))
			err = s.failure()
		}
	}()
	b := s.db.NewBatch()
	_ = b.LogData(syncMarker, nil)
	if err := s.db.ApplyNoSyncWait(b, pebble.Sync); err != nil {
		s.setFailure(fmt.Errorf("WAL sync: %w", err))
		return s.failure()
	}
	if err := b.SyncWait(); err != nil {
		s.setFailure(fmt.Errorf("WAL sync: %w", err))
		return s.failure()
	}
	_ = b.Close()
	return s.failure()
}

// notifyLoop runs done callbacks, in write order, off the syncer's
// goroutine so that a slow callback does not delay the next fsync.
func (s *Store) notifyLoop() {
	defer s.nwg.Done()
	for n := range s.notify {
		for _, w := range n.writes {
			if w.done != nil {
				w.done(n.err)
			}
		}
	}
}
