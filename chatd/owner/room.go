package owner

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

type roomState int

const (
	// stateReady: the room takes requests.
	stateReady roomState = iota
	// stateWaiting: this node became the owner and claims the room (waits
	// for the previous owner's handoff, or asks every member to promise
	// its term and fetches the newest copy); requests are held and applied
	// in order afterwards.
	stateWaiting
	// stateMoving: the room is being handed to another node; requests are
	// refused with ErrMoving so senders retry at the new owner.
	stateMoving
	// stateSettling: the claim is done (the room has its term) and the
	// replicas are being brought to the log in that term; requests are
	// still held, and run once every replica holds what the log held when
	// the claim ended (messages sequenced by earlier owners are shown only
	// once they are stored on every copy of the new term).
	stateSettling
)

// PublishReply receives the outcome of a publish: the ack, or an error.
type PublishReply func(protocol.Ack, error)

type pending struct {
	at      time.Time
	msg     protocol.Message
	replies []PublishReply
	dups    []PublishReply
}

// heldRequest is a request that arrived while the room was being claimed:
// run when the claim is done, fail when the room is given up instead.
type heldRequest struct {
	run  func()
	fail func(error)
}

// room is a room this node owns. Every field is guarded by mu.
type room struct {
	svc  *Service
	name string

	mu    sync.Mutex
	state roomState
	dead  bool
	held  []heldRequest
	log   *roomlog.Log
	// term is this node's ownership term of the room, valid once the
	// claim is done (0 while the room waits for it).
	term uint64

	// Replication: a message is committed (fanned out and acked) once it
	// is durable here and every current replica has acknowledged it.
	// syncs holds the replicas still catching up (see sync.go): they get
	// chunks of the log, not replicates, until they reach the head.
	replicas  []string
	acked     map[string]uint64
	syncs     map[string]*replicaSync
	syncGen   uint64
	pending   []pending
	committed uint64
	// afterDrain runs once pending is empty (a handoff waiting to start);
	// drainSince is when that wait began.
	afterDrain func()
	drainSince time.Time
	// repair maps each replica whose replicate or sync failed to the
	// highest sequence it failed to store; retryTimer gives it a full copy
	// after a pause (chatd/backoff) that doubles with retryFailures, the
	// armings since the last repair. Without this a
	// failed replication would hold its message pending until some later
	// message happened to reveal the gap, which in a quiet room is never.
	repair        map[string]uint64
	retryTimer    *time.Timer
	retryFailures int

	// claimGen identifies the current claim of the room: a claim loop
	// that finds another generation (the room was claimed again, handed
	// over or retired meanwhile) stops. notice is the previous owner's
	// handoff notice, once it came; noticed is closed then, waking a claim
	// that waits for it. claimStart is when the current claim began.
	claimGen   uint64
	notice     *HandoffNotice
	noticed    chan struct{}
	claimStart time.Time
	// waitingFor says what the current claim last waited for (a member's
	// refusal, a missing quorum, a handoff notice): the admin API shows it
	// and a claim that takes long logs it (see reportSlowLocked).
	// stateSince is when the room entered its current waiting or settling
	// state; slowLogged is when a slow claim or settle was last logged.
	waitingFor string
	stateSince time.Time
	slowLogged time.Time
	// handedAt is when this node, the room's old owner, told the new one it
	// was done (see HandOff); the room waits for the new owner's claim.
	handedAt time.Time
	// fetchedFrom is the log a claim's fetch replaced, until the claim is
	// done (the subscribed nodes are caught up from it).
	fetchedFrom *fetchStart
	// settleHead is the log's head when the claim ended: the room settles
	// (serves) once it is committed.
	settleHead uint64
	// stale holds nodes with a copy of the room they no longer need (former
	// replicas, copies a claim found): once every current replica holds the
	// whole log, they are told to drop theirs.
	stale map[string]bool

	// nodes maps each subscribed node to the users present on it; users
	// counts, per user, the nodes where it is present.
	nodes      map[string]map[string]struct{}
	users      map[string]int
	emptySince time.Time
	countMode  bool
	countTimer *time.Timer
	// pendingJoined and pendingLeft are the list-mode arrivals and
	// departures not yet announced; presenceTimer runs while a batch window
	// is open.
	pendingJoined map[string]struct{}
	pendingLeft   map[string]struct{}
	presenceTimer *time.Timer

	typingPending map[string]struct{}
	typingTimer   *time.Timer
}

