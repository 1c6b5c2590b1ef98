package owner

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// Claiming a room. A node that becomes a room's owner in its view holds the
// room's requests (stateWaiting) while a claim loop, one goroutine per room
// being claimed, makes it the owner in fact:
//
//  1. When the room's previous owner is alive, it is asked first whether it
//     is handing the room over; if so the claim waits (up to HandoffGrace)
//     for its handoff notice, which comes once the previous owner has
//     committed what it had in flight, with the room's subscribers.
//  2. Every active and draining member is asked to promise a term above
//     any it has seen for the room. A member that owns the room in its own
//     view refuses (the views have not converged yet: the claim waits for
//     the next view change and asks again); one that promised a higher
//     term refuses with that term (the claim asks again above it); a member
//     that does not answer is asked again until it answers or leaves the
//     view. A member that held the room but no longer owns it in its view
//     retires it on the promise. With every promise in, the claimant starts
//     from the newest copy among its own and the members'
//     (roomlog.Newer), fetching what it lacks of it in chunks when another
//     member holds it. A room no answer holds a copy of starts afresh only
//     once enough members answered (Config.MinAnswers): its copies could
//     be on members that are down.
//  3. The room takes the term, its replicas are brought to its log in that
//     term, and the held requests run in order.

// startClaimLocked puts r into a claim: requests are held until the claim
// is done. knownTerm is a term the claim must go above (one a replica
// refused this node's writes with); askPrevious says whether a live previous
// owner is asked to hand the room over first. A node without peers claims
// at once. Callers hold s.mu and r.mu.
func (s *Service) startClaimLocked(r *room, knownTerm uint64, askPrevious bool) {
	r.state = stateWaiting
	r.claimGen++
	r.claimStart = s.cfg.Now()
	r.stateSince = r.claimStart
	r.waitingFor = "the claim to start"
	r.slowLogged = time.Time{}
	r.noticed = make(chan struct{})
	r.stopRetry()
	clear(r.syncs)
	if len(s.view.Peers()) == 0 && len(s.view.Newcomers()) == 0 && s.cfg.MinAnswers() <= 1 && s.view.HasQuorum() {
		// Alone, and a majority by itself (a one-node cluster, or no
		// expected size): nobody else can hold the room or write it. A node
		// alone in a bigger cluster waits in the loop for its quorum.
		term := s.nextTermLocked(r, knownTerm)
		r.finishClaimLocked(term)
		return
	}
	s.acquiring.Add(1)
	go s.claimLoop(r, r.claimGen, knownTerm, askPrevious)
}

