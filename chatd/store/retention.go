package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Retention.
//
// A pass runs every RetentionInterval. Per room it moves Oldest forward:
//
//   - by count: to Head-MaxMessages+1;
//   - by age: past the messages, from the oldest on, whose timestamp is
//     older than now-MaxAge, stopping at the first one that is not.
//
// Timestamps are the owner's clock at sequencing and ownership moves
// between nodes whose clocks differ a little, so a room's timestamps are
// only nearly ascending. Stopping at the first young message means a
// message is never removed before it is MaxAge old; an older message
// behind a younger one (a clock step back) stays until the younger one
// expires too: the clock skew bounds that delay. The removed range goes in
// one batch with the new Oldest (a range deletion, one tombstone per room
// and pass), and readers never see messages below Oldest.
//
// The space comes back when compactions drop the deleted range. A pass
// that removed many messages (at least compactAfter, and a tenth of those
// stored) asks Pebble to compact the key range it deleted in.

const (
	// retentionScan bounds the messages one pass reads per room to find
	// the age cut; a longer expired run is finished by the next passes.
	retentionScan = 10_000
	// compactAfter is the removal count from which a pass compacts.
	compactAfter = 10_000
)

// RetentionStats describes the last retention pass.
type RetentionStats struct {
	At        time.Time
	Took      time.Duration
	Rooms     int    // rooms trimmed
	Removed   uint64 // messages removed
	Compacted bool
	Err       error
}

type retentionCache struct {
	gen    uint64
	oldest uint64
	ts     int64 // timestamp of the message at oldest
}

func (s *Store) retentionLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.RetentionInterval)
	defer t.Stop()
	cache := make(map[string]retentionCache)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.retainOnce(ctx, cache)
		}
	}
}

// RunRetention runs one retention pass now and waits for it (for tests
// and operators; the background pass runs on its own).
func (s *Store) RunRetention(ctx context.Context) RetentionStats {
	return s.retainOnce(ctx, make(map[string]retentionCache))
}

func (s *Store) retainOnce(ctx context.Context, cache map[string]retentionCache) RetentionStats {
	start := time.Now()
	rs := RetentionStats{At: start}
	if s.opts.MaxAge <= 0 && s.opts.MaxMessages == 0 {
		return rs
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if s.readClosed {
		rs.Err = ErrClosed
		return rs
	}
	cutoff := s.opts.Now().Add(-s.opts.MaxAge).UnixMilli()
	type cand struct {
		room string
		meta RoomMeta
		gen  uint64
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return rs
	}
	all := make([]cand, 0, len(s.rooms))
	for r, st := range s.rooms {
		if st.meta.Count() > 0 {
			all = append(all, cand{r, st.meta, st.gen})
		}
	}
	s.mu.RUnlock()
	if len(cache) > len(all) {
		live := make(map[string]bool, len(all))
		for _, c := range all {
			live[c.room] = true
		}
		for r := range cache {
			if !live[r] {
				delete(cache, r)
			}
		}
	}

	var spanLo, spanHi []byte
	for _, c := range all {
		if ctx.Err() != nil {
			break
		}
		m := c.meta
		cut := m.Oldest
		if s.opts.MaxMessages > 0 && m.Count() > s.opts.MaxMessages {
			cut = m.Head - s.opts.MaxMessages + 1
		}
		if s.opts.MaxAge > 0 {
			cc, ok := cache[c.room]
			if !ok || cc.gen != c.gen || cc.oldest != cut || cc.ts < cutoff {
				var ts int64
				var err error
				cut, ts, err = s.ageCut(c.room, cut, m.Head, cutoff)
				if err != nil {
					rs.Err = errors.Join(rs.Err, err)
					continue
				}
				cache[c.room] = retentionCache{gen: c.gen, oldest: cut, ts: ts}
			}
		}
		if cut <= m.Oldest {
			continue
		}
		n, err := s.trim(c.room, c.gen, cut)
		if err != nil {
			rs.Err = errors.Join(rs.Err, err)
			if errors.Is(err, ErrFull) || errors.Is(err, ErrFailed) || errors.Is(err, ErrClosed) {
				break
			}
			continue
		}
		if n > 0 {
			rs.Rooms++
			rs.Removed += n
			lo, hi := msgKey(c.room, 0), msgRoomUpper(c.room)
			if spanLo == nil || bytes.Compare(lo, spanLo) < 0 {
				spanLo = lo
			}
			if spanHi == nil || bytes.Compare(hi, spanHi) > 0 {
				spanHi = hi
			}
		}
	}
	s.mu.RLock()
	stored := s.messages
	s.mu.RUnlock()
	if rs.Removed >= compactAfter && rs.Removed >= stored/10 && ctx.Err() == nil {
		if err := s.db.Compact(ctx, spanLo, spanHi, false); err != nil && ctx.Err() == nil {
			rs.Err = errors.Join(rs.Err, fmt.Errorf("store: compact after retention: %w", err))
		} else {
			rs.Compacted = ctx.Err() == nil
		}
	}
	rs.Took = time.Since(start)
	s.obs.Retention(rs.Took, rs.Rooms, rs.Removed, rs.Err)
	if rs.Err != nil {
		s.log.Warn("retention pass", "err", rs.Err, "removed", rs.Removed)
	} else if rs.Removed > 0 {
		s.log.Debug("retention pass", "rooms", rs.Rooms, "removed", rs.Removed, "took", rs.Took)
	}
	s.stats.Lock()
	s.stats.retention = rs
	s.stats.Unlock()
	return rs
}

// ageCut scans room from seq from while messages are older than cutoff
// (unix ms), at most retentionScan of them, and returns the first seq to
// keep and its timestamp (or head+1 and 0 when all are old). The caller
// holds s.life.
func (s *Store) ageCut(room string, from, head uint64, cutoff int64) (uint64, int64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: msgKey(room, from), UpperBound: msgKey(room, head+1)})
	if err != nil {
		return from, 0, s.readErr(room, err)
	}
	defer it.Close()
	cut := from
	n := 0
	for valid := it.First(); valid && n < retentionScan; valid = it.Next() {
		seq := seqOfMsgKey(it.Key())
		v, err := it.ValueAndErr()
		if err != nil {
			return from, 0, s.readErr(room, err)
		}
		e, err := decodeEntry(seq, v)
		if err != nil {
			return from, 0, fmt.Errorf("room %q: %w", room, err)
		}
		if e.TS >= cutoff {
			return seq, e.TS, nil
		}
		cut = seq + 1
		n++
	}
	return cut, 0, s.readErr(room, it.Error())
}

// trim moves room's Oldest to cut (if the room was not reshaped since gen
// was read) and removes the messages below it. It returns how many went.
func (s *Store) trim(room string, gen, cut uint64) (uint64, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.writableLocked(room, 0, true)
	if err != nil || st == nil || st.gen != gen {
		return 0, err
	}
	m := st.meta
	cut = min(cut, m.Head+1)
	if cut <= m.Oldest {
		return 0, nil
	}
	next := m
	next.Oldest = cut
	b := s.db.NewBatch()
	_ = b.DeleteRange(msgKey(room, m.Oldest), msgKey(room, cut), nil)
	if err := s.commitLocked(room, st, &next, b, 64, false, nil); err != nil {
		return 0, err
	}
	return cut - m.Oldest, nil
}
