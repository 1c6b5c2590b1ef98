package owner

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// HandoffState is a room as the old owner gives it to the new one.
type HandoffState struct {
	Snapshot roomlog.Snapshot    `json:"snapshot"`
	Nodes    map[string][]string `json:"nodes"` // node → users present there
}

// ApplyReplica stores a message the owner sequenced on this node's replica of
// the room. It returns roomlog.ErrGap when the replica needs a full sync.
func (s *Service) ApplyReplica(roomName, epoch string, msg protocol.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.replicas[roomName]
	if l == nil || l.Epoch() != epoch {
		if msg.Seq != 1 {
			return fmt.Errorf("%w: no replica of %s in epoch %s", roomlog.ErrGap, roomName, epoch)
		}
		var err error
		l, err = roomlog.Restore(roomlog.Snapshot{Room: roomName, Epoch: epoch}, s.logConfig())
		if err != nil {
			return err
		}
		s.replicas[roomName] = l
	}
	return l.Apply(msg)
}

// SyncReplica replaces this node's replica of a room with a full copy.
func (s *Service) SyncReplica(snap roomlog.Snapshot) error {
	l, err := roomlog.Restore(snap, s.logConfig())
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replicas[snap.Room] = l
	return nil
}

// ForgetReplica drops this node's replica of a room.
func (s *Service) ForgetReplica(roomName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.replicas, roomName)
}

