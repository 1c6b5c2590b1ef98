package owner

import (
	"errors"
	"fmt"

	"github.com/ringchat/ringchat/chatd/roomlog"
)

// The replica side. A node keeps a copy of every room it replicates; an
// owner brings it to its log with a sync (an offer, then chunks: see
// sync.go) and then writes it message by message (replicates). Every write
// carries the owner's term, and every write is refused when this node
// promised a newer term for the room, when it does not count the writer as
// a live member, and when it sees no majority of the cluster (a write
// accepted on the minority side could be committed there while the
// majority moves on). A write of a newer term than this node's own
// ownership of the room means another node owns it now: this node gives
// the room up. Answers go back once the write is durable here.

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

// copyLocked returns this node's copy of a room: in memory, or loaded from
// the store (nil when it holds none). Callers hold s.mu.
func (s *Service) copyLocked(room string) (*roomlog.Log, error) {
	if l := s.replicas[room]; l != nil {
		s.replicaUsed[room] = s.cfg.Now()
		return l, nil
	}
	if s.cfg.Store == nil {
		return nil, nil
	}
	l, ok, err := roomlog.Load(room, s.logConfig(false))
	if err != nil || !ok {
		return nil, err
	}
	s.replicas[room] = l
	s.replicaUsed[room] = s.cfg.Now()
	return l, nil
}

// hasCopyLocked reports whether this node holds a copy of a room, in memory
// or in its store. Callers hold s.mu.
func (s *Service) hasCopyLocked(room string) bool {
	if _, ok := s.replicas[room]; ok {
		return true
	}
	if s.cfg.Store == nil {
		return false
	}
	m, ok := s.cfg.Store.Meta(room)
	return ok && m.Epoch != ""
}

// HandleSyncOffer makes this node's copy of a room follow the owner's log
// (from): it keeps what the copy shares with it, cuts what diverged, or
// starts over, and answers, once that is durable, how far the copy goes.
func (s *Service) HandleSyncOffer(from string, offer SyncOffer, reply func(SyncAnswer, error)) {
	m := offer.Meta
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWriteLocked(from, m.Room, m.Term); err != nil {
		s.log.Info("refused a sync offer", "room", m.Room, "from", from, "term", m.Term, "err", err)
		reply(SyncAnswer{}, err)
		return
	}
	l, err := s.copyLocked(m.Room)
	if err != nil {
		reply(SyncAnswer{}, fmt.Errorf("room %s: load the copy: %w", m.Room, err))
		return
	}
	keep, reset := uint64(0), true
	if l != nil {
		keep, reset = l.Match(m)
	} else {
		l = roomlog.New(m.Room, s.logConfig(false))
	}
	if reset {
		start := m
		start.Head = m.Oldest - 1
		keep = start.Head
		err = l.Reset(start, nil)
	} else {
		err = l.TruncateAfter(keep, nil)
	}
	if err == nil {
		err = l.SetTerm(m.Term, nil)
	}
	if err == nil {
		err = l.AdoptStreamed(m.Epoch, m.Streamed)
	}
	if err != nil {
		delete(s.replicas, m.Room) // the copy is not known any more: reload it
		s.log.Warn("could not bring this node's copy to the owner's log", "room", m.Room, "from", from, "term", m.Term, "keep", keep, "reset", reset, "err", err)
		reply(SyncAnswer{}, storageErr(err))
		return
	}
	s.replicas[m.Room] = l
	s.replicaUsed[m.Room] = s.cfg.Now()
	delete(s.retired, m.Room)
	if err := l.Sync(func(err error) { reply(SyncAnswer{Have: keep}, storageErr(err)) }); err != nil {
		reply(SyncAnswer{}, storageErr(err))
	}
}

// HandleSyncChunk appends a chunk of the owner's log to this node's copy,
// which must follow it (a sync offer came first), and answers once it is
// durable.
func (s *Service) HandleSyncChunk(from string, c Chunk, reply func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWriteLocked(from, c.Room, c.Term); err != nil {
		reply(err)
		return
	}
	l, err := s.copyLocked(c.Room)
	if err != nil {
		reply(err)
		return
	}
	if l == nil || l.Epoch() != c.Epoch || l.Term() != c.Term {
		reply(fmt.Errorf("%w: no copy of %s following epoch %s term %d here", roomlog.ErrGap, c.Room, c.Epoch, c.Term))
		return
	}
	if err := l.AppendEntries(c.Entries, func(err error) { reply(storageErr(err)) }); err != nil {
		if errors.Is(err, roomlog.ErrGap) {
			reply(err)
			return
		}
		reply(storageErr(err))
	}
}

// ApplyReplica stores one message the owner (from) sequenced on this node's
// copy of the room and answers once it is durable. roomlog.ErrGap means
// the copy needs a sync first (it is missing, of another epoch or term, or
// behind); a StaleTermError that the writer's term is older than one
// promised here.
func (s *Service) ApplyReplica(from string, rep Replication, reply func(error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkWriteLocked(from, rep.Room, rep.Term); err != nil {
		reply(err)
		return
	}
	l, err := s.copyLocked(rep.Room)
	if err != nil {
		reply(err)
		return
	}
	if l == nil || l.Epoch() != rep.Epoch || l.Term() != rep.Term {
		reply(fmt.Errorf("%w: no copy of %s in epoch %s term %d here", roomlog.ErrGap, rep.Room, rep.Epoch, rep.Term))
		return
	}
	err = l.Apply(rep.Term, rep.Msg, func(err error) { reply(storageErr(err)) })
	switch {
	case errors.Is(err, roomlog.ErrConflict):
		s.cfg.Observe.Conflict()
		s.log.Error("replicated message conflicts with the copy held here; refused", "room", rep.Room, "writer", from, "term", rep.Term, "err", err)
		reply(err)
	case errors.Is(err, roomlog.ErrGap):
		reply(err)
	case err != nil:
		reply(storageErr(err))
	}
}

// ForgetReplica drops this node's copy of a room: its owner (of term)
// forgot the room, or no longer needs this copy. A copy that follows a
// newer owner's term is kept (the forget is older than that owner's sync).
func (s *Service) ForgetReplica(roomName string, term uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rooms[roomName] != nil {
		return // owned here now: not a replica copy to forget
	}
	l, _ := s.copyLocked(roomName)
	if l != nil && l.Term() > term {
		return
	}
	delete(s.replicas, roomName)
	delete(s.replicaUsed, roomName)
	if l != nil {
		if err := l.Drop(nil); err != nil {
			s.log.Warn("could not drop a forgotten copy", "room", roomName, "err", err)
		}
	}
}

// storageErr marks an error of the store as ErrStorage (nil stays nil).
func storageErr(err error) error {
	if err == nil || errors.Is(err, ErrStorage) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrStorage, err)
}
