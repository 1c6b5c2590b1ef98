package owner

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// acquire returns the owned room, starting a claim of it when this node is
// its owner in the current view and does not hold it yet. The room is
// returned locked; a room being claimed holds requests (whenReady).
func (s *Service) acquire(name string) (*room, error) {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	r := s.rooms[name]
	owner := s.view.Owner(name)
	if r != nil && owner != s.cfg.Self {
		// Still held here (a handoff is pending or failed), but another
		// node owns it now: serving it would fork the room.
		s.mu.Unlock()
		return nil, ErrNotOwner
	}
	if r == nil {
		if owner != s.cfg.Self {
			s.mu.Unlock()
			return nil, ErrNotOwner
		}
		if !s.view.HasQuorum() {
			// Starting a room is a write: not on the minority side.
			s.mu.Unlock()
			return nil, ErrNoQuorum
		}
		if until, ok := s.relinquished[name]; ok {
			if s.cfg.Now().Before(until) {
				s.mu.Unlock()
				return nil, ErrNotOwner
			}
			delete(s.relinquished, name)
		}
		l, err := s.takeReplicaLocked(name)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		r = s.newRoomLocked(name, l)
		r.mu.Lock()
		r.replicas = s.view.Replicas(name)
		s.startClaimLocked(r, 0, true)
		r.mu.Unlock()
	}
	s.mu.Unlock()
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return nil, ErrMoving
	}
	return r, nil
}

// takeReplicaLocked returns this node's copy of a room as an owner's log
// (with the store, reloaded with HistorySize messages in memory), or a new
// log. Callers hold s.mu.
func (s *Service) takeReplicaLocked(name string) (*roomlog.Log, error) {
	l, ok := s.replicas[name]
	delete(s.replicas, name)
	delete(s.replicaUsed, name)
	if s.cfg.Store != nil {
		loaded, held, err := roomlog.Load(name, s.logConfig(true))
		if err != nil {
			return nil, fmt.Errorf("room %s: load the copy: %w", name, err)
		}
		if held {
			return loaded, nil
		}
	}
	if ok {
		return l, nil
	}
	return roomlog.New(name, s.logConfig(true)), nil
}

// newRoomLocked makes an owned room of l and registers it. Callers hold
// s.mu.
func (s *Service) newRoomLocked(name string, l *roomlog.Log) *room {
	r := s.newRoom(name, l)
	l.SetOnDurable(r.onDurable)
	s.rooms[name] = r
	return r
}

// whenReady runs f now if the room is ready, queues it while waiting for a
// handoff, and fails it while moving. Callers hold r.mu; f runs with r.mu held.
func (r *room) whenReady(f func(), fail func(error)) {
	switch r.state {
	case stateReady:
		f()
	case stateWaiting, stateSettling:
		r.svc.cfg.Observe.Held()
		r.held = append(r.held, heldRequest{run: f, fail: fail})
	case stateMoving:
		fail(ErrMoving)
	}
}

// Subscribe registers node as having subscribers for room, with the users
// present there, and returns the room's state and kept history. The reply is
// made under the room's lock, before any later push to that node.
func (s *Service) Subscribe(roomName, node string, users []string, reply func(feed.State, error)) {
	r, err := s.acquire(roomName)
	if err != nil {
		reply(feed.State{}, err)
		return
	}
	defer r.mu.Unlock()
	r.whenReady(func() {
		if _, ok := r.nodes[node]; !ok {
			r.nodes[node] = make(map[string]struct{})
		}
		for _, u := range users {
			if r.addUser(node, u) {
				r.presenceChanged(u, true)
			}
		}
		rep := feed.State{Epoch: r.log.Epoch(), Head: r.committed, Count: len(r.users)}
		if s.cfg.Store != nil {
			// Older than the messages sent here, the history is on disk.
			rep.Oldest = r.log.Oldest()
		}
		for _, m := range r.log.Recent() {
			if m.Seq <= r.committed { // pending messages reach nodes when committed
				rep.Messages = append(rep.Messages, m)
			}
		}
		if r.listMode() {
			rep.Present = r.presentUsers()
		}
		reply(rep, nil)
	}, func(err error) { reply(feed.State{}, err) })
}

