// Package hub holds a node's rooms and users: who is subscribed to which room,
// who is present, who is typing, and where a user's connections are. It
// orders room messages through each room's roomlog.Log and fans them out to
// the subscribed connections.
//
// The hub never blocks on a connection: Conn.Enqueue must return at once, and
// a connection that cannot keep up closes itself. That is what keeps one slow
// reader from delaying a room.
package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/dedupe"
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

// Config tunes the hub.
type Config struct {
	// HistorySize is the number of messages kept per room.
	HistorySize int
	// DedupeWindow is the number of recent client message ids remembered per room.
	DedupeWindow int
	// PresenceListMax is the room size (in users) above which presence is
	// reported as a count instead of lists of names.
	PresenceListMax int
	// RoomIdleTTL is how long an empty room is kept before it is forgotten.
	RoomIdleTTL time.Duration
	// TypingInterval is the minimum time between two accepted typing signals
	// of one user in one room; extra signals are dropped.
	TypingInterval time.Duration
	// TypingCoalesce is how long the hub gathers typing signals of a room
	// before sending them as one frame.
	TypingCoalesce time.Duration
	// PresenceCoalesce is how often a room in count mode reports its count.
	PresenceCoalesce time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented in docs/configuration.md.
func DefaultConfig() Config {
	return Config{
		HistorySize:      1000,
		DedupeWindow:     1024,
		PresenceListMax:  100,
		RoomIdleTTL:      5 * time.Minute,
		TypingInterval:   time.Second,
		TypingCoalesce:   250 * time.Millisecond,
		PresenceCoalesce: time.Second,
	}
}

// Hub is the set of rooms and users of one node.
type Hub struct {
	cfg     Config
	metrics *metrics.Metrics
	log     *slog.Logger
	now     func() time.Time

	mu    sync.RWMutex
	rooms map[string]*room

	usersMu  sync.RWMutex
	users    map[string]map[Conn]struct{}
	dmDedupe *dedupe.Window[protocol.Ack]
}

// New returns an empty hub.
func New(cfg Config, m *metrics.Metrics, log *slog.Logger) *Hub {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Hub{
		cfg:      cfg,
		metrics:  m,
		log:      log,
		now:      cfg.Now,
		rooms:    make(map[string]*room),
		users:    make(map[string]map[Conn]struct{}),
		dmDedupe: dedupe.NewWindow[protocol.Ack](max(cfg.DedupeWindow, 1) * 16),
	}
}

// Run forgets idle empty rooms until ctx is done. It is the hub's only
// long-lived goroutine; its owner is the server.
func (h *Hub) Run(ctx context.Context) {
	period := min(max(h.cfg.RoomIdleTTL/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.sweep()
		}
	}
}

// sweep removes rooms that have been empty for longer than RoomIdleTTL.
func (h *Hub) sweep() {
	now := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, r := range h.rooms {
		r.mu.Lock()
		if len(r.subs) == 0 && !r.emptySince.IsZero() && now.Sub(r.emptySince) >= h.cfg.RoomIdleTTL {
			r.dead = true
			r.stopTimers()
			delete(h.rooms, name)
		}
		r.mu.Unlock()
	}
	h.metrics.Rooms.Set(float64(len(h.rooms)))
}

// RoomCount returns the number of rooms held.
func (h *Hub) RoomCount() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rooms)
}

// Register queues first (the welcome) to c and makes c reachable by direct
// messages to its user, atomically with respect to direct messages.
func (h *Hub) Register(c Conn, first []byte) {
	h.usersMu.Lock()
	defer h.usersMu.Unlock()
	c.Enqueue(first)
	set := h.users[c.UserID()]
	if set == nil {
		set = make(map[Conn]struct{}, 1)
		h.users[c.UserID()] = set
	}
	set[c] = struct{}{}
}

// Unregister forgets c. The caller leaves c's rooms first.
func (h *Hub) Unregister(c Conn) {
	h.usersMu.Lock()
	defer h.usersMu.Unlock()
	set := h.users[c.UserID()]
	delete(set, c)
	if len(set) == 0 {
		delete(h.users, c.UserID())
	}
}

// lookup returns the live room called name, creating it when create is set.
// The returned room is locked; the caller unlocks it. A room that the sweeper
// removed between the map lookup and the lock is retried, so callers never
// act on a forgotten room.
func (h *Hub) lookup(name string, create bool) *room {
	for {
		h.mu.RLock()
		r := h.rooms[name]
		h.mu.RUnlock()
		if r == nil {
			if !create {
				return nil
			}
			h.mu.Lock()
			if r = h.rooms[name]; r == nil {
				r = newRoom(name, h)
				h.rooms[name] = r
				h.metrics.Rooms.Set(float64(len(h.rooms)))
			}
			h.mu.Unlock()
		}
		r.mu.Lock()
		if !r.dead {
			return r
		}
		r.mu.Unlock()
	}
}
