package owner

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// SetReplicas tells an owned room which nodes replicate it now. New replicas
// get a full copy before they count; replicas that left stop counting, which
// may commit messages that were waiting for them.
func (s *Service) SetReplicas(roomName string, replicas []string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if slices.Equal(r.replicas, replicas) || r.state == stateWaiting {
		return // a claim gives every replica of the view a copy when it ends
	}
	if !s.view.HasQuorum() {
		// Dropping an unreachable replica here could commit, on the
		// minority side, messages the majority never sees.
		return
	}
	old := r.acked
	r.acked = make(map[string]uint64, len(replicas))
	r.replicas = slices.Clone(replicas)
	r.forgetRepairsExcept(r.replicas)
	for _, rep := range replicas {
		if seq, ok := old[rep]; ok {
			r.acked[rep] = seq
			continue
		}
		r.syncLocked(rep)
	}
	r.commitLocked(r.replicatedUpTo())
}

// syncLocked sends a full copy of the log to rep; until it lands, rep holds
// back commits, and if it fails rep is repaired later (see retryLocked).
// Callers hold r.mu.
func (r *room) syncLocked(rep string) {
	snap := r.log.Snapshot()
	term := r.term
	r.svc.out.SyncReplica(rep, snap, func(err error) { r.onReplicated(rep, "sync", snap.Epoch, term, snap.Head, err) })
}

// ResyncReplica is called when a replica reported a gap: it gets a full copy.
func (s *Service) ResyncReplica(roomName, replica string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state != stateWaiting && slices.Contains(r.replicas, replica) {
		r.syncLocked(replica)
	}
}

// DropNode forgets every subscription of a node that left the cluster.
func (s *Service) DropNode(node string) {
	for _, r := range s.ownedList() {
		r.mu.Lock()
		r.dropNode(node)
		r.mu.Unlock()
	}
}

// HandOff gives an owned room to newOwner. New requests are refused with
// ErrMoving from now on; messages already sequenced are committed first, so
// the state carries everything acknowledged. On failure the room stays
// here, ready, and the cluster tries again on its next pass.
//
// A later call while the room still waits for pending messages (the
// cluster's next pass, or the new owner's claim) aims the handoff at its
// node instead, and once the wait has lasted drainLimit it stops waiting:
// the senders are told ErrMoving and the state goes now (see
// abandonPendingLocked). A replica that does not answer must not keep the
// room from its new owner, which holds requests meanwhile.
func (s *Service) HandOff(roomName, newOwner string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	s.handOffRoomLocked(r, newOwner)
}

// handOffLocked is HandOff for a room whose service lock the caller holds.
// Callers hold s.mu and r.mu.
func (s *Service) handOffLocked(r *room, newOwner string) { s.handOffRoomLocked(r, newOwner) }

// handOffRoomLocked starts or re-aims r's handoff. Callers hold r.mu.
func (s *Service) handOffRoomLocked(r *room, newOwner string) {
	start := func() { r.sendHandoff(newOwner) }
	switch {
	case r.state == stateReady:
		r.state = stateMoving
		r.drainSince = s.cfg.Now()
		if len(r.pending) == 0 {
			start()
			return
		}
		r.afterDrain = start
	case r.state == stateMoving && r.afterDrain != nil:
		if s.cfg.Now().Sub(r.drainSince) < s.drainLimit() {
			r.afterDrain = start
			return
		}
		s.log.Warn("pending messages still not replicated; handing the room over without acknowledging them", "room", r.name, "pending", len(r.pending), "waited", s.cfg.Now().Sub(r.drainSince))
		r.abandonPendingLocked(ErrMoving)
		r.afterDrain = nil
		start()
	}
	// Otherwise the room is being claimed here, or its state is on the way.
}

// drainLimit bounds how long a handoff waits for pending messages: half the
// new owner's grace, so the state normally reaches it before it claims the
// room from every member instead.
func (s *Service) drainLimit() time.Duration { return s.cfg.HandoffGrace / 2 }

// abandonPendingLocked answers the senders of pending messages with err.
// The messages stay in the log, so a handoff state carries them and a
// resend (which ErrMoving prompts) is answered by the new owner from its
// dedupe window with the original sequence number. They also stay pending
// here, without senders, so they are still committed in order if the
// handoff fails and the room stays. Callers hold r.mu.
func (r *room) abandonPendingLocked(err error) {
	for i := range r.pending {
		p := &r.pending[i]
		for _, reply := range append(p.replies, p.dups...) {
			reply(protocol.Ack{}, err)
		}
		p.replies, p.dups = nil, nil
	}
}

// sendHandoff sends the room's state to newOwner and, once it is accepted,
// retires the room here. Callers hold r.mu.
func (r *room) sendHandoff(newOwner string) {
	s := r.svc
	st := HandoffState{Snapshot: r.log.Snapshot(), Nodes: r.subscribersLocked()}
	st.Snapshot.Term = r.term
	s.out.HandOff(newOwner, st, func(err error) {
		s.cfg.Observe.Handoff(true, err)
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			return
		}
		if err != nil && !errors.Is(err, ErrBehind) {
			r.svc.log.Warn("handoff failed; keeping the room", "room", r.name, "to", newOwner, "err", err)
			r.state = stateReady
			r.mu.Unlock()
			return
		}
		if err != nil {
			r.svc.log.Warn("new owner is ahead; dropping the stale copy", "room", r.name, "head", r.committed)
		}
		r.dead = true
		r.stopTimers()
		r.mu.Unlock()
		// s.mu is taken after r.mu is released: the lock order is
		// always service, then room.
		s.mu.Lock()
		if s.rooms[r.name] == r {
			delete(s.rooms, r.name)
		}
		s.mu.Unlock()
	})
}

