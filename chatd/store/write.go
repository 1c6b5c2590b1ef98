package store

import (
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Writes. Every write method follows one contract:
//
//   - It validates and applies the write at once, under the store's lock:
//     when it returns nil, the next read sees the write.
//   - It then calls done exactly once, later, from the store's notifier
//     goroutine (never inside the write call), in the order the writes were
//     made: done(nil) when the write is durable (the WAL and the watermark
//     are synced), done(err) when the store failed before it was. After a
//     done(err) the write may or may not survive a restart.
//   - When it returns an error, nothing was written and done is never
//     called. done may be nil.
//
// Many writes share one fsync (group commit): while one sync runs, new
// writes queue for the next.

// Append stores entries at the end of room's log. The entries must
// continue Head without gaps (entries[i].Seq == Head+1+i) and their terms
// must not go backwards (each ≥ the term of the entry before it). A term
// seen for the first time is recorded in Terms; Term becomes the highest
// entry term if that is higher.
func (s *Store) Append(room string, entries []Entry, done func(error)) error {
	if len(entries) == 0 {
		return fmt.Errorf("%w: room %q: no entries to append", ErrInvalid, room)
	}
	payload := 0
	for i := range entries {
		payload += entrySize(&entries[i])
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.writableLocked(room, payload, false)
	if err != nil {
		return err
	}
	m := st.meta
	last := m.lastEntryTerm()
	terms := m.Terms
	copied := false
	for i := range entries {
		e := &entries[i]
		if want := m.Head + 1 + uint64(i); e.Seq != want {
			return fmt.Errorf("%w: room %q: entry %d has seq %d, want %d (head %d)", ErrInvalid, room, i, e.Seq, want, m.Head)
		}
		if e.Term < last {
			return fmt.Errorf("%w: room %q: seq %d has term %d after term %d", ErrInvalid, room, e.Seq, e.Term, last)
		}
		if e.Term > last || len(terms) == 0 {
			if !copied {
				terms = slices.Clone(terms)
				copied = true
			}
			terms = append(terms, TermStart{Term: e.Term, Seq: e.Seq})
			last = e.Term
		}
	}
	if len(terms) > MaxTermHistory {
		terms = slices.Clone(terms[len(terms)-MaxTermHistory:])
	}
	next := m
	next.Terms = terms
	next.Head = entries[len(entries)-1].Seq
	next.Term = max(m.Term, last)

	b := s.db.NewBatch()
	prefix := msgPrefix(room)
	key := make([]byte, len(prefix)+8)
	copy(key, prefix)
	val := make([]byte, 0, 256)
	for i := range entries {
		putSeq(key[len(prefix):], entries[i].Seq)
		val = encodeEntry(val[:0], &entries[i])
		_ = b.Set(key, val, nil)
	}
	for i := range entries {
		if t := entries[i].Target; t != 0 {
			if err := s.redactLocked(b, room, m, entries, t); err != nil {
				b.Close()
				return err
			}
		}
	}
	return s.commitLocked(room, st, &next, b, payload, false, done)
}

// redactLocked adds to b the rewrite of room's message at seq target as
// deleted (its text gone), for a deletion entry being appended. The
// message is in entries (appended in the same batch) or stored below m's
// head; one that retention already removed, or a deletion, is left as it
// is. Callers hold wmu.
func (s *Store) redactLocked(b *pebble.Batch, room string, m RoomMeta, entries []Entry, target uint64) error {
	var e Entry
	switch {
	case target > m.Head:
		i := target - (m.Head + 1)
		if i >= uint64(len(entries)) {
			return fmt.Errorf("%w: room %q: a deletion targets seq %d, after the entries appended", ErrInvalid, room, target)
		}
		e = entries[i]
	case target < m.Oldest:
		return nil
	default:
		v, err := s.get(msgKey(room, target))
		if err != nil {
			return fmt.Errorf("room %q: read seq %d to delete it: %w", room, target, err)
		}
		if v == nil {
			return fmt.Errorf("%w: room %q: seq %d is not stored though the metadata keeps %d-%d", ErrCorrupt, room, target, m.Oldest, m.Head)
		}
		if e, err = decodeEntry(target, v); err != nil {
			return err
		}
	}
	if e.Target != 0 || e.Deleted {
		return nil
	}
	e.Deleted, e.Text = true, ""
	_ = b.Set(msgKey(room, target), encodeEntry(nil, &e), nil)
	return nil
}

// Promise records that this node promised term for room: Promised becomes
// term. A term below the current promise fails with ErrStaleTerm; the same
// term is a no-op (done still waits for durability). A room the store does
// not hold is created empty (no epoch, Head 0) to keep the promise.
func (s *Store) Promise(room string, term uint64, done func(error)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.writableLocked(room, 0, true)
	if err != nil {
		return err
	}
	var next RoomMeta
	if st != nil {
		next = st.meta
	} else {
		next = RoomMeta{Oldest: 1}
	}
	if term < next.Promised {
		return fmt.Errorf("%w: room %q: promise of term %d, already promised %d", ErrStaleTerm, room, term, next.Promised)
	}
	if st != nil && term == next.Promised {
		return s.noopLocked(done)
	}
	next.Promised = term
	return s.commitLocked(room, st, &next, s.db.NewBatch(), 64, false, done)
}

// SetTerm records that room's copy now follows the owner of term (Term =
// term) without appending. A term below the current Term fails with
// ErrStaleTerm; the same term is a no-op.
func (s *Store) SetTerm(room string, term uint64, done func(error)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.writableLocked(room, 0, false)
	if err != nil {
		return err
	}
	if term < st.meta.Term {
		return fmt.Errorf("%w: room %q: term %d, already %d", ErrStaleTerm, room, term, st.meta.Term)
	}
	if term == st.meta.Term {
		return s.noopLocked(done)
	}
	next := st.meta
	next.Term = term
	return s.commitLocked(room, st, &next, s.db.NewBatch(), 64, false, done)
}

// Reset drops every message of room and starts it at m: the room is
// created if new, or replaced (installing a copy from another node; then
// Append the source's messages from m.Head+1). m must describe an empty
// log: Oldest is Head+1 (0 is taken as Head+1). Terms may carry the
// source's term starts up to Head+1. Promised never goes backwards: the
// higher of m.Promised and the current promise is kept.
func (s *Store) Reset(room string, m RoomMeta, done func(error)) error {
	if m.Oldest == 0 {
		m.Oldest = m.Head + 1
	}
	if m.Oldest != m.Head+1 {
		return fmt.Errorf("%w: room %q: reset to oldest %d head %d; a reset log is empty (oldest = head+1)", ErrInvalid, room, m.Oldest, m.Head)
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("room %q: %w", room, err)
	}
	m = m.clone()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.writableLocked(room, 0, true)
	if err != nil {
		return err
	}
	if st != nil {
		m.Promised = max(m.Promised, st.meta.Promised)
	}
	b := s.db.NewBatch()
	_ = b.DeleteRange(msgKey(room, 0), msgRoomUpper(room), nil)
	return s.commitLocked(room, st, &m, b, 64, true, done)
}

// TruncateAfter drops room's messages after seq (a copy that diverged from
// its owner's): Head becomes seq and term starts after it are forgotten;
// Term is kept. seq ≥ Head is a no-op; seq below Oldest-1 fails with
// ErrInvalid (those messages are gone already: Reset the room instead).
func (s *Store) TruncateAfter(room string, seq uint64, done func(error)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.writableLocked(room, 0, false)
	if err != nil {
		return err
	}
	m := st.meta
	if seq >= m.Head {
		return s.noopLocked(done)
	}
	if seq+1 < m.Oldest {
		return fmt.Errorf("%w: room %q: truncate after %d, below oldest %d", ErrInvalid, room, seq, m.Oldest)
	}
	next := m
	next.Head = seq
	i := len(m.Terms)
	for i > 0 && m.Terms[i-1].Seq > seq {
		i--
	}
	next.Terms = slices.Clone(m.Terms[:i])
	b := s.db.NewBatch()
	_ = b.DeleteRange(msgKey(room, seq+1), msgRoomUpper(room), nil)
	return s.commitLocked(room, st, &next, b, 64, true, done)
}

// Delete removes room: its messages and its metadata, promise included.
// Deleting a room the store does not hold is a no-op.
func (s *Store) Delete(room string, done func(error)) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	st, err := s.writableLocked(room, 0, true)
	if err != nil {
		return err
	}
	if st == nil {
		return s.noopLocked(done)
	}
	b := s.db.NewBatch()
	_ = b.DeleteRange(msgKey(room, 0), msgRoomUpper(room), nil)
	_ = b.Delete(cursorKey(room), nil)
	if err := s.commitLocked(room, st, nil, b, 64, true, done); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.cursors, room)
	s.mu.Unlock()
	return nil
}

