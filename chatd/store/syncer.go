package store

import (
	"fmt"
	"sync"
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
// WAL once for all of them. Writes made while a sync runs wait for the next
// one, so under load one fsync covers many writes. The watermark of one
// group (guard.go) is synced while the WAL sync of the next group runs, and
// only then are the first group's done callbacks handed to the notifier: a
// write is reported durable once both the WAL and the watermark cover it,
// at the cost of one fsync per cycle, not two.
func (s *Store) syncLoop() {
	defer s.wg.Done()
	var prev *syncGroup // synced in the WAL, its watermark not yet
	for {
		cur := s.takePending()
		if cur == nil && prev == nil {
			select {
			case <-s.kick:
				continue
			case <-s.quit:
				// Close refuses new writes before quitting: take the last.
				if cur = s.takePending(); cur == nil {
					return
				}
			}
		}
		var wg sync.WaitGroup
		if prev != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.finishGroup(prev)
			}()
		}
		if cur != nil {
			cur.start = time.Now()
			if err := s.failure(); err != nil {
				cur.err = err
			} else {
				cur.err = s.syncWAL()
			}
		}
		wg.Wait()
		if prev != nil {
			s.notify <- notice{writes: prev.writes, err: prev.err}
		}
		prev = cur
	}
}

// syncGroup is the writes one WAL sync covers.
type syncGroup struct {
	writes []pendingWrite
	upto   uint64 // highest write number among them
	start  time.Time
	err    error
}

func (s *Store) takePending() *syncGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return nil
	}
	g := &syncGroup{writes: s.pending, upto: s.writeNum}
	s.pending = nil
	return g
}

// finishGroup records the group's watermark (after its WAL sync) and its
// figures.
func (s *Store) finishGroup(g *syncGroup) {
	if g.err == nil && g.upto > s.synced.last {
		if err := s.synced.advance(g.upto); err != nil {
			s.setFailure(err)
			g.err = s.failure()
		} else {
			s.durableNum.Store(g.upto)
		}
	}
	took := time.Since(g.start)
	bytes := 0
	for _, w := range g.writes {
		bytes += w.bytes
	}
	s.stats.Lock()
	s.stats.lastSync = took
	s.stats.syncs++
	if g.err == nil {
		s.stats.syncedWrites += uint64(len(g.writes))
	}
	s.stats.Unlock()
	s.obs.GroupCommit(took, len(g.writes), bytes, g.err)
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
