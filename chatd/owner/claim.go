package owner

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/roomlog"
)

// Claiming a room. A node that becomes a room's owner in its view holds the
// room's requests (stateWaiting) while a claim loop, one goroutine per room
// being claimed, makes it the owner in fact:
//
//  1. When the room's previous owner is alive, it is asked first whether it
//     is handing the room over; if so the claim waits (up to HandoffGrace)
//     for that handoff, which brings the room with its subscribers and
//     lets the previous owner commit what it had in flight. The previous
//     owner retires the room itself, so no term round is needed.
//  2. Otherwise every live member is asked to promise a term above any it
//     has seen for the room. A member that owns the room in its own view
//     refuses (the views have not converged yet: the claim waits for the
//     next view change and asks again); one that promised a higher term
//     refuses with that term (the claim asks again above it); a member
//     that does not answer is asked again until it answers or leaves the
//     view. With every promise in, the claimant starts from the newest copy
//     among its own and the members' (roomlog.Newer), fetching it first
//     when another member holds it.
//  3. The room takes the term, its replicas get a full copy in that term,
//     and the held requests run in order.

// startClaimLocked puts r into a claim: requests are held until the claim
// is done. knownTerm is a term the claim must go above (one a replica
// refused this node's writes with); askPrevious says whether a live previous
// owner is asked to hand the room over first. A node without peers claims
// at once. Callers hold s.mu and r.mu.
func (s *Service) startClaimLocked(r *room, knownTerm uint64, askPrevious bool) {
	r.state = stateWaiting
	r.claimGen++
	r.claimStart = s.cfg.Now()
	r.handedIn = make(chan struct{})
	r.stopRetry()
	if len(s.view.Peers()) == 0 {
		// Alone: nobody else can hold the room or write it.
		term := s.nextTermLocked(r, knownTerm)
		r.finishClaimLocked(term, nil)
		return
	}
	s.acquiring.Add(1)
	go s.claimLoop(r, r.claimGen, knownTerm, askPrevious)
}

// nextTermLocked picks the term of a new claim of r, above every term this
// node knows of, and promises it here. Callers hold s.mu.
func (s *Service) nextTermLocked(r *room, known uint64) uint64 {
	t := max(s.promised[r.name], r.log.Term(), known) + 1
	s.promised[r.name] = t
	return t
}

// claimStep is the outcome of one attempt of a claim loop.
type claimStep int

const (
	stepDone  claimStep = iota // the claim finished, or was superseded
	stepRetry                  // ask again at once (a higher term is known)
	stepWait                   // ask again after the view changes (or a pause)
)

// claimLoop runs one claim of r until it is done, superseded (gen changed:
// the room was claimed again, handed in, or retired) or the service closes.
// Its goroutine is counted in s.acquiring, which Close waits for.
func (s *Service) claimLoop(r *room, gen, knownTerm uint64, askPrevious bool) {
	defer s.acquiring.Done()
	for {
		changed := s.view.Changed()
		step := s.claimAttempt(r, gen, &knownTerm, &askPrevious)
		switch step {
		case stepDone:
			return
		case stepRetry:
			continue
		}
		t := time.NewTimer(s.cfg.ClaimRetry)
		select {
		case <-s.done:
			t.Stop()
			return
		case <-changed:
			t.Stop()
		case <-t.C:
		}
	}
}

// current reports whether the claim gen of r is still the one to carry on.
func (r *room) current(gen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.dead && r.claimGen == gen && r.state == stateWaiting && !r.svc.closed.Load()
}