// writableLocked checks the room name, that the store takes writes, and,
// for a write that adds payload bytes (Append), the free space. Metadata
// writes and deletions pass a full disk: they are tiny (the reserve covers
// them), fencing needs them, and deleting is how space comes back. It returns the room's state (nil for a room it does not
// hold, which is an error unless mayCreate).
func (s *Store) writableLocked(room string, payload int, mayCreate bool) (*roomState, error) {
	if err := validRoom(room); err != nil {
		return nil, err
	}
	if err := s.refuseLocked(room, payload); err != nil {
		s.obs.WriteRefused(err)
		return nil, err
	}
	st := s.rooms[room]
	if st == nil && !mayCreate {
		return nil, fmt.Errorf("%w: %q", ErrNoRoom, room)
	}
	return st, nil
}

func (s *Store) refuseLocked(room string, payload int) error {
	if s.closed {
		return ErrClosed
	}
	if err := s.failure(); err != nil {
		return fmt.Errorf("room %q: %w", room, err)
	}
	return s.space.admit(room, payload, &s.ballast, s.log)
}

// Sync calls done once every write made before it is durable (or the store
// failed). It writes nothing and passes a full disk.
func (s *Store) Sync(done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.failure(); err != nil {
		return err
	}
	s.pending = append(s.pending, pendingWrite{num: s.writeNum, done: done})
	s.kickSyncer()
	return nil
}