// SetReplicas tells an owned room which nodes replicate it now. New replicas
// get a full copy before they count; replicas that left stop counting, which
// may commit messages that were waiting for them.
func (s *Service) SetReplicas(roomName string, replicas []string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if slices.Equal(r.replicas, replicas) {
		return
	}
	if s.cfg.HasQuorum != nil && !s.cfg.HasQuorum() {
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
	r.svc.out.SyncReplica(rep, snap, func(err error) { r.onReplicated(rep, "sync", snap.Epoch, snap.Head, err) })
}

// ResyncReplica is called when a replica reported a gap: it gets a full copy.
func (s *Service) ResyncReplica(roomName, replica string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if slices.Contains(r.replicas, replica) {
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
// the snapshot carries everything acknowledged. send delivers the state and
// reports the outcome; on failure the room stays here, ready, and the
// cluster tries again on its next pass.
//
// A later call while the room still waits for pending messages (the
// cluster's next pass, or the new owner's claim) aims the handoff at its
// send instead, and once the wait has lasted drainLimit it stops waiting:
// the senders are told ErrMoving and the state goes now (see
// abandonPendingLocked). A replica that does not answer must not keep the
// room from its new owner, which holds requests meanwhile.
func (s *Service) HandOff(roomName string, send func(HandoffState, func(error))) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	start := func() { r.sendHandoff(send) }
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
	// Otherwise the room awaits its own handoff, or its state is on the way.
}

// drainLimit bounds how long a handoff waits for pending messages: half the
// new owner's grace, so the state normally reaches it before it asks the
// peers again.
func (s *Service) drainLimit() time.Duration { return s.cfg.HandoffGrace / 2 }

// abandonPendingLocked answers the senders of pending messages with err.
// The messages stay in the log, so the handoff state carries them and a
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

// sendHandoff sends the room's state with send and, once it is accepted,
// retires the room here. Callers hold r.mu.
func (r *room) sendHandoff(send func(HandoffState, func(error))) {
	s := r.svc
	st := HandoffState{Snapshot: r.log.Snapshot(), Nodes: make(map[string][]string, len(r.nodes))}
	for node, users := range r.nodes {
		st.Nodes[node] = slices.Collect(maps.Keys(users))
	}
	send(st, func(err error) {
		s.cfg.Observe.Handoff(true, err)
		r.mu.Lock()
		if err != nil && !errors.Is(err, ErrBehind) {
			r.svc.log.Warn("handoff failed; keeping the room", "room", r.name, "err", err)
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

// AcceptHandoff installs a room handed over by its previous owner. Requests
// held while waiting for it are applied in order.
func (s *Service) AcceptHandoff(st HandoffState) (err error) {
	defer func() { s.cfg.Observe.Handoff(false, err) }()
	l, err := roomlog.Restore(st.Snapshot, s.logConfig())
	if err != nil {
		return err
	}
	name := st.Snapshot.Room
	s.mu.Lock()
	r := s.rooms[name]
	if r == nil {
		r = s.newRoom(name, l)
		s.rooms[name] = r
		delete(s.replicas, name)
		s.mu.Unlock()
		r.mu.Lock()
		r.installNodes(st.Nodes)
		r.mu.Unlock()
		return nil
	}
	delete(s.replicas, name)
	s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	// Never trade acknowledged history for less of it: a node that was cut
	// off may hand over a room it started empty on its side of a partition.
	if r.committed > l.Head() || (r.log.Epoch() != l.Epoch() && r.committed == l.Head() && r.committed > 0) {
		s.log.Warn("handoff refused: local room is ahead", "room", name, "local_epoch", r.log.Epoch(), "local_head", r.committed, "epoch", l.Epoch(), "head", l.Head())
		return fmt.Errorf("room %s (%d ≥ %d): %w", name, r.committed, l.Head(), ErrBehind)
	}
	if r.log.Epoch() != l.Epoch() && r.committed > 0 {
		s.log.Warn("handoff replaces a room of another epoch", "room", name, "local_epoch", r.log.Epoch(), "local_head", r.committed, "epoch", l.Epoch(), "head", l.Head())
	}
	// Messages sequenced here but never committed were never acknowledged:
	// their senders are told to resend, and the incoming state wins.
	for _, p := range r.pending {
		for _, reply := range append(p.replies, p.dups...) {
			reply(protocol.Ack{}, ErrMoving)
		}
	}
	r.pending = nil
	r.afterDrain = nil
	oldEpoch, oldHead := r.log.Epoch(), r.committed
	r.log = l
	r.committed = l.Head()
	r.resyncAllLocked()
	r.installNodes(st.Nodes)
	r.catchUpNodesLocked(oldEpoch, oldHead)
	r.becomeReady()
	return nil
}

// catchUpNodesLocked pushes to every subscribed node what the handed-over
// log holds beyond the log it replaced (from oldHead in oldEpoch). Nodes that
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

// resyncAllLocked gives every replica a full copy after the log was
// replaced: what they acknowledged was another log, and otherwise they
// would learn of the handed-over history only when a later message showed
// the gap. Callers hold r.mu.
func (r *room) resyncAllLocked() {
	r.acked = make(map[string]uint64, len(r.replicas))
	clear(r.repair)
	r.stopRetryIfRepaired()
	for _, rep := range r.replicas {
		r.syncLocked(rep)
	}
}

// becomeReady ends a wait for a handoff and runs the held requests in order.
func (r *room) becomeReady() {
	if r.state != stateWaiting {
		return
	}
	r.stopWait()
	r.state = stateReady
	if len(r.repair) > 0 {
		r.scheduleRetryLocked() // paused while the room waited
	}
	held := r.held
	r.held = nil
	for _, f := range held {
		f()
	}
}

// Suspend puts every room this node serves back into a wait for a handoff
// and returns their names, for the caller to claim them from the peers
// (Config.OnAwait). The cluster calls it when this node regains a quorum: on
// the minority side of a partition its rooms took no message, but the
// majority may have taken some of them over from their replicas and gone on,
// so this node's copies may be stale. Until the peers have answered,
// requests are held and repairs paused; then a peer that holds a newer copy
// hands it over, or the wait ends and the room carries on from its own
// copy. claim is consulted again if the wait expires.
func (s *Service) Suspend(claim ClaimFunc) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, r := range s.rooms {
		r.mu.Lock()
		if !r.dead && r.state == stateReady {
			r.state = stateWaiting
			r.claim = claim
			r.stopRetry()
			r.startWaitTimer()
			names = append(names, name)
		}
		r.mu.Unlock()
	}
	return names
}

// startWaitTimer bounds a wait for a handoff (see waitExpired). The callback
// must ask the claim under the service's lock before it takes the room's,
// so it cannot check which timer it is under the room's lock first: a
// generation number, copied into the callback, tells it instead. Callers
// hold r.mu, or hold the only reference to r.
func (r *room) startWaitTimer() {
	r.waitGen++
	gen := r.waitGen
	r.waitTimer = time.AfterFunc(r.svc.cfg.HandoffGrace, func() { r.waitExpired(gen) })
}

func (r *room) stopWait() {
	r.waitGen++
	if r.waitTimer != nil {
		r.waitTimer.Stop()
		r.waitTimer = nil
	}
}

// waitExpired ends a grace without a handoff. When the claim still says a
// live peer may hold the room, it asks the peers again and waits another
// grace instead of starting the room: a wait outlives the grace only when a
// peer answered that it is handing the room over (peers that hold nothing
// answer at once and end the wait), and that peer's handoff may be held up
// by messages waiting for a replica. Starting without it would open the
// room from local state, which on a node that never had a copy is an empty
// room in a new epoch, and the acknowledged history would be lost to
// clients. Otherwise (no peer can hold it, or this node is no longer the
// owner and will hand it on) the room starts from what this node has.
func (r *room) waitExpired(gen uint64) {
	s := r.svc
	s.mu.Lock()
	_, hasReplica := s.replicas[r.name]
	claim := r.claim(r.name, hasReplica)
	s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.waitGen || r.state != stateWaiting || r.dead || s.closed.Load() {
		return
	}
	if claim == ClaimAwaitHandoff && s.cfg.OnAwait != nil {
		s.log.Warn("no handoff arrived yet; asking the peers again", "room", r.name)
		r.startWaitTimer()
		go s.cfg.OnAwait(r.name)
		return
	}
	s.log.Warn("no handoff arrived; starting the room from local state", "room", r.name, "head", r.log.Head())
	r.becomeReady()
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

// Close refuses further requests and stops the rooms' timers, replication
// retries and handoff waits included.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed.Store(true)
	for _, r := range s.rooms {
		r.mu.Lock()
		r.stopTimers()
		r.mu.Unlock()
	}
}

// EndWait ends a wait for a handoff that will not come (the previous owner
// confirmed it holds nothing): held requests run now.
func (s *Service) EndWait(roomName string) {
	r := s.lockHeld(roomName)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	r.becomeReady()
}

// ReleaseTo answers a new owner's claim on a room: when this node holds the
// room it hands it over now (even before its own view has caught up, since
// the claimant's view is newer) and reports true; otherwise it promises not
// to start the room for the grace period and reports false.
func (s *Service) ReleaseTo(roomName string, send func(HandoffState, func(error))) bool {
	s.mu.Lock()
	r := s.rooms[roomName]
	if r == nil {
		// Long enough for this node's view to catch up with the
		// claimant's, short enough not to block a later legitimate claim.
		s.relinquished[roomName] = s.cfg.Now().Add(min(s.cfg.HandoffGrace, relinquishFor))
		s.mu.Unlock()
		return false
	}
	s.mu.Unlock()
	s.HandOff(roomName, send)
	return true
}

// relinquishFor bounds the promise made by ReleaseTo.
const relinquishFor = 3 * time.Second