func (s *Service) newRoom(name string, log *roomlog.Log) *room {
	r := &room{
		svc:   s,
		name:  name,
		log:   log,
		acked: make(map[string]uint64),
		syncs: make(map[string]*replicaSync),
		nodes: make(map[string]map[string]struct{}),
		users: make(map[string]int),
	}
	r.committed = log.Head()
	r.emptySince = s.cfg.Now()
	return r
}

// onDurable is the log's Config.OnDurable for an owned room: the node's own
// copy is durable up to seq, which may commit pending messages.
func (r *room) onDurable(upTo uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		return
	}
	if err != nil {
		// The store failed after accepting the write: the message is not
		// known durable here and cannot be acknowledged. Its sender is told
		// (the store refuses further writes until it recovers).
		r.svc.log.Error("a sequenced message did not become durable", "room", r.name, "seq", upTo, "err", err)
		r.failPendingFromLocked(upTo, fmt.Errorf("%w: %w", ErrStorage, err))
		return
	}
	r.log.MarkDurable(upTo)
	r.commitLocked(r.replicatedUpTo())
}

// failPendingFromLocked answers the senders of pending messages from seq on
// with err. The messages stay pending, without senders: a resend is
// answered from the dedupe window once they commit. Callers hold r.mu.
func (r *room) failPendingFromLocked(seq uint64, err error) {
	for i := range r.pending {
		p := &r.pending[i]
		if p.msg.Seq < seq {
			continue
		}
		for _, reply := range append(p.replies, p.dups...) {
			reply(protocol.Ack{}, err)
		}
		p.replies, p.dups = nil, nil
	}
}

// push sends ev to every subscribed node. Callers hold mu.
func (r *room) push(ev feed.Event) {
	for node := range r.nodes {
		r.svc.out.Push(node, ev)
	}
}

// pushMessage sends message m of the room's log to every subscribed node.
// Callers hold mu.
func (r *room) pushMessage(m protocol.Message) {
	r.push(feed.Event{Kind: feed.KindMessage, Room: r.name, Epoch: r.log.Epoch(), Seq: m.Seq, Message: &m, Frame: protocol.Encode(m)})
}

// commitLocked commits the log up to seq: messages sequenced by earlier
// owners (inherited, not pending here) are fanned out, pending ones fanned
// out and acknowledged. Nothing is committed while the room is being
// claimed (its term is not settled) or while the node is not verified (it
// noticed it was paused and has not claimed its rooms again yet): see
// Config.Verified. A settling room becomes ready once its settle head is
// committed.
func (r *room) commitLocked(upTo uint64) {
	if r.state == stateWaiting || !r.svc.cfg.Verified() {
		return
	}
	upTo = min(upTo, r.log.Head())
	firstPending := r.log.Head() + 1
	if len(r.pending) > 0 {
		firstPending = r.pending[0].msg.Seq
	}
	if inherited := min(upTo, firstPending-1); inherited > r.committed {
		r.pushInheritedLocked(r.committed, inherited)
		r.committed = inherited
	}
	n := 0
	for _, p := range r.pending {
		if p.msg.Seq > upTo {
			break
		}
		m := p.msg
		if len(r.replicas) > 0 {
			r.svc.cfg.Observe.Replicated(r.svc.cfg.Now().Sub(p.at))
		}
		r.pushMessage(m)
		r.committed = m.Seq
		for _, reply := range p.replies {
			reply(ackFor(m, false), nil)
		}
		for _, reply := range p.dups {
			reply(ackFor(m, true), nil)
		}
		n++
	}
	clear(r.pending[:n])
	r.pending = r.pending[n:]
	if r.state == stateSettling && r.committed >= r.settleHead {
		r.becomeReady()
	}
	r.noteCommitted()
	if len(r.stale) > 0 && r.state == stateReady && r.inSyncLocked() {
		for node := range r.stale {
			if !slices.Contains(r.replicas, node) && node != r.svc.cfg.Self {
				r.svc.out.ForgetReplica(node, r.name, r.term)
			}
		}
		clear(r.stale)
	}
	if len(r.pending) == 0 && r.afterDrain != nil {
		f := r.afterDrain
		r.afterDrain = nil
		f()
	}
}