func (s *Service) claimAttempt(r *room, gen uint64, knownTerm *uint64, askPrevious *bool) claimStep {
	if !r.current(gen) {
		return stepDone
	}
	if s.view.Owner(r.name) != s.cfg.Self {
		s.giveUpClaim(r, gen)
		return stepDone
	}
	if !s.view.HasQuorum() {
		return stepWait
	}
	if *askPrevious {
		*askPrevious = false
		if prev, alive := s.view.PreviousOwner(r.name); alive && prev != "" && prev != s.cfg.Self {
			rep, err := s.claimOne(prev, ClaimRequest{Room: r.name})
			if err == nil && rep.Handing {
				if s.waitHandoff(r, gen) {
					return stepDone
				}
				s.log.Warn("no handoff arrived in time; claiming the room from every member", "room", r.name, "previous_owner", prev)
			}
		}
	}

	s.mu.Lock()
	r.mu.Lock()
	if r.dead || r.claimGen != gen {
		r.mu.Unlock()
		s.mu.Unlock()
		return stepDone
	}
	term := s.nextTermLocked(r, *knownTerm)
	own := CopyInfo{Epoch: r.log.Epoch(), Term: r.log.Term(), Head: r.log.Head()}
	r.mu.Unlock()
	s.mu.Unlock()

	peers, newcomers := s.view.Peers(), s.view.Newcomers()
	replies := s.claimAll(peers, newcomers, ClaimRequest{Room: r.name, Promise: true, Term: term})
	peers = append(peers, newcomers...)
	best, bestPeer := own, ""
	for i, res := range replies {
		if i >= len(peers)-len(newcomers) && (res.err != nil || res.rep.Refused != "") {
			continue // a newcomer that did not answer in time, or refused: it holds nothing of use
		}
		switch {
		case res.err == nil && res.rep.Refused == "":
		case res.err == nil && res.rep.Refused == refusedStale:
			*knownTerm = max(*knownTerm, res.rep.Promised)
			s.log.Debug("claim refused: a higher term is promised", "room", r.name, "peer", peers[i], "term", term, "promised", res.rep.Promised)
			return stepRetry
		default:
			why := res.rep.Refused
			if res.err != nil {
				why = res.err.Error()
			}
			s.log.Debug("claim not granted yet; asking again", "room", r.name, "peer", peers[i], "term", term, "why", why)
			return stepWait
		}
		if c := res.rep.Copy; c != nil && roomlog.Newer(c.Term, c.Head, best.Term, best.Head) {
			best, bestPeer = *c, peers[i]
		}
	}
	var fetched *HandoffState
	if bestPeer != "" {
		st, err := s.fetch(bestPeer, r.name, term)
		if err != nil {
			s.log.Warn("could not fetch the newest copy of a room; claiming again", "room", r.name, "from", bestPeer, "err", err)
			return stepWait
		}
		if st.Snapshot.Epoch != best.Epoch || st.Snapshot.Term != best.Term || st.Snapshot.Head < best.Head {
			s.log.Warn("fetched copy is not the one promised; claiming again", "room", r.name, "from", bestPeer,
				"want_epoch", best.Epoch, "want_term", best.Term, "want_head", best.Head, "got_epoch", st.Snapshot.Epoch, "got_term", st.Snapshot.Term, "got_head", st.Snapshot.Head)
			return stepWait
		}
		fetched = &st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || r.claimGen != gen || r.state != stateWaiting {
		return stepDone
	}
	if s.promised[r.name] != term {
		// A write of a newer term reached this node meanwhile.
		*knownTerm = max(*knownTerm, s.promised[r.name])
		return stepRetry
	}
	if fetched != nil {
		if err := r.installLocked(*fetched); err != nil {
			s.log.Error("fetched copy does not restore; claiming again", "room", r.name, "from", bestPeer, "err", err)
			return stepWait
		}
	}
	r.finishClaimLocked(term, fetched)
	return stepDone
}

// installLocked replaces r's log with st's (a fetched or handed-over copy)
// and adds its subscribers. Messages this node had sequenced but not
// committed were never acknowledged: their senders are told to resend,
// which the new log's dedupe window answers when it holds them. Callers
// hold r.mu.
func (r *room) installLocked(st HandoffState) error {
	l, err := roomlog.Restore(st.Snapshot, r.svc.logConfig())
	if err != nil {
		return err
	}
	r.abandonPendingLocked(ErrMoving)
	r.pending = nil
	r.afterDrain = nil
	oldEpoch, oldHead := r.log.Epoch(), r.committed
	r.log = l
	r.committed = l.Head()
	r.installNodes(st.Nodes)
	r.catchUpNodesLocked(oldEpoch, oldHead)
	return nil
}

// finishClaimLocked ends a claim: the room takes term, every replica gets a
// full copy in it, and the held requests run. Callers hold r.mu (and s.mu,
// or the only reference to r).
func (r *room) finishClaimLocked(term uint64, fetched *HandoffState) {
	s := r.svc
	r.term = term
	r.log.SetTerm(term)
	r.claimGen++
	r.replicas = s.view.Replicas(r.name)
	r.resyncAllLocked()
	s.cfg.Observe.Claimed(s.cfg.Now().Sub(r.claimStart), fetched != nil)
	if fetched != nil {
		s.log.Info("room claimed from another node's copy", "room", r.name, "term", term, "epoch", r.log.Epoch(), "head", r.log.Head())
	}
	r.becomeReady()
	if r.handedIn != nil {
		close(r.handedIn)
		r.handedIn = nil
	}
}

// waitHandoff waits for the previous owner's handoff of r, at most
// HandoffGrace. It reports true when the claim is over (the handoff landed,
// the claim was superseded, or the service closed).
func (s *Service) waitHandoff(r *room, gen uint64) bool {
	r.mu.Lock()
	ch := r.handedIn
	r.mu.Unlock()
	if ch == nil {
		return true
	}
	t := time.NewTimer(s.cfg.HandoffGrace)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-s.done:
		return true
	case <-t.C:
		return !r.current(gen)
	}
}

