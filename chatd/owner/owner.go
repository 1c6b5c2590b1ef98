// Package owner is the owner's side of rooms in a cluster: for every room this
// node owns it sequences messages (roomlog), waits until they are stored on
// the room's replicas, then fans them out once per subscribed node and
// acknowledges the sender. It also aggregates presence across nodes,
// coalesces typing, keeps replica copies of rooms other nodes own, and hands
// rooms over when ownership moves.
//
// The package talks to other nodes only through the Outbound interface, so it
// is tested without a network, and the cluster package supplies the real
// transport.
package owner

import (
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// Errors returned to routers; the cluster maps them onto its wire format.
var (
	// ErrNotOwner: this node does not own the room in its current view; the
	// sender should retry once its own view has caught up.
	ErrNotOwner = errors.New("not the room's owner")
	// ErrMoving: the room is being handed over; retry shortly.
	ErrMoving = errors.New("room is moving to another node")
	// ErrBehind: a handoff was refused because the receiving node holds
	// more acknowledged history; the sender drops its stale copy.
	ErrBehind = errors.New("handoff refused: the new owner is ahead")
	// ErrClosed: the service is shutting down.
	ErrClosed = errors.New("owner service closed")
)

// Outbound is how the owner reaches other nodes (and itself). Its methods
// must return without blocking. Pushes to one node must arrive in the order
// they were made, and after any reply made earlier to that node; so must
// replicates and syncs to one replica, since a snapshot overtaken by a later
// replicate would take that message back off the replica. Callbacks
// (done) must never run synchronously inside the call that takes them: the
// owner calls these methods with a room's lock held, and the callbacks take
// that lock.
type Outbound interface {
	// Push sends an event to a subscribed node.
	Push(node string, ev feed.Event)
	// Replicate stores msg on replica and calls done with the outcome.
	Replicate(replica string, room string, msg protocol.Message, done func(error))
	// SyncReplica gives a replica a full copy of a room's log and calls done.
	SyncReplica(replica string, snap roomlog.Snapshot, done func(error))
	// ForgetReplica tells a replica the room is gone.
	ForgetReplica(replica string, room string)
}

// Config tunes the owner service.
type Config struct {
	// Self is this node's name.
	Self             string
	HistorySize      int
	DedupeWindow     int
	PresenceListMax  int
	RoomIdleTTL      time.Duration
	TypingCoalesce   time.Duration
	PresenceCoalesce time.Duration
	// Replicas returns the replicas of a room this node owns (owner
	// excluded), for rooms created or taken over between two membership
	// reconciliations. Nil means none.
	Replicas func(room string) []string
	// HasQuorum reports whether this node sees a majority of the cluster.
	// Without it, replica sets are not shrunk, so a message waiting for an
	// unreachable replica is never committed on the minority side of a
	// partition. Nil means always.
	HasQuorum func() bool
	// Observe receives events worth measuring; nil drops them.
	Observe Observer
	// OnAwait is called (on its own goroutine) when this node starts
	// waiting for a room's handoff, so the cluster can ask the previous
	// owner to hand it over now, or to confirm it has nothing (EndWait).
	OnAwait func(room string)
	// HandoffGrace is how long a new owner holds requests for a room while
	// waiting for the previous owner's handoff before it asks the peers
	// again (when a live peer may still hold the room) or starts the room
	// from its replica (or empty). Half of it bounds how long an old owner's
	// handoff waits for messages still being replicated.
	HandoffGrace time.Duration
	// ReplicationRetry is the first pause before a replica whose replicate
	// or sync failed gets a full copy again; each failure in a row doubles
	// it, up to ReplicationRetryMax. Zero means the defaults.
	ReplicationRetry    time.Duration
	ReplicationRetryMax time.Duration
	Now                 func() time.Time
}

// Defaults for the zero values of Config's retry pauses. The first retry is
// quick because most failures are a dropped connection that redials at once;
// the cap keeps a replica that is down for long from costing a snapshot per
// room more often than every few seconds.
const (
	DefaultReplicationRetry    = 200 * time.Millisecond
	DefaultReplicationRetryMax = 5 * time.Second
)

// Service holds the rooms this node owns and the replicas it keeps.
type Service struct {
	cfg Config
	out Outbound
	log *slog.Logger

	mu       sync.Mutex
	rooms    map[string]*room
	replicas map[string]*roomlog.Log
	// relinquished holds rooms this node told a new owner it does not hold,
	// with when that promise expires: until then it must not start them.
	relinquished map[string]time.Time
	// closed is set by Close under mu; rooms read it under their own lock
	// (which may not take mu) before arming a timer.
	closed atomic.Bool
}

// New returns an empty service.
func New(cfg Config, out Outbound, log *slog.Logger) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observe == nil {
		cfg.Observe = nopObserver{}
	}
	if cfg.ReplicationRetry <= 0 {
		cfg.ReplicationRetry = DefaultReplicationRetry
	}
	if cfg.ReplicationRetryMax < cfg.ReplicationRetry {
		cfg.ReplicationRetryMax = max(DefaultReplicationRetryMax, cfg.ReplicationRetry)
	}
	return &Service{cfg: cfg, out: out, log: log, rooms: make(map[string]*room), replicas: make(map[string]*roomlog.Log), relinquished: make(map[string]time.Time)}
}

func (s *Service) logConfig() roomlog.Config {
	return roomlog.Config{HistorySize: s.cfg.HistorySize, DedupeWindow: s.cfg.DedupeWindow, Now: s.cfg.Now}
}

// lockHeld returns the owned room called name, locked, or nil when this
// node does not hold it (or it was just handed off).
func (s *Service) lockHeld(name string) *room {
	s.mu.Lock()
	r := s.rooms[name]
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	if r.dead {
		r.mu.Unlock()
		return nil
	}
	return r
}

// OwnedRooms lists the rooms this node currently owns.
func (s *Service) OwnedRooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.rooms))
}

// ownedList returns the rooms this node owns, for work that takes their
// locks after the service's is released.
func (s *Service) ownedList() []*room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.rooms))
}

// ReplicaRooms lists the rooms this node keeps a replica of.
func (s *Service) ReplicaRooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Keys(s.replicas))
}

// Observer is told about events worth a metric.
type Observer interface {
	// Replicated reports how long a message waited for its replicas.
	Replicated(d time.Duration)
	// Handoff reports a room handed out or taken in.
	Handoff(out bool, err error)
	// Held reports a request held while a room waited for its handoff.
	Held()
}

type nopObserver struct{}

func (nopObserver) Replicated(time.Duration) {}
func (nopObserver) Handoff(bool, error)      {}
func (nopObserver) Held()                    {}