// markStaleLocked records that node holds a copy it no longer needs.
// Callers hold r.mu.
func (r *room) markStaleLocked(node string) {
	if r.stale == nil {
		r.stale = make(map[string]bool)
	}
	r.stale[node] = true
}

// pushInheritedLocked fans out the messages (from, to] that an earlier
// owner sequenced and this node committed now: those in memory, or, past
// that, the last one, enough for a subscribed node that lacks the rest to
// notice the gap and fetch it (nodes drop what they already have). Callers
// hold r.mu.
func (r *room) pushInheritedLocked(from, to uint64) {
	if len(r.nodes) == 0 {
		return
	}
	msgs, ok := r.log.Since(r.log.Epoch(), from)
	if !ok {
		msgs, _, _ = r.log.Before(to+1, 1)
	}
	for _, m := range msgs {
		if m.Seq > to {
			break
		}
		r.pushMessage(m)
	}
}

// replicatedUpTo is the highest sequence this node and every current
// replica hold durably.
func (r *room) replicatedUpTo() uint64 {
	upTo := r.log.Durable()
	for _, rep := range r.replicas {
		upTo = min(upTo, r.acked[rep])
	}
	return upTo
}

func ackFor(m protocol.Message, dup bool) protocol.Ack {
	return protocol.Ack{Type: protocol.TypeAck, Room: m.Room, CID: m.CID, Seq: m.Seq, MID: m.MID, TS: m.TS, Duplicate: dup}
}

func (r *room) listMode() bool { return len(r.users) <= r.svc.cfg.PresenceListMax }

func (r *room) presentUsers() []string {
	return slices.Sorted(maps.Keys(r.users))
}

// presenceChanged announces a user's arrival or departure to every node:
// as list deltas in small rooms, as a coalesced count in big ones.
//
// List deltas are batched per room (PresenceBatch): the first change after
// a quiet window goes out at once, so a lone join costs no latency; the
// changes that follow within the window go out together when it ends, as
// one frame naming every user who arrived or left (an arrival and a
// departure of one user inside the window cancel out). A storm of N joins
// into a room of N users then costs a few frames per window per member
// instead of one per join per member.
func (r *room) presenceChanged(user string, joined bool) {
	if !r.listMode() {
		r.countMode = true
		clear(r.pendingJoined)
		clear(r.pendingLeft)
		if r.countTimer == nil {
			r.countTimer = time.AfterFunc(r.svc.cfg.PresenceCoalesce, r.flushCount)
		}
		return
	}
	if r.pendingJoined == nil {
		r.pendingJoined, r.pendingLeft = make(map[string]struct{}), make(map[string]struct{})
	}
	from, to := r.pendingLeft, r.pendingJoined
	if !joined {
		from, to = to, from
	}
	if _, ok := from[user]; ok {
		delete(from, user) // undoes a change not announced yet
	} else {
		to[user] = struct{}{}
	}
	if r.presenceTimer != nil {
		return // the window's end announces it
	}
	r.announcePresence()
	if r.svc.cfg.PresenceBatch > 0 {
		r.presenceTimer = time.AfterFunc(r.svc.cfg.PresenceBatch, r.flushPresence)
	}
}

