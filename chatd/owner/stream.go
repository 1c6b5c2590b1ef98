package owner

import (
	"errors"
	"maps"
	"slices"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// The event stream's bookkeeping (Config.Stream; the delivery itself is
// chatd/eventstream's). A room's owner keeps, with the room's log, a
// cursor: the backend has every committed entry up to it. The cursor is
// stored with the copy, pushed to the replicas after every advance, and
// carried in the log's metadata when a copy is made from another, so a
// new owner — after a handoff, a crash or a restart of every node — goes
// on from about where the old one stopped: at least once, never a gap.

// CursorSender is what the owner needs of Outbound to keep the replicas'
// cursors up to date. It is optional: an Outbound without it (tests)
// leaves replicas behind, which only means entries sent again after a
// move.
type CursorSender interface {
	// StreamCursor tells node, a replica of room, that the backend has
	// every entry of epoch up to seq. It must not block.
	StreamCursor(node, room, epoch string, seq uint64)
}

// MaxStreamClaims bounds the rooms one ClaimUnstreamed call starts claims
// of, so a node that comes back owning thousands of rooms with entries to
// deliver claims them in waves rather than all at once.
const MaxStreamClaims = 64

// markUnstreamed records that room has committed entries the stream has
// not delivered, and wakes the stream. Callers may hold the room's lock.
func (s *Service) markUnstreamed(room string) {
	s.smu.Lock()
	_, had := s.unstreamed[room]
	s.unstreamed[room] = struct{}{}
	s.smu.Unlock()
	if !had && s.cfg.OnUnstreamed != nil {
		s.cfg.OnUnstreamed()
	}
}

func (s *Service) unmarkUnstreamed(room string) {
	s.smu.Lock()
	delete(s.unstreamed, room)
	s.smu.Unlock()
}

// noteCommitted marks the room for the stream when it has committed
// entries past its cursor. Callers hold r.mu.
func (r *room) noteCommitted() {
	if r.svc.cfg.Stream && r.state == stateReady && r.committed > r.log.Streamed() {
		r.svc.markUnstreamed(r.name)
	}
}

// Unstreamed returns the committed entries the backend does not have yet,
// of the rooms this node owns and serves: at most maxEntries in all and
// perRoom of one room, in seq order per room. A room stays listed until
// StreamedUpTo reaches its committed head.
func (s *Service) Unstreamed(maxEntries, perRoom int) []feed.StreamBatch {
	s.smu.Lock()
	names := slices.Collect(maps.Keys(s.unstreamed))
	s.smu.Unlock()
	var out []feed.StreamBatch
	for _, name := range names {
		if maxEntries <= 0 {
			break
		}
		r := s.lockHeld(name)
		if r == nil {
			// Moved away or freed: its new owner (or ClaimUnstreamed,
			// should it come back here) takes it on.
			s.unmarkUnstreamed(name)
			continue
		}
		b, ok := r.unstreamedLocked(min(maxEntries, perRoom))
		r.mu.Unlock()
		if ok {
			out = append(out, b)
			maxEntries -= len(b.Entries)
		}
	}
	return out
}

// unstreamedLocked reads the room's committed entries after its cursor.
// Callers hold r.mu.
func (r *room) unstreamedLocked(limit int) (feed.StreamBatch, bool) {
	if r.state != stateReady {
		return feed.StreamBatch{}, false // not serving yet: later
	}
	from, to := r.log.Streamed()+1, r.committed
	if from > to {
		r.svc.unmarkUnstreamed(r.name)
		return feed.StreamBatch{}, false
	}
	b := feed.StreamBatch{Room: r.name, Epoch: r.log.Epoch()}
	if oldest := r.log.Oldest(); from < oldest {
		// Retention removed them before the backend had them (it was
		// unreachable for longer than --history-retention): nothing can
		// bring them back; say how many.
		b.Skipped = min(oldest, to+1) - from
		from = oldest
	}
	if from <= to { // retention may have removed every entry up to the head
		entries, err := r.log.Read(from, int(min(to-from+1, uint64(limit))))
		if err != nil && !errors.Is(err, roomlog.ErrTooOld) {
			r.svc.log.Warn("event stream: cannot read a room's entries; will retry", "room", r.name, "from", from, "err", err)
			return feed.StreamBatch{}, false
		}
		b.Entries = make([]protocol.Message, len(entries))
		for i, e := range entries {
			b.Entries[i] = e.Msg
		}
	}
	if len(b.Entries) == 0 && b.Skipped == 0 {
		return feed.StreamBatch{}, false
	}
	b.Through = from - 1
	if n := len(b.Entries); n > 0 {
		b.Through = b.Entries[n-1].Seq
	}
	return b, true
}

// StreamedUpTo records that the backend has every entry of room's epoch up
// to seq: the cursor moves there, is stored with the copy, and is pushed
// to the replicas. A room this node no longer owns, or of another epoch,
// is left alone (its new owner goes on from its own cursor).
func (s *Service) StreamedUpTo(roomName, epoch string, seq uint64) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.log.Epoch() != epoch {
		return
	}
	seq = min(seq, r.committed)
	if err := r.log.SetStreamed(seq); err != nil {
		s.log.Warn("event stream: cannot store a room's cursor (entries may be sent again)", "room", roomName, "seq", seq, "err", err)
	}
	if cs, ok := s.out.(CursorSender); ok {
		for _, rep := range r.replicas {
			cs.StreamCursor(rep, roomName, epoch, seq)
		}
	}
	if r.committed <= r.log.Streamed() {
		s.unmarkUnstreamed(roomName)
	}
}

