package owner

import (
	"errors"
	"fmt"

	"github.com/ringchat/ringchat/chatd/roomlog"
)

// The replica side. A node keeps a copy of every room it replicates; an
// owner writes it with replicates (one message) and syncs (a full copy).
// Both carry the owner's term, and both are refused when this node promised
// a newer term for the room, when it does not count the writer as a live
// member, and when it sees no majority of the cluster (a write accepted on
// the minority side could be committed there while the majority moves on).
// A write of a newer term than this node's own ownership of the room means
// another node owns it now: this node gives the room up.

// checkWriteLocked applies the rules every write to a copy obeys, and gives
// up an owned room that a newer term now writes. Callers hold s.mu.
func (s *Service) checkWriteLocked(from, room string, term uint64) error {
	if !s.view.HasQuorum() {
		return ErrNoQuorum
	}
	if !s.view.Alive(from) {
		return fmt.Errorf("room %s: write from %s: %w", room, from, ErrNotMember)
	}
	if p := s.promised[room]; term < p {
		return &StaleTermError{Room: room, Promised: p}
	}
	if r := s.rooms[room]; r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !r.dead {
			if term <= max(r.term, s.promised[room]) && r.state != stateWaiting {
				return &StaleTermError{Room: room, Promised: max(r.term, s.promised[room])}
			}
			s.cfg.Observe.Fenced()
			s.log.Warn("fenced: another node writes this room in a newer term; giving it up", "room", room, "writer", from, "term", term, "our_term", r.term)
			r.retireLocked(ErrMoving)
		}
	}
	s.promised[room] = max(s.promised[room], term)
	return nil
}

// ApplyReplica stores a message the owner sequenced on this node's copy of
// the room. It returns roomlog.ErrGap when the copy needs a full sync first
// (it is missing, of another epoch or term, or behind), and a StaleTermError
// when the writer's term is older than one promised here.
func (s *Service) ApplyReplica(from string, rep Replication) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWriteLocked(from, rep.Room, rep.Term); err != nil {
		return err
	}
	l := s.replicas[rep.Room]
	if l == nil || l.Epoch() != rep.Epoch || l.Term() != rep.Term {
		return fmt.Errorf("%w: no copy of %s in epoch %s term %d here", roomlog.ErrGap, rep.Room, rep.Epoch, rep.Term)
	}
	err := l.Apply(rep.Msg)
	if errors.Is(err, roomlog.ErrConflict) {
		s.cfg.Observe.Conflict()
		s.log.Error("replicated message conflicts with the copy held here; refused", "room", rep.Room, "writer", from, "term", rep.Term, "err", err)
	}
	return err
}

// SyncReplica replaces this node's copy of a room with a full copy from its
// owner (from), in the owner's term.
func (s *Service) SyncReplica(from string, snap roomlog.Snapshot) error {
	l, err := roomlog.Restore(snap, s.logConfig())
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWriteLocked(from, snap.Room, snap.Term); err != nil {
		return err
	}
	s.replicas[snap.Room] = l
	delete(s.retired, snap.Room)
	return nil
}

// ForgetReplica drops this node's copy of a room (its owner forgot it).
func (s *Service) ForgetReplica(roomName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.replicas, roomName)
}
