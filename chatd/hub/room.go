package hub

import (
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// room is one chat room on this node. Every field is guarded by mu; fan-out
// happens under mu too, which is what gives every subscriber the room's
// messages in sequence order without a per-room goroutine.
type room struct {
	hub  *Hub
	name string

	mu   sync.Mutex
	dead bool // forgotten by the sweeper; lookups retry
	log  *roomlog.Log
	// subs is a slice for fast fan-out; index maps a conn to its position so
	// removal is a swap with the last element.
	subs  []Conn
	index map[Conn]int
	// users counts connections per user, so presence is per user.
	users      map[string]int
	emptySince time.Time

	typingPending map[string]struct{}
	typingLast    map[string]time.Time
	typingTimer   *time.Timer

	countTimer *time.Timer
	// countMode is set once presence went out as counts; the first change
	// back under the limit sends a full list so clients can list names again.
	countMode bool
}

func newRoom(name string, h *Hub) *room {
	return &room{
		hub:   h,
		name:  name,
		log:   roomlog.New(name, roomlog.Config{HistorySize: h.cfg.HistorySize, DedupeWindow: h.cfg.DedupeWindow, Now: h.now}),
		index: make(map[Conn]int),
		users: make(map[string]int),
	}
}

// broadcast queues frame to every subscriber. Callers hold r.mu.
func (r *room) broadcast(frame []byte) {
	for _, c := range r.subs {
		c.Enqueue(frame)
	}
}

// listMode reports whether presence is small enough to list names.
func (r *room) listMode() bool { return len(r.users) <= r.hub.cfg.PresenceListMax }

func (r *room) presentUsers() []string {
	out := make([]string, 0, len(r.users))
	for u := range r.users {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// presenceChanged tells subscribers that user joined (or left). In count
// mode the change is folded into a periodic count frame instead, so a room of
// ten thousand users does not cost ten thousand frames per arrival.
func (r *room) presenceChanged(user string, joined bool) {
	if !r.listMode() {
		r.countMode = true
		if r.countTimer == nil {
			r.countTimer = time.AfterFunc(r.hub.cfg.PresenceCoalesce, r.flushCount)
		}
		return
	}
	p := protocol.Presence{Type: protocol.TypePresence, Room: r.name, Count: len(r.users)}
	switch {
	case r.countMode:
		r.countMode = false
		p.Present = r.presentUsers()
	case joined:
		p.Joined = []string{user}
	default:
		p.Left = []string{user}
	}
	r.broadcast(protocol.Encode(p))
}

func (r *room) flushCount() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.countTimer = nil
	if r.dead || !r.countMode {
		// Back in list mode already: the list was sent by presenceChanged.
		return
	}
	r.broadcast(protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: r.name, Count: len(r.users)}))
}

func (r *room) flushTyping() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.typingTimer = nil
	if r.dead || len(r.typingPending) == 0 {
		return
	}
	users := make([]string, 0, len(r.typingPending))
	for u := range r.typingPending {
		users = append(users, u)
	}
	slices.Sort(users)
	clear(r.typingPending)
	r.broadcast(protocol.Encode(protocol.Typing{Type: protocol.TypeTyping, Room: r.name, Users: users}))
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
}

func (r *room) add(c Conn) (firstOfUser bool) {
	r.index[c] = len(r.subs)
	r.subs = append(r.subs, c)
	r.emptySince = time.Time{}
	r.users[c.UserID()]++
	return r.users[c.UserID()] == 1
}

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
	if len(r.subs) == 0 {
		r.emptySince = r.hub.now()
	}
	u := c.UserID()
	r.users[u]--
	if r.users[u] > 0 {
		return true, false
	}
	delete(r.users, u)
	delete(r.typingPending, u)
	delete(r.typingLast, u)
	return true, true
}
