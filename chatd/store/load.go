package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

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

// checkRoomBounds checks that every room's first and last kept messages
// are there and nothing lies outside them: two seeks per room.
func (s *Store) checkRoomBounds() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: msgLower, UpperBound: msgUpper})
	if err != nil {
		return fmt.Errorf("store: check rooms: %w", err)
	}
	defer it.Close()
	// In key order, so the seeks walk the tables forward (ten times faster
	// than map order on 100,000 rooms).
	names := make([]string, 0, len(s.rooms))
	for room := range s.rooms {
		names = append(names, room)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
	})
	for _, room := range names {
		m := s.rooms[room].meta
		lo, hi := msgKey(room, 0), msgRoomUpper(room)
		if it.SeekGE(lo) && bytes.Compare(it.Key(), hi) < 0 {
			if got := seqOfMsgKey(it.Key()); m.Count() == 0 || got != m.Oldest {
				return fmt.Errorf("%w: room %q: first stored message is %d, metadata says oldest %d head %d", ErrCorrupt, room, got, m.Oldest, m.Head)
			}
		} else if m.Count() > 0 {
			if err := it.Error(); err != nil {
				return s.readErr(room, err)
			}
			return fmt.Errorf("%w: room %q: no messages stored, metadata says %d..%d", ErrCorrupt, room, m.Oldest, m.Head)
		}
		if m.Count() > 0 {
			if !it.SeekLT(hi) || seqOfMsgKey(it.Key()) != m.Head {
				if err := it.Error(); err != nil {
					return s.readErr(room, err)
				}
				return fmt.Errorf("%w: room %q: last stored message is not head %d", ErrCorrupt, room, m.Head)
			}
		}
	}
	return s.readErr("", it.Error())
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
