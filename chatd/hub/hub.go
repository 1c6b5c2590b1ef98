// Package hub is a node's local side of the chat: the connections subscribed
// to each room, presence per user, typing limits, and where a user's
// connections are for direct messages. It keeps, for every room it has
// subscribers for, a local copy of the room's recent history, so joins,
// resumes and history pages are answered without a network hop.
//
// Ordering, storage and replication belong to the room's owner, which the hub
// reaches through a Router (the cluster package). The owner pushes events
// back with Deliver; the hub fans them out to local connections.
//
// The hub never blocks on a connection: Conn.Enqueue must return at once, and
// a connection that cannot keep up closes itself. And the hub never calls the
// Router while holding a room's lock, because a local owner answers
// synchronously and pushes into the hub under its own lock.
package hub

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/dedupe"
	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Conn is what the hub needs from a client connection.
type Conn interface {
	// SessionID identifies the connection.
	SessionID() string
	// UserID identifies the authenticated user; several connections may share it.
	UserID() string
	// Enqueue queues an encoded server frame for writing. It must not block
	// and must not call back into the hub. Frames passed in may be shared
	// with other connections and must not be modified.
	Enqueue(frame []byte)
}

// Router reaches the owner of a room, wherever it is. Every reply function
// is called exactly once. Replies and Deliver calls that concern one room
// arrive in the order the owner made them. A reply (and a Deliver) may be
// made by an owner on this node under its own locks: the hub never calls
// the Router from inside one (it would wait for those locks for good).
type Router interface {
	Subscribe(room string, users []string, reply func(feed.State, error))
	Unsubscribe(room string)
	PresenceChange(room, user string, joined bool)
	Publish(room, user, cid, text string, reply func(protocol.Ack, error))
	History(room string, before uint64, limit int, reply func(protocol.HistoryPage, error))
	Typing(room, user string)
	// DirectMessage delivers frame to every connection of user to on every
	// node, and of user from (except the session exceptSession, unless to
	// is from), and reports how many connections of to received it.
	DirectMessage(to, from, exceptSession string, frame []byte, reply func(delivered int))
}

// Config tunes the hub.
type Config struct {
	// HistorySize is the number of messages kept per room.
	HistorySize int
	// PresenceListMax is the room size (in users) above which a joined
	// frame carries a count instead of the list of names.
	PresenceListMax int
	// DedupeWindow sizes the direct-message dedupe windows: this many keys
	// per sender, 16 times as many for the whole node.
	DedupeWindow int
	// MaxRooms caps the rooms with subscribers on this node: a join that
	// would add one more is refused (node_rooms_full). 0: no cap.
	MaxRooms int
	// TypingInterval is the minimum time between two accepted typing signals
	// of one user in one room; extra signals are dropped.
	TypingInterval time.Duration
	// AckHoldMax bounds how long an acknowledgement waits for its message
	// to reach this node before it is sent anyway (it should never come to
	// that: the owner pushes a message before it answers its sender).
	// Zero means DefaultAckHoldMax.
	AckHoldMax time.Duration
	// CatchUpMax bounds how long a resume from a position this node's copy
	// has not reached waits for it (the client comes from a node that was
	// ahead, typically one that died: the copy catches up once the room's
	// new owner answers, after failure detection and its claim). Zero
	// means AckHoldMax.
	CatchUpMax time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// DefaultAckHoldMax is Config.AckHoldMax's default.
const DefaultAckHoldMax = 10 * time.Second

// Hub is the set of local rooms and users of one node.
type Hub struct {
	cfg     Config
	metrics *metrics.Metrics
	log     *slog.Logger
	now     func() time.Time
	router  Router
	// gate refuses joins and sends of banned or muted users; nil: none.
	gate Gate

	mu    sync.RWMutex
	rooms map[string]*room
	// undoing holds, by room name, the unsubscription under way of a room
	// every local join left while its owner was being asked (see
	// subscribe): a new local room of that name waits for it, so that the
	// unsubscription cannot overtake the new room's subscription.
	undoing map[string]chan struct{}

	usersMu sync.RWMutex
	// users maps a user to its connections on this node. A slice, not a
	// set: users have a handful of connections, and an idle connection's
	// cost matters more than a linear scan of that handful.
	users    map[string][]Conn
	dmMu     sync.Mutex
	dmDedupe *dedupe.PerSender[*dmResult]
}

// New returns an empty hub. SetRouter must be called before use.
func New(cfg Config, m *metrics.Metrics, log *slog.Logger) *Hub {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AckHoldMax <= 0 {
		cfg.AckHoldMax = DefaultAckHoldMax
	}
	if cfg.CatchUpMax <= 0 {
		cfg.CatchUpMax = cfg.AckHoldMax
	}
	return &Hub{
		cfg:      cfg,
		metrics:  m,
		log:      log,
		now:      cfg.Now,
		rooms:    make(map[string]*room),
		undoing:  make(map[string]chan struct{}),
		users:    make(map[string][]Conn),
		dmDedupe: dedupe.NewPerSender[*dmResult](max(cfg.DedupeWindow, 1), max(cfg.DedupeWindow, 1)*16),
	}
}

// SetRouter wires the hub to the owners. The router and the hub refer to
// each other, so one of them is set after construction.
func (h *Hub) SetRouter(r Router) { h.router = r }

// Run keeps the rooms gauge current until ctx is done.
func (h *Hub) Run(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.metrics.Rooms.Set(float64(h.RoomCount()))
		}
	}
}