// Unsubscribe removes node's subscription to a room.
func (s *Service) Unsubscribe(roomName, node string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	r.dropNode(node)
}

// PresenceChange records that user's first connection on node joined the
// room (joined) or its last one left (!joined).
func (s *Service) PresenceChange(roomName, node, user string, joined bool) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	r.whenReady(func() {
		if joined {
			if r.addUser(node, user) {
				r.presenceChanged(user, true)
			}
		} else if r.removeUser(node, user) {
			r.presenceChanged(user, false)
		}
	}, func(error) {})
}

// Publish sequences a message. reply is called once the message is stored on
// every replica and has been pushed to the subscribed nodes; a resend of a
// (user, cid) already seen is answered with the original ack, marked
// duplicate.
func (s *Service) Publish(roomName, user, cid, text string, reply PublishReply) {
	r, err := s.acquire(roomName)
	if err != nil {
		reply(protocol.Ack{}, err)
		return
	}
	defer r.mu.Unlock()
	r.whenReady(func() { r.publishLocked(user, cid, text, reply) }, func(err error) { reply(protocol.Ack{}, err) })
}

func (r *room) publishLocked(user, cid, text string, reply PublishReply) {
	msg, dup, err := r.log.Append(user, cid, text)
	if err != nil {
		reply(protocol.Ack{}, storageErr(err))
		return
	}
	if dup {
		if msg.Seq <= r.committed {
			reply(ackFor(msg, true), nil)
			return
		}
		for i := range r.pending {
			if r.pending[i].msg.Seq == msg.Seq {
				r.pending[i].dups = append(r.pending[i].dups, reply)
				return
			}
		}
		reply(protocol.Ack{}, fmt.Errorf("room %s: duplicate of seq %d neither committed nor pending", r.name, msg.Seq))
		return
	}
	r.sequencedLocked(msg, reply)
}

// Delete deletes the committed message at seq target of a room, by user by:
// a deletion entry takes the room's next seq, the message's text is removed
// from every copy, and reply is called with the deletion's ack once it is
// stored on every replica and pushed to the subscribed nodes, as a
// message's. A seq that holds no committed message, or one already
// deleted, is refused with an error wrapping roomlog.ErrNotDeletable.
func (s *Service) Delete(roomName, by string, target uint64, reply PublishReply) {
	r, err := s.acquire(roomName)
	if err != nil {
		reply(protocol.Ack{}, err)
		return
	}
	defer r.mu.Unlock()
	r.whenReady(func() { r.deleteLocked(by, target, reply) }, func(err error) { reply(protocol.Ack{}, err) })
}

func (r *room) deleteLocked(by string, target uint64, reply PublishReply) {
	if target > r.committed {
		reply(protocol.Ack{}, fmt.Errorf("%w: room %s has committed up to seq %d, not %d", roomlog.ErrNotDeletable, r.name, r.committed, target))
		return
	}
	msg, err := r.log.Delete(by, target)
	if err != nil {
		if !errors.Is(err, roomlog.ErrNotDeletable) {
			err = storageErr(err)
		}
		reply(protocol.Ack{}, err)
		return
	}
	r.sequencedLocked(msg, reply)
}