// giveUpClaim ends a claim of a room this node no longer owns in its view:
// the held requests are refused with ErrNotOwner (their routers retry at the
// owner) and the room's log goes back to being a replica copy, which the new
// owner may fetch.
func (s *Service) giveUpClaim(r *room, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || r.claimGen != gen {
		return
	}
	s.log.Info("stopped claiming a room this node no longer owns", "room", r.name)
	r.retireLocked(ErrNotOwner)
}

// retireLocked stops serving r: held and pending requests get err, the room
// leaves the owned set, and its log stays as a replica copy for whoever
// claims the room next. Callers hold s.mu and r.mu.
func (r *room) retireLocked(err error) {
	s := r.svc
	r.dead = true
	r.stopTimers()
	r.abandonPendingLocked(err)
	held := r.held
	r.held = nil
	for _, h := range held {
		h.fail(err)
	}
	if s.rooms[r.name] == r {
		delete(s.rooms, r.name)
	}
	if r.log.Head() > 0 || r.log.Term() > 0 {
		if l, ok := s.replicas[r.name]; !ok || roomlog.Newer(r.log.Term(), r.log.Head(), l.Term(), l.Head()) {
			s.replicas[r.name] = r.log
		}
	}
	if r.handedIn != nil {
		close(r.handedIn)
		r.handedIn = nil
	}
}

