package store

import (
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Page is the answer of a read: entries in ascending order and the room's
// bounds at the moment of the read. A read that asked for messages below
// Oldest starts at Oldest: those are gone (retention) and the caller
// answers "too old"; TooOld tells whether that happened.
type Page struct {
	Entries []Entry
	// Oldest and Head are the room's bounds the read saw.
	Oldest, Head uint64
	// TooOld is set when the read asked for messages below Oldest.
	TooOld bool
}

// Meta returns room's metadata. Its Terms slice is shared: do not modify it.
func (s *Store) Meta(room string) (RoomMeta, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.rooms[room]
	if !ok {
		return RoomMeta{}, false
	}
	return st.meta, true
}

// Rooms yields every room the store holds with its metadata, in no
// particular order. It works on a snapshot taken when called, so the loop
// body may call the store.
func (s *Store) Rooms() iter.Seq2[string, RoomMeta] {
	return func(yield func(string, RoomMeta) bool) {
		type kv struct {
			room string
			meta RoomMeta
		}
		s.mu.RLock()
		all := make([]kv, 0, len(s.rooms))
		for r, st := range s.rooms {
			all = append(all, kv{r, st.meta})
		}
		s.mu.RUnlock()
		for _, e := range all {
			if !yield(e.room, e.meta) {
				return
			}
		}
	}
}

// Read returns up to limit of room's messages from seq from upwards
// (clamped to Oldest), committed or not.
func (s *Store) Read(room string, from uint64, limit int) (Page, error) {
	return s.read(room, func(m RoomMeta) (lo, hi uint64, tooOld bool) {
		from = max(from, 1)
		return max(from, m.Oldest), m.Head, from < m.Oldest
	}, limit, false)
}

// ReadBefore returns the up to limit messages just below seq before, in
// ascending order (history paging). TooOld is set when fewer than limit
// came back because retention removed the rest.
func (s *Store) ReadBefore(room string, before uint64, limit int) (Page, error) {
	return s.read(room, func(m RoomMeta) (lo, hi uint64, tooOld bool) {
		if before <= 1 {
			return 1, 0, false
		}
		wantLo := uint64(1)
		if l := uint64(max(limit, 0)); before > l {
			wantLo = before - l
		}
		return m.Oldest, min(before-1, m.Head), wantLo < m.Oldest
	}, limit, true)
}

// Last returns the room's last n messages, ascending: what a caller needs to
// rebuild its (sender, cid) dedupe window.
func (s *Store) Last(room string, n int) (Page, error) {
	return s.read(room, func(m RoomMeta) (lo, hi uint64, tooOld bool) {
		return m.Oldest, m.Head, false
	}, n, true)
}

// read reads [lo, hi] (bounds from span, under the index lock, with an
// iterator taken under the same lock so both are one snapshot): the first
// limit of them, or the last limit when backward.
func (s *Store) read(room string, span func(RoomMeta) (lo, hi uint64, tooOld bool), limit int, backward bool) (Page, error) {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.readClosed {
		return Page{}, ErrClosed
	}
	s.mu.RLock()
	st, ok := s.rooms[room]
	if !ok {
		s.mu.RUnlock()
		return Page{}, fmt.Errorf("%w: %q", ErrNoRoom, room)
	}
	m := st.meta
	lo, hi, tooOld := span(m)
	p := Page{Oldest: m.Oldest, Head: m.Head, TooOld: tooOld}
	if limit <= 0 || lo > hi || lo == 0 {
		s.mu.RUnlock()
		return p, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: msgKey(room, lo), UpperBound: msgKey(room, hi+1)})
	s.mu.RUnlock()
	if err != nil {
		return p, s.readErr(room, err)
	}
	p.Entries = make([]Entry, 0, min(uint64(limit), hi-lo+1))
	valid := it.First()
	if backward {
		valid = it.Last()
	}
	for ; valid && len(p.Entries) < limit; valid = step(it, backward) {
		v, err := it.ValueAndErr()
		if err != nil {
			break
		}
		e, err := decodeEntry(seqOfMsgKey(it.Key()), v)
		if err != nil {
			_ = it.Close()
			return p, fmt.Errorf("room %q: %w", room, err)
		}
		p.Entries = append(p.Entries, e)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return p, s.readErr(room, err)
	}
	if backward {
		slices.Reverse(p.Entries)
	}
	// The index says which messages exist: a missing one is damage, not an
	// empty answer.
	if err := checkContiguous(p.Entries, lo, hi, limit, backward); err != nil {
		return p, fmt.Errorf("%w: room %q: %v", ErrCorrupt, room, err)
	}
	return p, nil
}

func step(it *pebble.Iterator, backward bool) bool {
	if backward {
		return it.Prev()
	}
	return it.Next()
}

// checkContiguous checks that a read of [lo, hi] returned exactly the
// messages it should have.
func checkContiguous(es []Entry, lo, hi uint64, limit int, backward bool) error {
	want := min(uint64(limit), hi-lo+1)
	if uint64(len(es)) != want {
		return fmt.Errorf("read %d messages of %d..%d, want %d", len(es), lo, hi, want)
	}
	first := lo
	if backward {
		first = hi - want + 1
	}
	for i := range es {
		if es[i].Seq != first+uint64(i) {
			return fmt.Errorf("message %d where %d belongs", es[i].Seq, first+uint64(i))
		}
	}
	return nil
}
