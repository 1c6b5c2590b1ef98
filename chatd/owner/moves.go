package owner

import (
	"fmt"

	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// SetReplicas tells an owned room which nodes replicate it now. New replicas
// are brought to the log before they count; replicas that left stop
// counting, which may commit messages that were waiting for them.
func (s *Service) SetReplicas(roomName string, replicas []string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if slices.Equal(r.replicas, replicas) || r.state == stateWaiting {
		return // a claim brings every replica of the view to the log when it ends
	}
	// A settling room takes the new set too: a replica that died while it
	// settled must not hold it up.
	if !s.view.HasQuorum() {
		// Dropping an unreachable replica here could commit, on the
		// minority side, messages the majority never sees.
		return
	}
	old := r.acked
	for _, rep := range r.replicas {
		if !slices.Contains(replicas, rep) {
			r.markStaleLocked(rep)
		}
	}
	r.acked = make(map[string]uint64, len(replicas))
	r.replicas = slices.Clone(replicas)
	r.forgetRepairsExcept(r.replicas)
	for rep := range r.syncs {
		if !slices.Contains(r.replicas, rep) {
			delete(r.syncs, rep)
		}
	}
	for _, rep := range replicas {
		if seq, ok := old[rep]; ok {
			r.acked[rep] = seq
			continue
		}
		r.syncLocked(rep)
	}
	r.commitLocked(r.replicatedUpTo())
}

// ResyncReplica is called when a replica reported a gap: it is brought to
// the log again.
func (s *Service) ResyncReplica(roomName, replica string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if _, syncing := r.syncs[replica]; r.state != stateWaiting && !syncing && slices.Contains(r.replicas, replica) {
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
// ErrMoving from now on; messages already sequenced are committed first,
// then newOwner is told this node is done with the room (HandoffNotice):
// it claims the room, which retires it here, and fetches what it lacks of
// this node's copy (the newest). If the notice is refused, or no claim
// comes within HandoffGrace, the room is served here again when this node
// owns it again in its view, or the notice goes again.
//
// A later call while the room still waits for pending messages (the
// cluster's next pass, or the new owner's question) aims the handoff at its
// node instead, and once the wait has lasted drainLimit it stops waiting:
// the senders are told ErrMoving and the notice goes now (see
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

// handOffRoomLocked starts, re-aims or renews r's handoff. Callers hold
// r.mu.
func (s *Service) handOffRoomLocked(r *room, newOwner string) {
	start := func() { r.sendNotice(newOwner) }
	now := s.cfg.Now()
	switch {
	case r.state == stateReady:
		r.state = stateMoving
		r.drainSince = now
		r.handedAt = time.Time{}
		if len(r.pending) == 0 {
			start()
			return
		}
		r.afterDrain = start
	case r.state == stateMoving && r.afterDrain != nil:
		if now.Sub(r.drainSince) < s.drainLimit() {
			r.afterDrain = start
			return
		}
		s.log.Warn("pending messages still not replicated; handing the room over without acknowledging them", "room", r.name, "pending", len(r.pending), "waited", now.Sub(r.drainSince))
		r.abandonPendingLocked(ErrMoving)
		r.afterDrain = nil
		start()
	case r.state == stateMoving && !r.handedAt.IsZero() && now.Sub(r.handedAt) >= s.cfg.HandoffGrace:
		// Told, but never claimed: tell again.
		s.log.Warn("the new owner has not claimed the room; telling it again", "room", r.name, "new_owner", newOwner)
		start()
	}
	// Otherwise the room is being claimed here, or the notice is on its way.
}

// Reclaim serves again a room this node was handing over and owns again in
// its view (the new owner never claimed it and the view moved back).
func (s *Service) Reclaim(roomName string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state == stateMoving && r.afterDrain == nil && !r.handedAt.IsZero() {
		r.state = stateReady
		r.handedAt = time.Time{}
	}
}

// drainLimit bounds how long a handoff waits for pending messages: half the
// new owner's grace, so the notice normally reaches it before it claims the
// room from every member without it.
func (s *Service) drainLimit() time.Duration { return s.cfg.HandoffGrace / 2 }

// abandonPendingLocked answers the senders of pending messages with err.
// The messages stay in the log, so the new owner's fetch carries them and
// a resend (which ErrMoving prompts) is answered by the new owner from its
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

// sendNotice tells newOwner this node is done with the room. The room then
// waits, moving, for newOwner's claim to retire it. Callers hold r.mu.
func (r *room) sendNotice(newOwner string) {
	s := r.svc
	notice := HandoffNotice{Room: r.name, Term: r.term, Head: r.log.Head(), Nodes: r.subscribersLocked()}
	r.handedAt = s.cfg.Now()
	s.out.HandOff(newOwner, notice, func(err error) {
		s.cfg.Observe.Handoff(true, err)
		if err == nil {
			return // the claim retires the room here
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.dead || r.state != stateMoving {
			return
		}
		r.svc.log.Warn("handoff notice refused; keeping the room", "room", r.name, "to", newOwner, "err", err)
		r.state = stateReady
		r.handedAt = time.Time{}
	})
}

// AcceptHandoff takes a previous owner's notice that it is done with a
// room: the room is claimed now (a claim waiting for the notice goes on at
// once), the previous owner's copy is fetched, and its subscribers are
// taken over. It answers at once; the claim runs on its own.
func (s *Service) AcceptHandoff(n HandoffNotice) (err error) {
	defer func() { s.cfg.Observe.Handoff(false, err) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed.Load() {
		return ErrClosed
	}
	if s.view.Owner(n.Room) != s.cfg.Self {
		return fmt.Errorf("room %s: %w", n.Room, ErrNotOwner)
	}
	r := s.rooms[n.Room]
	if r == nil {
		if !s.view.HasQuorum() {
			return ErrNoQuorum
		}
		l, err := s.takeReplicaLocked(n.Room)
		if err != nil {
			return err
		}
		r = s.newRoomLocked(n.Room, l)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.notice = &n
		s.startClaimLocked(r, n.Term, false)
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.dead:
		return fmt.Errorf("room %s: %w", n.Room, ErrMoving)
	case r.state == stateWaiting:
		r.notice = &n
		if r.noticed != nil {
			close(r.noticed)
			r.noticed = nil
		}
		return nil
	default:
		// Served here already, in a newer term: the notice is stale.
		return fmt.Errorf("room %s served here in term %d (notice of term %d): %w", n.Room, r.term, n.Term, ErrBehind)
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

// resyncAllLocked brings every replica to the log in the room's term: what
// they acknowledged was another log or another term. Callers hold r.mu.
func (r *room) resyncAllLocked() {
	r.acked = make(map[string]uint64, len(r.replicas))
	clear(r.syncs)
	clear(r.repair)
	r.stopRetryIfRepaired()
	for _, rep := range r.replicas {
		r.syncLocked(rep)
	}
}

// becomeReady ends a claim (once the room settled) and runs the held
// requests in order. What was pending commits as soon as the replicas have
// it.
func (r *room) becomeReady() {
	if r.state != stateSettling {
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

// Sweep frees rooms that have had no subscribed node for RoomIdleTTL.
// Without a store their history goes with them and their replicas are told
// to drop theirs; with one, only the memory is freed (the history stays on
// every copy's disk, and the next request claims the room again from
// there), and replica copies idle as long leave memory too.
func (s *Service) Sweep() {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, r := range s.rooms {
		r.mu.Lock()
		r.trimLocked()
		r.reportSlowLocked(now)
		// A room whose entries the event stream has not delivered stays:
		// freeing it would strand them until someone asks for the room.
		unstreamed := s.cfg.Stream && r.committed > r.log.Streamed()
		if len(r.nodes) == 0 && r.state == stateReady && len(r.pending) == 0 && len(r.syncs) == 0 && !unstreamed && now.Sub(r.emptySince) >= s.cfg.RoomIdleTTL {
			r.dead = true
			r.stopTimers()
			delete(s.rooms, name)
			if s.cfg.Store == nil {
				for _, rep := range r.replicas {
					s.out.ForgetReplica(rep, name, r.term)
				}
			}
		}
		r.mu.Unlock()
	}
	for name, until := range s.relinquished {
		if now.After(until) {
			delete(s.relinquished, name)
		}
	}
	if s.cfg.Store != nil {
		for name, used := range s.replicaUsed {
			if now.Sub(used) >= s.cfg.RoomIdleTTL {
				delete(s.replicas, name)
				delete(s.replicaUsed, name)
			}
		}
	}
}

// Trim makes the rooms in memory forget what the store's retention removed
// and tells their subscribed nodes (Sweep does it too, every pass; the
// cluster calls Trim right after a retention pass).
func (s *Service) Trim() {
	for _, r := range s.ownedList() {
		r.mu.Lock()
		r.trimLocked()
		r.mu.Unlock()
	}
}

// trimLocked drops from memory the messages retention removed and, when
// the oldest kept moved, tells the subscribed nodes. Callers hold r.mu.
func (r *room) trimLocked() {
	if r.svc.cfg.Store != nil && !r.dead && r.log.Trim() {
		r.push(feed.Event{Kind: feed.KindTrimmed, Room: r.name, Epoch: r.log.Epoch(), Seq: r.log.Oldest()})
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