// fencedLocked gives up a room whose replica refused this node's write
// because another node holds a newer term, or because the replica does not
// count this node as a member (it was declared dead): this node's ownership
// is stale, whatever its own view says. Messages in flight were never
// acknowledged; their senders retry. When this node still owns the room in
// its view, it claims the room again (above the refused term), which only
// succeeds once the other members agree. Callers hold r.mu.
func (r *room) fencedLocked(replica string, err error) {
	s := r.svc
	known := uint64(0)
	var ste *StaleTermError
	if errors.As(err, &ste) {
		known = ste.Promised
	}
	s.cfg.Observe.Fenced()
	s.log.Warn("fenced: a replica refused this node's write of the room; giving it up and claiming it again",
		"room", r.name, "replica", replica, "term", r.term, "promised_there", known, "err", err)
	// Pending messages were not acknowledged and may never be: their senders
	// retry, and a resend is answered from whichever log the claim keeps.
	// They stay pending, without senders, in case this node's copy stays.
	r.abandonPendingLocked(ErrMoving)
	// s.mu must be taken before r.mu: restart the claim from a goroutine.
	// Meanwhile the room holds requests under a generation no loop runs.
	r.state = stateWaiting
	r.claimGen++
	gen := r.claimGen
	go func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.dead || r.claimGen != gen || s.closed.Load() {
			return
		}
		s.startClaimLocked(r, known, false)
	}()
}

// claimResult is one member's answer to a claim.
type claimResult struct {
	rep ClaimReply
	err error
}

// claimOne asks one member and waits for its answer.
func (s *Service) claimOne(peer string, req ClaimRequest) (ClaimReply, error) {
	res := s.claimAll([]string{peer}, nil, req)
	return res[0].rep, res[0].err
}

// errNoAnswerYet marks a newcomer that had not answered when the required
// members had.
var errNoAnswerYet = errors.New("no answer yet")

// claimAll asks every peer and newcomer at once and waits for every peer's
// answer (each is bounded by the transport's call timeout), or for Close.
// The results are in the order of peers then newcomers; a newcomer that has
// not answered by then counts as errNoAnswerYet.
func (s *Service) claimAll(peers, newcomers []string, req ClaimRequest) []claimResult {
	all := append(slices.Clone(peers), newcomers...)
	out := make([]claimResult, len(all))
	var mu sync.Mutex
	answered := make([]bool, len(all))
	ch := make(chan int, len(all))
	for i, p := range all {
		s.out.Claim(p, req, func(rep ClaimReply, err error) {
			mu.Lock()
			out[i], answered[i] = claimResult{rep, err}, true
			mu.Unlock()
			ch <- i
		})
	}
	for need := len(peers); need > 0; {
		select {
		case i := <-ch:
			if i < len(peers) {
				need--
			}
		case <-s.done:
			need = 0
		}
	}
	mu.Lock()
	defer mu.Unlock()
	res := slices.Clone(out)
	for i := range res {
		if !answered[i] {
			res[i].err = errNoAnswerYet
			if i < len(peers) {
				res[i].err = ErrClosed
			}
		}
	}
	return res
}

// fetch asks peer for its copy of a room and waits for it.
func (s *Service) fetch(peer, room string, term uint64) (HandoffState, error) {
	type result struct {
		st  HandoffState
		err error
	}
	ch := make(chan result, 1)
	s.out.Fetch(peer, room, term, func(st HandoffState, err error) { ch <- result{st, err} })
	select {
	case res := <-ch:
		return res.st, res.err
	case <-s.done:
		return HandoffState{}, ErrClosed
	}
}

// Refusal reasons of a claim (ClaimReply.Refused).
const (
	refusedStale     = "stale_term"
	refusedOwned     = "owned"
	refusedNotMember = "not_member"
	refusedNoQuorum  = "no_quorum"
)

