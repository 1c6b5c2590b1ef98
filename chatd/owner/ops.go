package owner

import (
	"fmt"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// Claim tells the service how to treat a request for a room it does not hold
// yet. The cluster decides it from the membership views.
type Claim int

const (
	// ClaimNotOwner: another node owns the room in this node's view.
	ClaimNotOwner Claim = iota
	// ClaimCreate: this node owns the room and nobody else can hold it:
	// start it (from a local replica when there is one).
	ClaimCreate
	// ClaimAwaitHandoff: this node owns the room but the previous owner is
	// alive and will hand it over; hold requests until it does.
	ClaimAwaitHandoff
)

// ClaimFunc answers Claim for a room; set by the cluster. hasReplica says
// whether this node keeps a replica of the room. It is called with the
// service's lock held and must not call back into the service.
type ClaimFunc func(room string, hasReplica bool) Claim

// acquire returns the owned room, creating or awaiting it as claim says. The
// room is returned locked.
func (s *Service) acquire(name string, claim ClaimFunc) (*room, error) {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	r := s.rooms[name]
	_, hasReplica := s.replicas[name]
	if r != nil && claim(name, hasReplica) == ClaimNotOwner {
		// Still held here (a handoff is pending or failed), but another
		// node owns it now: serving it would fork the room.
		s.mu.Unlock()
		return nil, ErrNotOwner
	}
	if r == nil {
		if until, ok := s.relinquished[name]; ok {
			if s.cfg.Now().Before(until) {
				s.mu.Unlock()
				return nil, ErrNotOwner
			}
			delete(s.relinquished, name)
		}
		switch claim(name, hasReplica) {
		case ClaimNotOwner:
			s.mu.Unlock()
			return nil, ErrNotOwner
		case ClaimCreate:
			r = s.newRoom(name, s.takeReplicaLocked(name))
		case ClaimAwaitHandoff:
			r = s.newRoom(name, s.takeReplicaLocked(name))
			r.state = stateWaiting
			r.claim = claim
			r.startWaitTimer()
			if s.cfg.OnAwait != nil {
				go s.cfg.OnAwait(name)
			}
		}
		s.rooms[name] = r
		if s.cfg.Replicas != nil {
			// Replicated from the first message on: a room must not live
			// unreplicated until the next reconciliation.
			r.mu.Lock()
			r.replicas = s.cfg.Replicas(name)
			for _, rep := range r.replicas {
				r.syncLocked(rep)
			}
			r.mu.Unlock()
		}
	}
	s.mu.Unlock()
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return nil, ErrMoving
	}
	return r, nil
}

// takeReplicaLocked promotes the local replica of a room, or starts a new
// log. Callers hold s.mu.
func (s *Service) takeReplicaLocked(name string) *roomlog.Log {
	if l, ok := s.replicas[name]; ok {
		delete(s.replicas, name)
		return l
	}
	return roomlog.New(name, s.logConfig())
}

// whenReady runs f now if the room is ready, queues it while waiting for a
// handoff, and fails it while moving. Callers hold r.mu; f runs with r.mu held.
func (r *room) whenReady(f func(), fail func(error)) {
	switch r.state {
	case stateReady:
		f()
	case stateWaiting:
		r.svc.cfg.Observe.Held()
		r.held = append(r.held, f)
	case stateMoving:
		fail(ErrMoving)
	}
}

// Subscribe registers node as having subscribers for room, with the users
// present there, and returns the room's state and kept history. The reply is
// made under the room's lock, before any later push to that node.
func (s *Service) Subscribe(roomName, node string, users []string, claim ClaimFunc, reply func(feed.State, error)) {
	r, err := s.acquire(roomName, claim)
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
		rep := feed.State{Epoch: r.log.Epoch(), Head: r.committed, Oldest: r.log.Oldest(), Count: len(r.users)}
		msgs, _ := r.log.Since(r.log.Epoch(), r.log.Oldest()-1)
		for _, m := range msgs {
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
func (s *Service) Publish(roomName, user, cid, text string, claim ClaimFunc, reply PublishReply) {
	r, err := s.acquire(roomName, claim)
	if err != nil {
		reply(protocol.Ack{}, err)
		return
	}
	defer r.mu.Unlock()
	r.whenReady(func() { r.publishLocked(user, cid, text, reply) }, func(err error) { reply(protocol.Ack{}, err) })
}

func (r *room) publishLocked(user, cid, text string, reply PublishReply) {
	msg, dup := r.log.Append(user, cid, text)
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
	r.pending = append(r.pending, pending{at: r.svc.cfg.Now(), msg: msg, replies: []PublishReply{reply}})
	if len(r.replicas) == 0 {
		r.commitLocked(msg.Seq)
		return
	}
	epoch, seq := r.log.Epoch(), msg.Seq
	for _, rep := range r.replicas {
		r.svc.out.Replicate(rep, r.name, msg, func(err error) { r.onReplicated(rep, "replicate", epoch, seq, err) })
	}
}

// onReplicated records a replica's answer to a replicate or sync (op) that
// carried the log of epoch up to seq. A success means the replica holds
// every message up to seq (it applies in order and refuses gaps), which may
// commit pending messages. A failure leaves them pending and schedules a
// repair (see retryLocked), so they end in an ack once the replica answers
// again, or once the replica set changes without it.
func (r *room) onReplicated(replica, op, epoch string, seq uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || epoch != r.log.Epoch() || !slices.Contains(r.replicas, replica) {
		// About a log or a replica this room no longer has (replaced by a
		// handoff, or dropped by SetReplicas): it must not count.
		return
	}
	if err != nil {
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
func (s *Service) History(roomName string, before uint64, limit int, claim ClaimFunc, reply func(protocol.HistoryPage, error)) {
	// Reading a room nobody holds must not create it: answer an empty page.
	s.mu.Lock()
	_, held := s.rooms[roomName]
	_, hasReplica := s.replicas[roomName]
	c := claim(roomName, hasReplica)
	s.mu.Unlock()
	if !held {
		if c == ClaimNotOwner {
			reply(protocol.HistoryPage{}, ErrNotOwner)
			return
		}
		reply(protocol.HistoryPage{Type: protocol.TypeHistory, Room: roomName, Oldest: 1, Messages: []protocol.Message{}}, nil)
		return
	}
	r, err := s.acquire(roomName, claim)
	if err != nil {
		reply(protocol.HistoryPage{}, err)
		return
	}
	defer r.mu.Unlock()
	r.whenReady(func() {
		if before == 0 || before > r.committed+1 {
			before = r.committed + 1
		}
		msgs, more := r.log.Before(before, limit)
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
