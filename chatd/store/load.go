package store

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// load builds the metadata index and runs the guards described in
// guard.go. On a new store it writes the format key and the first write
// mark, synced.
func (s *Store) load() error {
	format, err := s.get(keyFormat)
	if err != nil {
		return err
	}
	mark, err := s.get(keyWriteMark)
	if err != nil {
		return err
	}
	if format == nil && mark == nil && s.synced.last == 0 {
		// A new store (or one that never made anything durable).
		b := s.db.NewBatch()
		_ = b.Set(keyFormat, []byte{formatVersion}, nil)
		_ = b.Set(keyWriteMark, encodeWriteMark(nil, 0, 0), nil)
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("store: initialise %s: %w", s.dir, err)
		}
		return b.Close()
	}
	if format == nil {
		return fmt.Errorf("%w: %s: the engine holds no format key, yet writes through #%d were reported durable: its MANIFEST or tables lost data", ErrCorrupt, s.dir, s.synced.last)
	}
	if len(format) != 1 || format[0] != formatVersion {
		return fmt.Errorf("%w: %s: engine format key %v, want [%d]", ErrFormat, s.dir, format, formatVersion)
	}
	if mark == nil {
		return fmt.Errorf("%w: %s: the write mark is missing", ErrCorrupt, s.dir)
	}
	num, digest, err := decodeWriteMark(mark)
	if err != nil {
		return err
	}
	if num < s.synced.last {
		return fmt.Errorf("%w: %s recovered writes through #%d, but writes through #%d were reported durable: the WAL or a table lost synced data", ErrCorrupt, s.dir, num, s.synced.last)
	}
	s.writeNum = num
	s.durableNum.Store(s.synced.last)

	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: metaLower, UpperBound: metaUpper})
	if err != nil {
		return fmt.Errorf("store: read metadata: %w", err)
	}
	var sum uint64
	for it.First(); it.Valid(); it.Next() {
		room := string(it.Key()[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return s.readErr(room, err)
		}
		m, err := decodeMeta(v)
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("%w: metadata of room %q: %v", ErrCorrupt, room, err)
		}
		st := &roomState{meta: m, hash: metaHash(room, v)}
		sum += st.hash
		s.rooms[room] = st
		s.messages += m.Count()
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return s.readErr("", err)
	}
	if sum != digest {
		return fmt.Errorf("%w: %s: the metadata of its %d rooms does not match the recorded digest: a MANIFEST or table lost updates", ErrCorrupt, s.dir, len(s.rooms))
	}
	s.digest = sum
	if err := s.loadCursors(); err != nil {
		return err
	}
	return s.checkRoomBounds()
}

func (s *Store) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, s.readErr("", err)
	}
	v = bytes.Clone(v)
	return v, closer.Close()
}

// checkRoomBounds checks that every room holds exactly the messages its
// metadata says, oldest to head, with nothing missing in between and
// nothing outside: one pass over the message keys, in key order. The
// metadata and the messages of a write share one batch, so they agree
// unless files were lost or damaged — a MANIFEST that lost a flush's edit,
// for one, opens with a hole in the middle of a room, which checking only
// each room's first and last message does not see. It costs a read of the
// tables at start-up (about a second per million messages here).
func (s *Store) checkRoomBounds() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: msgLower, UpperBound: msgUpper})
	if err != nil {
		return fmt.Errorf("store: check rooms: %w", err)
	}
	defer it.Close()
	var (
		room     string
		next     uint64 // the seq the room's next key must have
		counted  = make(map[string]bool, len(s.rooms))
		finished = func() error {
			if room == "" {
				return nil
			}
			m := s.rooms[room].meta
			if next != m.Head+1 {
				return fmt.Errorf("%w: room %q: messages stop at %d, metadata says head %d", ErrCorrupt, room, next-1, m.Head)
			}
			return nil
		}
	)
	for valid := it.First(); valid; valid = it.Next() {
		r, seq, ok := parseMsgKey(it.Key())
		if !ok {
			return fmt.Errorf("%w: a message key that does not parse: %x", ErrCorrupt, it.Key())
		}
		if r != room {
			if err := finished(); err != nil {
				return err
			}
			st, known := s.rooms[r]
			if !known {
				return fmt.Errorf("%w: room %q: messages stored without metadata", ErrCorrupt, r)
			}
			if st.meta.Count() == 0 {
				return fmt.Errorf("%w: room %q: message %d stored, metadata says none (oldest %d head %d)", ErrCorrupt, r, seq, st.meta.Oldest, st.meta.Head)
			}
			room, next = r, st.meta.Oldest
			counted[r] = true
		}
		if seq != next {
			m := s.rooms[room].meta
			return fmt.Errorf("%w: room %q: message %d where %d belongs (metadata: oldest %d head %d)", ErrCorrupt, room, seq, next, m.Oldest, m.Head)
		}
		next++
	}
	if err := it.Error(); err != nil {
		return s.readErr(room, err)
	}
	if err := finished(); err != nil {
		return err
	}
	for r, st := range s.rooms {
		if st.meta.Count() > 0 && !counted[r] {
			return fmt.Errorf("%w: room %q: no messages stored, metadata says %d..%d", ErrCorrupt, r, st.meta.Oldest, st.meta.Head)
		}
	}
	return nil
}

// readErr wraps an error of Pebble's read path: corruption becomes
// ErrCorrupt.
func (s *Store) readErr(room string, err error) error {
	if err == nil {
		return nil
	}
	where := s.dir
	if room != "" {
		where = fmt.Sprintf("room %q", room)
	}
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, where, err)
	}
	return fmt.Errorf("store: read %s: %w", where, err)
}
