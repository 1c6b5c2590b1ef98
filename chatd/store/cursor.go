package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Cursor is how far the event stream (chatd/eventstream) has delivered a
// room's log to the application's backend: every entry of Epoch up to Seq.
// It is kept beside the room's copy, on the owner and on each replica, so
// that a new owner goes on from about where the old one stopped.
//
// A cursor is not covered by the store's durability guard: it is written
// without waiting for a sync (the next group commit carries it), and one
// lost in a crash only makes the stream send a few entries again, which
// its at-least-once contract allows.
type Cursor struct {
	Epoch string
	Seq   uint64
}

// cursorFormatV1 is the format byte of a stored cursor.
const cursorFormatV1 = 1

func cursorKey(room string) []byte {
	k := make([]byte, 0, 1+len(room))
	k = append(k, kindCursor)
	return append(k, room...)
}

func encodeCursor(c Cursor) []byte {
	b := []byte{cursorFormatV1}
	b = binary.AppendUvarint(b, uint64(len(c.Epoch)))
	b = append(b, c.Epoch...)
	return binary.AppendUvarint(b, c.Seq)
}

func decodeCursor(v []byte) (Cursor, error) {
	if len(v) == 0 || v[0] != cursorFormatV1 {
		return Cursor{}, fmt.Errorf("cursor format %v (this build reads %d)", firstByte(v), cursorFormatV1)
	}
	r := reader{b: v[1:]}
	c := Cursor{Epoch: r.str(), Seq: r.uvarint()}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return c, r.err
}

// loadCursors reads every stored cursor into the index.
func (s *Store) loadCursors() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: cursorLower, UpperBound: cursorUpper})
	if err != nil {
		return fmt.Errorf("store: read cursors: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		room := string(it.Key()[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return s.readErr(room, err)
		}
		c, err := decodeCursor(v)
		if err != nil {
			// A cursor only saves duplicates: a damaged one is dropped
			// (the stream starts that room over) rather than refusing
			// the store.
			s.log.Warn("dropping an unreadable event stream cursor", "room", room, "err", err)
			continue
		}
		s.cursors[room] = c
	}
	return s.readErr("", errors.Join(it.Error(), it.Close()))
}

// Cursor returns room's event stream cursor, if one is stored.
func (s *Store) Cursor(room string) (Cursor, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.cursors[room]
	return c, ok
}

// SetCursor stores room's event stream cursor. It is readable at once and
// durable with the next group commit; it never waits for one. A cursor of
// the same epoch never goes backwards (a lower Seq is ignored).
func (s *Store) SetCursor(room string, c Cursor) error {
	if err := validRoom(room); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.failure(); err != nil {
		return err
	}
	s.mu.RLock()
	old, ok := s.cursors[room]
	s.mu.RUnlock()
	if ok && old.Epoch == c.Epoch && old.Seq >= c.Seq {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(cursorKey(room), encodeCursor(c), nil)
	if err := s.commitBatch(b); err != nil {
		return fmt.Errorf("room %q: store the event stream cursor: %w", room, err)
	}
	s.mu.Lock()
	s.cursors[room] = c
	s.mu.Unlock()
	return nil
}
