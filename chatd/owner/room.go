package owner

import (
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

	// Replication: a message is committed (fanned out and acked) once every
	// current replica has acknowledged it.
	replicas  []string
	acked     map[string]uint64
	pending   []pending
	committed uint64
	// afterDrain runs once pending is empty (a handoff waiting to start);
	// drainSince is when that wait began.
	afterDrain func()
	drainSince time.Time
	// repair maps each replica whose replicate or sync failed to the
	// highest sequence it failed to store; retryTimer gives it a full copy
	// after retryDelay, which doubles while failures go on. Without this a
	// failed replication would hold its message pending until some later
	// message happened to reveal the gap, which in a quiet room is never.
	repair     map[string]uint64
	retryTimer *time.Timer
	retryDelay time.Duration

	// claimGen identifies the current claim of the room: a claim loop
	// that finds another generation (the room was claimed again, handed
	// over or retired meanwhile) stops. handedIn is signalled when a
	// handoff lands while a claim waits for it. claimStart is when the
	// current claim began.
	claimGen   uint64
	handedIn   chan struct{}
	claimStart time.Time

	// nodes maps each subscribed node to the users present on it; users
	// counts, per user, the nodes where it is present.
	nodes      map[string]map[string]struct{}
	users      map[string]int
	emptySince time.Time
	countMode  bool
	countTimer *time.Timer

	typingPending map[string]struct{}
	typingTimer   *time.Timer
}

func (s *Service) newRoom(name string, log *roomlog.Log) *room {
	r := &room{
		svc:   s,
		name:  name,
		log:   log,
		acked: make(map[string]uint64),
		nodes: make(map[string]map[string]struct{}),
		users: make(map[string]int),
	}
	r.committed = log.Head()
	r.emptySince = s.cfg.Now()
	return r
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

// commitLocked fans out and acknowledges every pending message up to seq.
// Nothing is committed while the room is being claimed (its term is not
// settled) or while the node is not verified (it noticed it was paused and
// has not claimed its rooms again yet): see Config.Verified.
func (r *room) commitLocked(upTo uint64) {
	if r.state == stateWaiting || !r.svc.cfg.Verified() {
		return
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
	if len(r.pending) == 0 && r.afterDrain != nil {
		f := r.afterDrain
		r.afterDrain = nil
		f()
	}
}

// replicatedUpTo is the highest sequence every current replica holds.
func (r *room) replicatedUpTo() uint64 {
	upTo := r.log.Head()
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

// presenceChanged announces a user's arrival or departure to every node, as
// a list delta in small rooms and as a coalesced count in big ones.
func (r *room) presenceChanged(user string, joined bool) {
	if !r.listMode() {
		r.countMode = true
		if r.countTimer == nil {
			r.countTimer = time.AfterFunc(r.svc.cfg.PresenceCoalesce, r.flushCount)
		}
		return
	}
	ev := feed.Event{Kind: feed.KindPresence, Room: r.name, Count: len(r.users)}
	switch {
	case r.countMode:
		r.countMode = false
		ev.Present = r.presentUsers()
	case joined:
		ev.Joined = []string{user}
	default:
		ev.Left = []string{user}
	}
	ev.Frame = protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: r.name, Count: ev.Count, Joined: ev.Joined, Left: ev.Left, Present: ev.Present})
	r.push(ev)
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
	r.stopRetry()
	r.claimGen++ // a claim loop in flight stops
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