// noopLocked queues done behind every write made so far: it runs once they
// are durable. The caller holds s.wmu.
func (s *Store) noopLocked(done func(error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, pendingWrite{num: s.writeNum, done: done})
	s.kickSyncer()
	return nil
}

// commitLocked (the caller holds s.wmu) completes b with the room's new metadata (nil: delete it)
// and the write mark, commits it without waiting for the WAL sync, updates
// the index and queues done for the next group commit. reshape marks a
// write that removes messages other than by retention (Reset,
// TruncateAfter, Delete): a retention pass that looked at the room before
// then leaves it alone.
func (s *Store) commitLocked(room string, st *roomState, next *RoomMeta, b *pebble.Batch, payload int, reshape bool, done func(error)) error {
	defer b.Close()
	digest := s.digest
	var removed uint64
	if st != nil {
		digest -= st.hash
		removed = st.meta.Count()
	}
	var ns *roomState
	if next != nil {
		enc := encodeMeta(make([]byte, 0, 64), next)
		ns = &roomState{meta: *next, hash: metaHash(room, enc)}
		if st != nil {
			ns.gen = st.gen
		}
		if reshape {
			s.gen++
			ns.gen = s.gen
		}
		digest += ns.hash
		_ = b.Set(metaKey(room), enc, nil)
	} else {
		_ = b.Delete(metaKey(room), nil)
	}
	num := s.writeNum + 1
	_ = b.Set(keyWriteMark, encodeWriteMark(make([]byte, 0, 24), num, digest), nil)
	if err := s.commitBatch(b); err != nil {
		err = fmt.Errorf("room %q: %w", room, err)
		s.obs.WriteRefused(err)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeNum, s.digest = num, digest
	if ns != nil {
		s.rooms[room] = ns
		s.messages += ns.meta.Count()
	} else {
		delete(s.rooms, room)
	}
	s.messages -= removed
	s.pending = append(s.pending, pendingWrite{num: num, bytes: payload, done: done})
	s.kickSyncer()
	return nil
}

// commitBatch commits b to the memtable and the WAL buffer without a sync.
// Pebble panics on some WAL errors and calls Fatalf on others; both become
// a sticky ErrFailed.
func (s *Store) commitBatch(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("storage engine panicked in a commit", "panic", fmt.Sprint(r))
			s.setFailure(fmt.Errorf("pebble commit panicked: %v", r))
			err = s.failure()
		}
	}()
	if err := b.Commit(pebble.NoSync); err != nil {
		s.setFailure(fmt.Errorf("pebble commit: %w", err))
		return s.failure()
	}
	return s.failure()
}

func (s *Store) kickSyncer() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func putSeq(b []byte, seq uint64) {
	_ = b[7]
	b[0] = byte(seq >> 56)
	b[1] = byte(seq >> 48)
	b[2] = byte(seq >> 40)
	b[3] = byte(seq >> 32)
	b[4] = byte(seq >> 24)
	b[5] = byte(seq >> 16)
	b[6] = byte(seq >> 8)
	b[7] = byte(seq)
}