// HandleClaim answers another node's claim of a room (see ClaimRequest). A
// claim from a node this one does not count as a live member is refused: a
// node declared dead must rejoin before it claims anything.
func (s *Service) HandleClaim(from string, req ClaimRequest) ClaimReply {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.view.Alive(from) {
		return ClaimReply{Refused: refusedNotMember, Promised: s.promised[req.Room]}
	}
	r := s.rooms[req.Room]
	if r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.dead {
			r = nil
		}
	}
	ownedHere := r != nil && s.view.Owner(req.Room) == s.cfg.Self
	if !req.Promise {
		switch {
		case ownedHere:
			return ClaimReply{Refused: refusedOwned}
		case r != nil:
			// This node holds the room but no longer owns it in its view:
			// it hands it over now, even if its own pass over the view has
			// not come to it yet.
			s.handOffLocked(r, from)
			return ClaimReply{Handing: true}
		default:
			// Long enough for this node's view to catch up with the
			// claimant's, short enough not to block a later legitimate claim.
			s.relinquished[req.Room] = s.cfg.Now().Add(min(s.cfg.HandoffGrace, relinquishFor))
			return ClaimReply{}
		}
	}
	if !s.view.HasQuorum() {
		return ClaimReply{Refused: refusedNoQuorum, Promised: s.promised[req.Room]}
	}
	p := s.promised[req.Room]
	if req.Term <= p {
		return ClaimReply{Refused: refusedStale, Promised: p}
	}
	if ownedHere {
		return ClaimReply{Refused: refusedOwned, Promised: p}
	}
	s.promised[req.Room] = req.Term
	rep := ClaimReply{Promised: req.Term}
	if r != nil {
		// This node holds the room but another owns it now, and claims
		// it above every term this node knew: stop serving it at once.
		s.log.Info("room retired: another node claimed it with a newer term", "room", req.Room, "claimant", from, "term", req.Term, "our_term", r.term)
		s.retired[req.Room] = r.subscribersLocked()
		r.retireLocked(ErrMoving)
		rep.Handing = true
	}
	if l := s.replicas[req.Room]; l != nil {
		rep.Copy = &CopyInfo{Epoch: l.Epoch(), Term: l.Term(), Head: l.Head()}
	}
	return rep
}

// HandleFetch answers a claimant that was promised term for a room and
// found this node's copy the newest: the copy, and the room's subscribers
// when this node owned it until the claim.
func (s *Service) HandleFetch(room string, term uint64) (HandoffState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.promised[room]; p != term {
		return HandoffState{}, &StaleTermError{Room: room, Promised: p}
	}
	l := s.replicas[room]
	if l == nil {
		return HandoffState{}, fmt.Errorf("room %s: no copy here", room)
	}
	st := HandoffState{Snapshot: l.Snapshot(), Nodes: s.retired[room]}
	delete(s.retired, room)
	return st, nil
}

// subscribersLocked copies r's subscribed nodes and their users. Callers
// hold r.mu.
func (r *room) subscribersLocked() map[string][]string {
	nodes := make(map[string][]string, len(r.nodes))
	for node, users := range r.nodes {
		nodes[node] = slices.Collect(maps.Keys(users))
	}
	return nodes
}

// Suspend puts every room this node serves back into a claim and returns
// their names. The cluster calls it when this node regains a quorum (on the
// minority side its rooms took no message, but the majority may have taken
// some of them over from their replicas and gone on) and when it notices it
// was paused or suspected by the others (its view may be stale, and others
// may own its rooms now). Until the claim is done, requests are held,
// nothing is acknowledged and repairs are paused; then a member holding a
// newer copy has handed it over, or the room carries on from its own copy
// in a new term.
func (s *Service) Suspend() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for name, r := range s.rooms {
		r.mu.Lock()
		if !r.dead && r.state == stateReady {
			s.startClaimLocked(r, 0, false)
			names = append(names, name)
		}
		r.mu.Unlock()
	}
	return names
}

// StaleTermError is a write or fetch refused because the node promised a
// newer term for the room. It matches ErrStaleTerm.
type StaleTermError struct {
	Room     string
	Promised uint64
}

func (e *StaleTermError) Error() string {
	return fmt.Sprintf("room %s: stale ownership term (term %d is promised here)", e.Room, e.Promised)
}

// Is makes errors.Is(err, ErrStaleTerm) true.
func (e *StaleTermError) Is(target error) bool { return target == ErrStaleTerm }

// relinquishFor bounds the promise a node without a room makes to a
// claimant that asked whether it is handing the room over.
const relinquishFor = 3 * time.Second