// flushPresence ends a batch window: the changes made inside it go out
// now, and a new window opens behind them; a quiet window just closes.
func (r *room) flushPresence() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.presenceTimer = nil
	if r.dead || !r.listMode() || !r.announcePresence() {
		return
	}
	r.presenceTimer = time.AfterFunc(r.svc.cfg.PresenceBatch, r.flushPresence)
}

// announcePresence pushes the pending changes of the present list (the
// whole list when the room leaves count mode) and reports whether there
// was anything to push. Callers hold mu and have checked listMode.
func (r *room) announcePresence() bool {
	ev := feed.Event{Kind: feed.KindPresence, Room: r.name, Count: len(r.users)}
	switch {
	case r.countMode:
		r.countMode = false
		ev.Present = r.presentUsers()
	case len(r.pendingJoined) == 0 && len(r.pendingLeft) == 0:
		return false
	default:
		ev.Joined = slices.Sorted(maps.Keys(r.pendingJoined))
		ev.Left = slices.Sorted(maps.Keys(r.pendingLeft))
	}
	clear(r.pendingJoined)
	clear(r.pendingLeft)
	ev.Frame = protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: r.name, Count: ev.Count, Joined: ev.Joined, Left: ev.Left, Present: ev.Present})
	r.push(ev)
	return true
}

func (r *room) flushCount() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.countTimer = nil
	if r.dead || !r.countMode {
		return
	}
	ev := feed.Event{Kind: feed.KindPresence, Room: r.name, Count: len(r.users)}
	ev.Frame = protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: r.name, Count: ev.Count})
	r.push(ev)
}

func (r *room) flushTyping() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.typingTimer = nil
	if r.dead || len(r.typingPending) == 0 {
		return
	}
	users := slices.Sorted(maps.Keys(r.typingPending))
	clear(r.typingPending)
	r.push(feed.Event{Kind: feed.KindTyping, Room: r.name, Frame: protocol.Encode(protocol.Typing{Type: protocol.TypeTyping, Room: r.name, Users: users})})
}

func (r *room) stopTimers() {
	if r.typingTimer != nil {
		r.typingTimer.Stop()
		r.typingTimer = nil
	}
	if r.countTimer != nil {
		r.countTimer.Stop()
		r.countTimer = nil
	}
	if r.presenceTimer != nil {
		r.presenceTimer.Stop()
		r.presenceTimer = nil
	}
	r.stopRetry()
	r.claimGen++ // a claim loop in flight stops
	clear(r.syncs)
}

// addUser records user on node; it reports whether the user is new to the room.
func (r *room) addUser(node, user string) bool {
	set := r.nodes[node]
	if set == nil {
		set = make(map[string]struct{})
		r.nodes[node] = set
	}
	if _, ok := set[user]; ok {
		return false
	}
	set[user] = struct{}{}
	r.users[user]++
	return r.users[user] == 1
}

// removeUser forgets user on node; it reports whether the user left the room.
func (r *room) removeUser(node, user string) bool {
	set := r.nodes[node]
	if _, ok := set[user]; !ok {
		return false
	}
	delete(set, user)
	r.users[user]--
	if r.users[user] > 0 {
		return false
	}
	delete(r.users, user)
	return true
}

// dropNode forgets a node's subscription and its users.
func (r *room) dropNode(node string) {
	set, ok := r.nodes[node]
	if !ok {
		return
	}
	// Removed first, so the presence changes below are not pushed to it.
	delete(r.nodes, node)
	for user := range set {
		r.users[user]--
		if r.users[user] <= 0 {
			delete(r.users, user)
			r.presenceChanged(user, false)
		}
	}
	if len(r.nodes) == 0 {
		r.emptySince = r.svc.cfg.Now()
	}
}