// nextTermLocked picks the term of a new claim of r, above every term this
// node knows of, and promises it here (durably, with a store). Callers hold
// s.mu.
func (s *Service) nextTermLocked(r *room, known uint64) uint64 {
	t := max(s.promised[r.name], r.log.Term(), known) + 1
	s.promised[r.name] = t
	if s.cfg.Store != nil {
		if err := s.cfg.Store.Promise(r.name, t, nil); err != nil {
			s.log.Warn("could not store this node's own promise", "room", r.name, "term", t, "err", err)
		}
	}
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
// the room was claimed again, or retired) or the service closes. Its
// goroutine is counted in s.acquiring, which Close waits for.
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

// waitFor records what claim gen of r waits for now, unless the claim
// moved on.
func (r *room) waitFor(gen uint64, what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.currentLocked(gen) {
		r.waitingFor = what
	}
}

// current reports whether the claim gen of r is still the one to carry on.
func (r *room) current(gen uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.currentLocked(gen)
}

func (r *room) currentLocked(gen uint64) bool {
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
		r.waitFor(gen, "a quorum of the expected members in this node's view")
		return stepWait
	}
	if *askPrevious {
		*askPrevious = false
		if prev, alive := s.view.PreviousOwner(r.name); alive && prev != "" && prev != s.cfg.Self {
			r.waitFor(gen, "the previous owner "+prev+" to answer whether it hands the room over")
			rep, err := s.claimOne(prev, ClaimRequest{Room: r.name})
			if err == nil && rep.Handing {
				r.waitFor(gen, "the handoff notice of the previous owner "+prev)
			}
			if err == nil && rep.Handing && !s.waitNotice(r, gen) {
				s.log.Warn("no handoff notice arrived in time; claiming the room from every member", "room", r.name, "previous_owner", prev)
			}
			if !r.current(gen) {
				return stepDone
			}
		}
	}

	s.mu.Lock()
	r.mu.Lock()
	if !r.currentLocked(gen) {
		r.mu.Unlock()
		s.mu.Unlock()
		return stepDone
	}
	term := s.nextTermLocked(r, *knownTerm)
	own := copyInfo(r.log)
	ownHolds := r.log.Head() > 0 || r.log.Term() > 0
	r.mu.Unlock()
	s.mu.Unlock()

	peers, newcomers := s.view.Peers(), s.view.Newcomers()
	r.waitFor(gen, fmt.Sprintf("promises of term %d from %v", term, peers))
	replies := s.claimAll(peers, newcomers, ClaimRequest{Room: r.name, Promise: true, Term: term})
	all := append(slices.Clone(peers), newcomers...)
	best, bestPeer := *own, ""
	answered, anyCopy := 1, ownHolds
	var holders []string
	for i, res := range replies {
		newcomer := i >= len(peers)
		if newcomer && (res.err != nil || res.rep.Refused != "") {
			continue // a newcomer that did not answer in time, or refused
		}
		switch {
		case res.err == nil && res.rep.Refused == "":
		case res.err == nil && res.rep.Refused == refusedStale:
			*knownTerm = max(*knownTerm, res.rep.Promised)
			s.log.Debug("claim refused: a higher term is promised", "room", r.name, "peer", all[i], "term", term, "promised", res.rep.Promised)
			return stepRetry
		default:
			why := res.rep.Refused
			if res.err != nil {
				why = res.err.Error()
			}
			s.log.Debug("claim not granted yet; asking again", "room", r.name, "peer", all[i], "term", term, "why", why)
			r.waitFor(gen, fmt.Sprintf("%s to grant term %d (it answered: %s)", all[i], term, why))
			return stepWait
		}
		answered++
		if c := res.rep.Copy; c != nil {
			anyCopy = true
			holders = append(holders, all[i])
			if roomlog.Newer(c.Term, c.Head, best.Term, best.Head) {
				best, bestPeer = *c, all[i]
			}
		}
	}
	// With a store, the members that are down keep their copies and come
	// back with them: the newest copy may be among them unless enough
	// members answered to meet every set of R copies. Without one, a member
	// that is down lost its copies with its memory; waiting for it would
	// keep a room whose every copy died from starting afresh (the loss is
	// done), so the claim goes on with what the majority holds.
	if s.cfg.Store != nil && answered < s.cfg.MinAnswers() {
		s.log.Info("too few members answered to be sure the newest copy of the room is among them; waiting for more", "room", r.name, "answered", answered, "needed", s.cfg.MinAnswers(), "copy_found", anyCopy)
		r.waitFor(gen, fmt.Sprintf("%d members to answer (%d did)", s.cfg.MinAnswers(), answered))
		return stepWait
	}
	var nodes map[string][]string
	if bestPeer != "" {
		var err error
		if nodes, err = s.fetchCopy(r, gen, bestPeer, term, best); err != nil {
			if !r.current(gen) {
				return stepDone
			}
			s.log.Warn("could not fetch the newest copy of a room; claiming again", "room", r.name, "from", bestPeer, "err", err)
			r.waitFor(gen, fmt.Sprintf("the newest copy from %s (fetch failed: %v)", bestPeer, err))
			return stepWait
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.currentLocked(gen) {
		return stepDone
	}
	if s.promised[r.name] != term {
		// A write of a newer term reached this node meanwhile.
		*knownTerm = max(*knownTerm, s.promised[r.name])
		return stepRetry
	}
	r.installNodes(nodes)
	for _, h := range holders {
		r.markStaleLocked(h) // current replicas among them are skipped when told
	}
	if bestPeer != "" {
		s.log.Info("room claimed from another node's copy", "room", r.name, "from", bestPeer, "term", term, "epoch", r.log.Epoch(), "head", r.log.Head())
	}
	r.finishClaimLocked(term)
	return stepDone
}

// fetchCopy brings r's log to peer's copy (the newest, described by want),
// chunk by chunk, and returns the room's subscribers when peer owned it.
// Messages this node had sequenced but not committed and that the fetched
// copy does not keep were never acknowledged: their senders are told to
// resend, which the new log's dedupe window answers when it holds them.
func (s *Service) fetchCopy(r *room, gen uint64, peer string, term uint64, want CopyInfo) (map[string][]string, error) {
	r.mu.Lock()
	have := r.log.Meta()
	r.mu.Unlock()
	req := FetchRequest{Room: r.name, Term: term, Have: &have}
	var nodes map[string][]string
	for first := true; ; first = false {
		rep, err := s.fetch(peer, req)
		if err != nil {
			return nil, err
		}
		if first && (rep.Meta.Epoch != want.Epoch || rep.Meta.Term != want.Term || rep.Meta.Head < want.Head) {
			return nil, fmt.Errorf("fetched copy is epoch %s term %d head %d, promised epoch %s term %d head %d",
				rep.Meta.Epoch, rep.Meta.Term, rep.Meta.Head, want.Epoch, want.Term, want.Head)
		}
		if rep.Nodes != nil {
			nodes = rep.Nodes
		}
		r.mu.Lock()
		if !r.currentLocked(gen) {
			r.mu.Unlock()
			return nil, errors.New("claim superseded")
		}
		err = r.applyFetchedLocked(rep, first)
		after := r.log.Head()
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if !rep.More {
			return nodes, nil
		}
		req = FetchRequest{Room: r.name, Term: term, After: after}
	}
}

// applyFetchedLocked applies one fetched chunk to r's log: on the first, cut
// or restart the log where it departs from the fetched copy. Callers hold
// r.mu.
func (r *room) applyFetchedLocked(rep FetchReply, first bool) error {
	durable := r.durableDone()
	if first {
		oldEpoch, oldHead := r.log.Epoch(), r.committed
		var err error
		if rep.Reset {
			start := rep.Meta
			start.Head = rep.Meta.Oldest - 1
			err = r.log.Reset(start, nil)
		} else {
			err = r.log.TruncateAfter(rep.Keep, nil)
		}
		if err == nil {
			// The event stream goes on from the furthest cursor of the
			// epoch (the fetched copy's may be ahead of this one's).
			err = r.log.AdoptStreamed(rep.Meta.Epoch, rep.Meta.Streamed)
		}
		if err != nil {
			return fmt.Errorf("start from the fetched copy: %w", err)
		}
		sameEpoch := oldEpoch == r.log.Epoch()
		if r.log.Head() < r.committed || !sameEpoch {
			r.committed = r.log.Head()
		}
		r.keepPendingUpTo(r.log.Head(), sameEpoch)
		r.fetchedFrom = &fetchStart{epoch: oldEpoch, head: oldHead}
		if !sameEpoch && oldHead > 0 {
			// Nodes following the replaced epoch learn of the new one from
			// the first message they get of it.
			r.committed = 0
		}
	}
	var done func(error)
	if r.svc.cfg.Store != nil {
		// Without a store the log is durable as soon as written (and done
		// would run here, under the lock onDurable takes).
		done = durable(lastSeq(rep.Entries))
	}
	if err := r.log.AppendEntries(rep.Entries, done); err != nil {
		return fmt.Errorf("append the fetched chunk: %w", err)
	}
	if err := r.log.SetTerm(rep.Meta.Term, nil); err != nil {
		return err
	}
	return nil
}

// fetchStart remembers the log a fetch replaced.
type fetchStart struct {
	epoch string
	head  uint64
}

func lastSeq(entries []roomlog.Entry) uint64 {
	if len(entries) == 0 {
		return 0
	}
	return entries[len(entries)-1].Msg.Seq
}

// durableDone returns a constructor of done callbacks that mark r's log
// durable up to a sequence number once the store says so.
func (r *room) durableDone() func(seq uint64) func(error) {
	return func(seq uint64) func(error) {
		return func(err error) {
			if err == nil && seq > 0 {
				r.onDurable(seq, nil)
			}
		}
	}
}

// keepPendingUpTo drops the pending messages a fetched copy replaced —
// those above seq, or all of them when the copy is of another epoch —
// telling their senders to resend. Callers hold r.mu.
func (r *room) keepPendingUpTo(seq uint64, sameEpoch bool) {
	n := len(r.pending)
	for n > 0 && (!sameEpoch || r.pending[n-1].msg.Seq > seq) {
		n--
	}
	for _, p := range r.pending[n:] {
		for _, reply := range append(p.replies, p.dups...) {
			reply(protocol.Ack{}, ErrMoving)
		}
	}
	clear(r.pending[n:])
	r.pending = r.pending[:n]
}

// finishClaimLocked ends a claim: the room takes term, its log answers
// resends (dedupe rebuilt), every replica is brought to the log in that
// term, and the held requests run. Callers hold r.mu (and s.mu, or the
// only reference to r).
func (r *room) finishClaimLocked(term uint64) {
	s := r.svc
	r.term = term
	if err := r.log.SetTerm(term, nil); err != nil {
		s.log.Warn("could not store the room's new term", "room", r.name, "term", term, "err", err)
	}
	if err := r.log.Promote(); err != nil {
		s.log.Warn("could not rebuild the dedupe window", "room", r.name, "err", err)
	}
	r.claimGen++
	if r.notice != nil {
		r.installNodes(r.notice.Nodes)
		r.notice = nil
	}
	fetched := r.fetchedFrom != nil
	r.fetchedFrom = nil
	r.committed = min(r.committed, r.log.Head())
	r.replicas = s.view.Replicas(r.name)
	s.cfg.Observe.Claimed(s.cfg.Now().Sub(r.claimStart), fetched)
	// Settle: the held requests run once every replica holds the log in
	// this term (commitLocked ends it); inherited messages are fanned out
	// then.
	r.state = stateSettling
	r.stateSince = s.cfg.Now()
	r.slowLogged = time.Time{}
	r.settleHead = r.log.Head()
	r.resyncAllLocked()
	r.commitLocked(r.replicatedUpTo())
}

// waitNotice waits for the previous owner's handoff notice of r, at most
// HandoffGrace. It reports whether the notice came (or the claim ended).
func (s *Service) waitNotice(r *room, gen uint64) bool {
	r.mu.Lock()
	ch := r.noticed
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
// leaves the owned set, and its log stays as a copy for whoever claims the
// room next. Callers hold s.mu and r.mu.
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
			s.replicaUsed[r.name] = s.cfg.Now()
		}
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
	// Pending messages were not acknowledged and may never be: their
	// senders retry, and a resend is answered from whichever log the
	// claim keeps. They stay pending, without senders, in case this node's
	// copy stays.
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

// fetch asks peer for a chunk of its copy of a room and waits for it.
func (s *Service) fetch(peer string, req FetchRequest) (FetchReply, error) {
	type result struct {
		rep FetchReply
		err error
	}
	ch := make(chan result, 1)
	s.out.Fetch(peer, req, func(rep FetchReply, err error) { ch <- result{rep, err} })
	select {
	case res := <-ch:
		return res.rep, res.err
	case <-s.done:
		return FetchReply{}, ErrClosed
	}
}

// Refusal reasons of a claim (ClaimReply.Refused).
const (
	refusedStale     = "stale_term"
	refusedOwned     = "owned"
	refusedNotMember = "not_member"
	refusedNoQuorum  = "no_quorum"
)

// HandleClaim answers another node's claim of a room (see ClaimRequest),
// once a granted promise is durable. A claim from a node this one does not
// count as a live member is refused: a node declared dead must rejoin
// before it claims anything.
func (s *Service) HandleClaim(from string, req ClaimRequest, reply func(ClaimReply)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.view.Alive(from) {
		reply(ClaimReply{Refused: refusedNotMember, Promised: s.promised[req.Room]})
		return
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
			reply(ClaimReply{Refused: refusedOwned})
		case r != nil && (r.state == stateReady || r.state == stateMoving):
			// This node holds the room but no longer owns it in its view:
			// it hands it over now, even if its own pass over the view has
			// not come to it yet.
			s.handOffRoomLocked(r, from)
			reply(ClaimReply{Handing: true})
		case r != nil:
			// Being claimed or settling here: it never served in its
			// current term, so it has nothing in flight to hand over and
			// no notice would come (handOffRoomLocked leaves such a room
			// alone). The claimant asks every member at once instead; its
			// promise retires the room here.
			reply(ClaimReply{})
		default:
			// Long enough for this node's view to catch up with the
			// claimant's, short enough not to block a later legitimate claim.
			s.relinquished[req.Room] = s.cfg.Now().Add(min(s.cfg.HandoffGrace, relinquishFor))
			reply(ClaimReply{})
		}
		return
	}
	if !s.view.HasQuorum() {
		reply(ClaimReply{Refused: refusedNoQuorum, Promised: s.promised[req.Room]})
		return
	}
	p := s.promised[req.Room]
	if req.Term <= p {
		reply(ClaimReply{Refused: refusedStale, Promised: p})
		return
	}
	if ownedHere {
		reply(ClaimReply{Refused: refusedOwned, Promised: p})
		return
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
	l, err := s.copyLocked(req.Room)
	if err != nil {
		s.log.Warn("could not load this node's copy for a claim", "room", req.Room, "err", err)
	}
	if l != nil {
		rep.Copy = copyInfo(l)
	}
	if s.cfg.Store == nil {
		reply(rep)
		return
	}
	if err := s.cfg.Store.Promise(req.Room, req.Term, func(err error) {
		if err != nil {
			reply(ClaimReply{Refused: refusedNoQuorum, Promised: req.Term})
			return
		}
		reply(rep)
	}); err != nil {
		s.log.Warn("could not store a promise; refusing the claim", "room", req.Room, "term", req.Term, "err", err)
		reply(ClaimReply{Refused: refusedNoQuorum, Promised: req.Term})
	}
}

// HandleFetch answers a claimant that was promised req.Term for a room and
// found this node's copy the newest, with a chunk of it: on the first
// request, from where the claimant's own copy departs from it, with the
// room's subscribers when this node owned it until the claim.
func (s *Service) HandleFetch(req FetchRequest) (FetchReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.promised[req.Room]; p != req.Term {
		return FetchReply{}, &StaleTermError{Room: req.Room, Promised: p}
	}
	l, err := s.copyLocked(req.Room)
	if err != nil {
		return FetchReply{}, err
	}
	if l == nil {
		return FetchReply{}, fmt.Errorf("room %s: no copy here", req.Room)
	}
	rep := FetchReply{Meta: l.Meta()}
	from := req.After + 1
	if req.Have != nil {
		rep.Keep, rep.Reset = roomlog.Match(*req.Have, rep.Meta)
		from = rep.Keep + 1
		if rep.Reset {
			from = rep.Meta.Oldest
		}
		rep.Nodes = s.retired[req.Room]
	}
	if from <= rep.Meta.Head {
		if rep.Entries, err = l.Read(from, s.cfg.ChunkSize); err != nil {
			return FetchReply{}, err
		}
	}
	rep.More = lastSeq(rep.Entries) < rep.Meta.Head && len(rep.Entries) > 0
	if !rep.More {
		delete(s.retired, req.Room)
	}
	return rep, nil
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
// newer copy has had it fetched, or the room carries on from its own copy
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

// Recommit commits, in every room served or settling here, what its
// replicas have acknowledged. A node calls it once it is verified again
// (Config.Verified): acknowledgements that arrived while it was not were
// recorded but committed nothing, and a room that was settling (Suspend
// leaves its claim alone) would otherwise wait for an acknowledgement that
// already came, holding its requests for good.
func (s *Service) Recommit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rooms {
		r.mu.Lock()
		if !r.dead && r.state != stateWaiting {
			r.commitLocked(r.replicatedUpTo())
		}
		r.mu.Unlock()
	}
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