// sequencedLocked sends a new entry of the log (a message or a deletion)
// to the replicas and answers reply once it is committed.
func (r *room) sequencedLocked(msg protocol.Message, reply PublishReply) {
	r.pending = append(r.pending, pending{at: r.svc.cfg.Now(), msg: msg, replies: []PublishReply{reply}})
	epoch, term, seq := r.log.Epoch(), r.term, msg.Seq
	for _, rep := range r.replicas {
		if _, syncing := r.syncs[rep]; syncing {
			continue // the catch-up's chunks bring it
		}
		r.svc.out.Replicate(rep, Replication{Room: r.name, Epoch: epoch, Term: term, Msg: msg}, func(err error) { r.onReplicated(rep, "replicate", epoch, term, seq, err) })
	}
	r.commitLocked(r.replicatedUpTo())
}

// onReplicated records a replica's answer to a replicate or sync (op) that
// carried the log of epoch up to seq. A success means the replica holds
// every message up to seq (it applies in order and refuses gaps), which may
// commit pending messages. A failure leaves them pending and schedules a
// repair (see retryLocked), so they end in an ack once the replica answers
// again, or once the replica set changes without it.
func (r *room) onReplicated(replica, op, epoch string, term, seq uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || epoch != r.log.Epoch() || term != r.term || r.state == stateWaiting || !slices.Contains(r.replicas, replica) {
		// About a log, a term or a replica this room no longer has
		// (replaced by a handoff, claimed again, or dropped by
		// SetReplicas): it must not count.
		return
	}
	if err != nil {
		if errors.Is(err, ErrStaleTerm) || errors.Is(err, ErrNotMember) {
			// The replica promised a newer term to another owner, or does
			// not count this node as a member (it was declared dead): this
			// node is not the room's owner any more, whatever its view says.
			r.fencedLocked(replica, err)
			return
		}
		r.replicationFailed(replica, op, seq, err)
		return
	}
	if seq > r.acked[replica] {
		r.acked[replica] = seq
	}
	r.repairedUpTo(replica)
	r.commitLocked(r.replicatedUpTo())
}

// History returns a page of a room's committed history.
func (s *Service) History(roomName string, before uint64, limit int, reply func(protocol.HistoryPage, error)) {
	// Reading a room nobody holds must not create it: answer an empty page.
	// A room this node keeps a copy of is served (claimed) from it.
	s.mu.Lock()
	_, held := s.rooms[roomName]
	hasCopy := s.hasCopyLocked(roomName)
	owner := s.view.Owner(roomName)
	s.mu.Unlock()
	if !held && !hasCopy {
		if owner != s.cfg.Self {
			reply(protocol.HistoryPage{}, ErrNotOwner)
			return
		}
		reply(protocol.HistoryPage{Type: protocol.TypeHistory, Room: roomName, Oldest: 1, Messages: []protocol.Message{}}, nil)
		return
	}
	r, err := s.acquire(roomName)
	if err != nil {
		reply(protocol.HistoryPage{}, err)
		return
	}
	defer r.mu.Unlock()
	r.whenReady(func() {
		if before == 0 || before > r.committed+1 {
			before = r.committed + 1
		}
		msgs, more, err := r.log.Before(before, limit)
		if err != nil {
			reply(protocol.HistoryPage{}, storageErr(err))
			return
		}
		page := protocol.HistoryPage{Type: protocol.TypeHistory, Room: r.name, Epoch: r.log.Epoch(), Head: r.committed, Oldest: r.log.Oldest(), More: more, Messages: msgs}
		if page.Messages == nil {
			page.Messages = []protocol.Message{}
		}
		reply(page, nil)
	}, func(err error) { reply(protocol.HistoryPage{}, err) })
}

// Typing records that user is typing; signals are gathered for
// TypingCoalesce and pushed as one frame. Typing for a room this node does
// not hold is dropped: typing is lossy by design.
func (s *Service) Typing(roomName, user string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state != stateReady {
		return
	}
	if r.typingPending == nil {
		r.typingPending = make(map[string]struct{})
	}
	r.typingPending[user] = struct{}{}
	if r.typingTimer == nil {
		r.typingTimer = time.AfterFunc(r.svc.cfg.TypingCoalesce, r.flushTyping)
	}
}
