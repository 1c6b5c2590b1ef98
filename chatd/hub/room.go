package hub

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/history"
	"github.com/ringchat/ringchat/chatd/protocol"
)

type roomState int

const (
	// subscribing: the node asked the owner for the room; joins wait.
	subscribing roomState = iota
	// ready: the local copy is live.
	ready
)

// room is the local side of one room. Every field is guarded by mu; fan-out
// happens under mu, which gives every local subscriber the room's messages
// in sequence order.
type room struct {
	hub  *Hub
	name string

	mu    sync.Mutex
	dead  bool
	state roomState
	// waiting holds local joins that arrived while subscribing, and, once
	// ready, resumes from a position the local copy has not reached yet
	// (Join), answered as it does or at catchUpTimer (CatchUpMax).
	waiting      []waitingJoin
	catchUpTimer *time.Timer
	// unsubscribeOnReply: every join left while subscribing; the owner's
	// answer is followed by an unsubscription.
	unsubscribeOnReply bool

	// subs is a slice for fast fan-out; index maps a conn to its position so
	// removal is a swap with the last element.
	subs  []Conn
	index map[Conn]int
	// users counts local connections per user, so presence is per user.
	users map[string]int

	// The local copy of the room, fed by the owner's pushes: its epoch,
	// recent history (whose head is the last sequence delivered here), and
	// presence across the cluster.
	epoch string
	// oldest is the oldest sequence number the room keeps anywhere (the
	// owner's, on disk with a store), as the owner last said; 0 when it did
	// not say. The local copy (cache) may start later.
	oldest  uint64
	cache   *history.Ring
	present map[string]struct{}
	count   int
	// early holds messages that arrived ahead of a gap, until it is filled.
	early    map[uint64]protocol.Message
	resyncAt time.Time

	typingLast map[string]time.Time

	// acks holds acknowledgements that reached this node before the
	// message they acknowledge: the protocol promises a sender its own
	// message first (docs/protocol.md §5.5). They go out as soon as the
	// local copy has the message (releaseAcks), or after AckHoldMax.
	acks     []heldAck
	ackTimer *time.Timer
}

// heldAck is an acknowledgement waiting for its message to be delivered
// here. heldIn is the local copy's epoch when it was held: an ack of
// another epoch waits while the copy is still in that one (the copy is
// about to move to the ack's, newer, epoch), and goes once the copy moved
// to a third one (the ack's epoch is then the older).
type heldAck struct {
	c      Conn
	epoch  string
	heldIn string
	seq    uint64
	frame  []byte
	since  time.Time
}

type waitingJoin struct {
	c   Conn
	req JoinRequest
	// since is when a resume started waiting for the local copy to reach
	// its position (zero for a join waiting for the owner's State).
	since time.Time
}

func newRoom(name string, h *Hub) *room {
	return &room{
		hub:     h,
		name:    name,
		cache:   history.NewRing(h.cfg.HistorySize),
		index:   make(map[Conn]int),
		users:   make(map[string]int),
		present: make(map[string]struct{}),
		state:   subscribing,
	}
}

// broadcast queues frame to every local subscriber. Callers hold mu.
func (r *room) broadcast(frame []byte) {
	for _, c := range r.subs {
		c.Enqueue(frame)
	}
}

func (r *room) presentUsers() []string {
	return slices.Sorted(maps.Keys(r.present))
}

func (r *room) add(c Conn) {
	r.index[c] = len(r.subs)
	r.subs = append(r.subs, c)
}

// remove unsubscribes c; it reports whether c was subscribed and whether it
// was its user's last connection here.
func (r *room) remove(c Conn) (wasMember, lastOfUser bool) {
	i, ok := r.index[c]
	if !ok {
		return false, false
	}
	last := len(r.subs) - 1
	r.subs[i] = r.subs[last]
	r.index[r.subs[i]] = i
	r.subs[last] = nil
	r.subs = r.subs[:last]
	delete(r.index, c)
	u := c.UserID()
	r.users[u]--
	if r.users[u] > 0 {
		return true, false
	}
	delete(r.users, u)
	delete(r.typingLast, u)
	return true, true
}

// roomOldest is the oldest sequence number the room keeps: the owner's
// word, or the local copy's when it is older or the owner said nothing.
// Callers hold mu.
func (r *room) roomOldest() uint64 {
	o := r.cache.Oldest()
	if r.oldest > 0 && r.oldest < o {
		return r.oldest
	}
	return o
}

func (r *room) localUsers() []string {
	return slices.Collect(maps.Keys(r.users))
}

// removeWaiting drops c's joins that still wait for the owner's State,
// answering each with not_joined (the leave cancelled it) and freeing its
// slot; it reports whether c had one and whether c was its user's last
// connection here.
func (r *room) removeWaiting(c Conn) (wasWaiting, lastOfUser bool) {
	kept := r.waiting[:0]
	for _, w := range r.waiting {
		if w.c == c {
			wasWaiting = true
			e := protocol.NewError(protocol.CodeNotJoined, w.req.ID, "left before the join completed")
			e.Room = r.name
			c.Enqueue(protocol.Encode(e))
			if w.req.OnFail != nil {
				w.req.OnFail()
			}
			continue
		}
		kept = append(kept, w)
	}
	clear(r.waiting[len(kept):])
	r.waiting = kept
	if !wasWaiting {
		return false, false
	}
	u := c.UserID()
	r.users[u]--
	if r.users[u] > 0 {
		return true, false
	}
	delete(r.users, u)
	return true, true
}