// HandleStreamCursor records on this node's copy of a room the cursor its
// owner pushed (see CursorSender).
func (s *Service) HandleStreamCursor(roomName, epoch string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rooms[roomName] != nil {
		return // owned here now: its own cursor rules
	}
	l, err := s.copyLocked(roomName)
	if err != nil || l == nil {
		return
	}
	if err := l.AdoptStreamed(epoch, seq); err != nil {
		s.log.Debug("event stream: cannot store a replica's cursor", "room", roomName, "err", err)
	}
}

// ClaimUnstreamed starts claims of rooms this node owns in its view but
// does not hold in memory, whose copy here has committed entries past its
// cursor: after an owner's crash, a handoff or a restart, nobody may ask
// for such a room for a long time, and its entries must still reach the
// backend. At most MaxStreamClaims rooms per call; it returns how many.
func (s *Service) ClaimUnstreamed() int {
	if !s.cfg.Stream {
		return 0
	}
	claimed := 0
	for _, room := range s.unstreamedCopies() {
		if claimed == MaxStreamClaims {
			break
		}
		s.mu.Lock()
		held := s.rooms[room] != nil
		s.mu.Unlock()
		if held {
			continue // served here: already in the stream's list
		}
		r, err := s.acquire(room)
		if err != nil {
			continue // not ours after all, no quorum, closing: a later call
		}
		claimed++
		r.whenReady(func() { r.noteCommitted() }, func(error) {})
		r.mu.Unlock()
	}
	return claimed
}

// unstreamedCopies lists the rooms this node owns in its view whose copy
// here (on disk with a store, in memory without) has entries past its
// stream cursor.
func (s *Service) unstreamedCopies() []string {
	var out []string
	if s.cfg.Store != nil {
		for room, m := range s.cfg.Store.Rooms() {
			if m.Epoch == "" || m.Head == 0 || s.view.Owner(room) != s.cfg.Self {
				continue
			}
			if c, ok := s.cfg.Store.Cursor(room); ok && c.Epoch == m.Epoch && c.Seq >= m.Head {
				continue
			}
			out = append(out, room)
		}
		return out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for room, l := range s.replicas {
		if l.Streamed() < l.Head() && s.view.Owner(room) == s.cfg.Self {
			out = append(out, room)
		}
	}
	return out
}