// RoomCount returns the number of rooms with local subscribers.
func (h *Hub) RoomCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rooms)
}

// LocalRooms lists the rooms with local subscribers.
func (h *Hub) LocalRooms() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Collect(maps.Keys(h.rooms))
}

// Register queues first (the welcome) to c and makes c reachable by direct
// messages to its user, atomically with respect to direct messages.
func (h *Hub) Register(c Conn, first []byte) {
	h.usersMu.Lock()
	defer h.usersMu.Unlock()
	c.Enqueue(first)
	h.users[c.UserID()] = append(h.users[c.UserID()], c)
}

// Unregister forgets c. The caller leaves c's rooms first.
func (h *Hub) Unregister(c Conn) {
	h.usersMu.Lock()
	defer h.usersMu.Unlock()
	conns := h.users[c.UserID()]
	for i, other := range conns {
		if other == c {
			last := len(conns) - 1
			conns[i] = conns[last]
			conns[last] = nil
			conns = conns[:last]
			break
		}
	}
	if len(conns) == 0 {
		delete(h.users, c.UserID())
	} else {
		h.users[c.UserID()] = conns
	}
}

// lookup returns the live local room called name, creating it when create
// is set, locked. A room removed between the map lookup and the lock is
// retried, so callers never act on a dropped room.
func (h *Hub) lookup(name string, create bool) (r *room, created bool) {
	for {
		h.mu.RLock()
		r = h.rooms[name]
		h.mu.RUnlock()
		if r == nil {
			if !create {
				return nil, false
			}
			h.mu.Lock()
			if r = h.rooms[name]; r == nil {
				if undo := h.undoing[name]; undo != nil {
					// The last incarnation's subscription is being
					// undone: subscribe again only after it.
					h.mu.Unlock()
					<-undo
					continue
				}
				if h.cfg.MaxRooms > 0 && len(h.rooms) >= h.cfg.MaxRooms {
					h.mu.Unlock()
					return nil, false
				}
				r = newRoom(name, h)
				h.rooms[name] = r
				created = true
			}
			h.mu.Unlock()
		}
		r.mu.Lock()
		if !r.dead {
			return r, created
		}
		r.mu.Unlock()
		created = false
	}
}

// drop removes an empty room. Callers hold r.mu.
func (h *Hub) drop(r *room) {
	r.dead = true
	h.mu.Lock()
	if h.rooms[r.name] == r {
		delete(h.rooms, r.name)
	}
	h.mu.Unlock()
}

// RoomStat describes a local room for the admin API.
type RoomStat struct {
	Room        string `json:"room"`
	Subscribers int    `json:"subscribers"`
	Users       int    `json:"users"`
	Head        uint64 `json:"head"`
}

// Stats lists the local rooms with their subscriber counts.
func (h *Hub) Stats() []RoomStat {
	h.mu.RLock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.RUnlock()
	out := make([]RoomStat, 0, len(rooms))
	for _, r := range rooms {
		r.mu.Lock()
		out = append(out, RoomStat{Room: r.name, Subscribers: len(r.subs), Users: len(r.users), Head: r.cache.Head()})
		r.mu.Unlock()
	}
	return out
}