// AcceptHandoff installs a room handed over by its previous owner, in a
// term above every term this node knows for it. Requests held while the
// room was being claimed are applied in order.
func (s *Service) AcceptHandoff(st HandoffState) (err error) {
	defer func() { s.cfg.Observe.Handoff(false, err) }()
	l, err := roomlog.Restore(st.Snapshot, s.logConfig())
	if err != nil {
		return err
	}
	name := st.Snapshot.Room
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.promised[name]; p > st.Snapshot.Term && s.rooms[name] == nil {
		// A newer term was promised to another claimant since the giver
		// took the room: its state may miss what that owner wrote.
		return &StaleTermError{Room: name, Promised: p}
	}
	r := s.rooms[name]
	if r == nil {
		r = s.newRoom(name, l)
		s.rooms[name] = r
		delete(s.replicas, name)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.claimStart = s.cfg.Now()
		r.installNodes(st.Nodes)
		r.finishClaimLocked(s.nextTermLocked(r, st.Snapshot.Term), nil)
		return nil
	}
	delete(s.replicas, name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return fmt.Errorf("room %s: %w", name, ErrMoving)
	}
	// Never trade acknowledged history for less of it. A room this node
	// serves is only replaced by a newer copy (a higher term, or the same
	// term and longer): an older one comes from a node that was cut off
	// and missed this node's claim of the room.
	if r.state != stateWaiting && !roomlog.Newer(st.Snapshot.Term, l.Head(), r.term, r.committed) {
		s.log.Warn("handoff refused: local room is newer", "room", name, "local_epoch", r.log.Epoch(), "local_term", r.term, "local_head", r.committed,
			"epoch", l.Epoch(), "term", st.Snapshot.Term, "head", l.Head())
		return fmt.Errorf("room %s (term %d head %d, offered term %d head %d): %w", name, r.term, r.committed, st.Snapshot.Term, l.Head(), ErrBehind)
	}
	if r.log.Epoch() != l.Epoch() && r.committed > 0 {
		s.log.Warn("handoff replaces a room of another epoch", "room", name, "local_epoch", r.log.Epoch(), "local_head", r.committed, "epoch", l.Epoch(), "head", l.Head())
	}
	if err := r.installLocked(st); err != nil {
		return err
	}
	r.finishClaimLocked(s.nextTermLocked(r, st.Snapshot.Term), nil)
	return nil
}

// catchUpNodesLocked pushes to every subscribed node what the installed log
// holds beyond the log it replaced (from oldHead in oldEpoch). Nodes that
// followed the previous owner have it and drop the duplicates; a node that
// kept subscribers of this room under the replaced log (this node itself,
// after a partition in which it kept owning the room in its own view, so it
// never re-subscribed anywhere) would otherwise serve that stale history
// until the room's next message. A node further behind, or in another
// epoch, sees a gap and re-subscribes. Callers hold r.mu.
func (r *room) catchUpNodesLocked(oldEpoch string, oldHead uint64) {
	head := r.log.Head()
	if head == 0 || (oldEpoch == r.log.Epoch() && oldHead >= head) {
		return
	}
	msgs, ok := r.log.Since(oldEpoch, oldHead)
	if !ok || oldEpoch != r.log.Epoch() {
		// Only the last message: enough for a node to notice the gap.
		msgs, _ = r.log.Before(head+1, 1)
	}
	for _, m := range msgs {
		r.pushMessage(m)
	}
}

func (r *room) installNodes(nodes map[string][]string) {
	for node, users := range nodes {
		if _, ok := r.nodes[node]; !ok {
			r.nodes[node] = make(map[string]struct{})
		}
		for _, u := range users {
			r.addUser(node, u)
		}
	}
}

// resyncAllLocked gives every replica a full copy in the room's term: what
// they acknowledged was another log or another term. Callers hold r.mu.
func (r *room) resyncAllLocked() {
	r.acked = make(map[string]uint64, len(r.replicas))
	clear(r.repair)
	r.stopRetryIfRepaired()
	for _, rep := range r.replicas {
		r.syncLocked(rep)
	}
}

// becomeReady ends a claim and runs the held requests in order. With no
// replica, what was pending commits at once.
func (r *room) becomeReady() {
	if r.state != stateWaiting {
		return
	}
	r.state = stateReady
	if len(r.repair) > 0 {
		r.scheduleRetryLocked() // paused while the room was claimed
	}
	held := r.held
	r.held = nil
	r.commitLocked(r.replicatedUpTo())
	for _, h := range held {
		h.run()
	}
}

// Sweep forgets owned rooms that have had no subscribed node for RoomIdleTTL,
// and tells their replicas.
func (s *Service) Sweep() {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.rooms {
		r.mu.Lock()
		if len(r.nodes) == 0 && r.state == stateReady && len(r.pending) == 0 && now.Sub(r.emptySince) >= s.cfg.RoomIdleTTL {
			r.dead = true
			r.stopTimers()
			delete(s.rooms, name)
			for _, rep := range r.replicas {
				s.out.ForgetReplica(rep, name)
			}
		}
		r.mu.Unlock()
	}
}

// Close refuses further requests, stops the rooms' timers, replication
// retries and claims, and waits for the claim loops to end.
func (s *Service) Close() {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return
	}
	close(s.done)
	for _, r := range s.rooms {
		r.mu.Lock()
		r.stopTimers()
		r.mu.Unlock()
	}
	s.mu.Unlock()
	s.acquiring.Wait()
}
