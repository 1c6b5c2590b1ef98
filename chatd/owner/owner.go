// Package owner is the owner's side of rooms in a cluster: for every room this
// node owns it sequences messages (roomlog), waits until they are stored on
// the room's replicas, then fans them out once per subscribed node and
// acknowledges the sender. It also aggregates presence across nodes,
// coalesces typing, keeps replica copies of rooms other nodes own, and hands
// rooms over when ownership moves.
//
// # Fencing
//
// Ownership is decided from each node's own membership view, and views
// differ for a while after every change: a node that was paused (a long GC,
// a throttled container, a VM migrated) wakes up believing it still owns
// rooms the others took over long ago. Every ownership of a room therefore
// carries a term, a number that only grows (Raft's term, Kafka's leader
// epoch):
//
//   - A node that becomes a room's owner first claims it: it asks every live
//     member to promise a term higher than any term they have seen for the
//     room. A member that promised term T refuses every later write of the
//     room (replicate, sync) from a term below T, and an owner that promises
//     a higher term to another node retires the room at once.
//   - The claimant collects, with the promises, every member's copy of the
//     room and starts from the newest (highest term, then longest: see
//     roomlog.Newer), fetching it when it is not its own, so a new owner
//     never starts a room empty while a copy lives.
//   - An owner acknowledges a message only once every replica of the room
//     has stored it in the owner's current term. A stale owner's first
//     write is refused by a replica that promised a newer term; it learns
//     there that it was replaced, and gives the room up.
//
// The proof sketch and its assumptions are in docs/architecture.md
// ("Fencing").
//
// The package talks to other nodes only through the Outbound interface and
// sees the membership only through View, so it is tested without a network;
// the cluster package supplies both.
package owner

import (
	"errors"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/store"
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
	// ErrStaleTerm: a write or claim carried an ownership term older than
	// one this node has promised: another node owns the room now.
	ErrStaleTerm = errors.New("stale ownership term")
	// ErrOwnedHere: a claim was refused because this node owns the room in
	// its own view; the claimant waits until the views agree.
	ErrOwnedHere = errors.New("the room is owned by this node in its view")
	// ErrNotMember: a claim or sync came from a node this node does not
	// count as a live member (it was declared dead and has not rejoined).
	ErrNotMember = errors.New("not a live member in this node's view")
	// ErrNoQuorum: this node sees no majority of the cluster and refuses
	// writes and claims.
	ErrNoQuorum = errors.New("no quorum")
	// ErrStorage: the node's store refused a write (a full disk, a failed
	// device); it wraps the store's error (store.ErrFull, store.ErrFailed).
	ErrStorage = errors.New("storage refused the write")
)

// View is what the owner needs to know of the membership. The cluster
// implements it from its current view; every method must be cheap and must
// not call back into the service.
type View interface {
	// Owner returns the room's owner among the active members, or "" when
	// there is none.
	Owner(room string) string
	// PreviousOwner returns the room's owner in the view before the last
	// change of the active members, and whether it is still a live member.
	PreviousOwner(room string) (node string, alive bool)
	// Replicas returns the replicas of a room this node owns (the owner
	// excluded; nil for none).
	Replicas(room string) []string
	// Peers returns every live member other than this node that owns or
	// replicates rooms, or may have (active and draining members): a claim
	// needs each one's promise.
	Peers() []string
	// Newcomers returns the live members that are still joining: they
	// never owned or replicated a room in their current life, so a claim
	// asks them (their copies from a previous life count when they answer
	// in time) but does not wait for them.
	Newcomers() []string
	// Alive reports whether node is a live member.
	Alive(node string) bool
	// HasQuorum reports whether this node sees a strict majority of the
	// expected cluster.
	HasQuorum() bool
	// Changed returns a channel that is closed at the next view change.
	Changed() <-chan struct{}
}

// Outbound is how the owner reaches other nodes. Its methods must return
// without blocking. Pushes to one node must arrive in the order they were
// made, and after any reply made earlier to that node; so must replicates,
// sync offers and chunks to one replica, since a chunk overtaken by a later
// replicate would leave a gap. Callbacks must never run synchronously
// inside the call that takes them: the owner calls these methods with a
// room's lock held, and the callbacks take that lock.
type Outbound interface {
	// Push sends an event to a subscribed node.
	Push(node string, ev feed.Event)
	// Replicate stores a message on a replica and calls done once it is
	// durable there (or failed).
	Replicate(replica string, rep Replication, done func(error))
	// SyncOffer starts bringing a replica's copy to the owner's log: the
	// replica keeps what it shares with it (or starts over) and answers
	// how far its copy now goes, durably.
	SyncOffer(replica string, offer SyncOffer, done func(SyncAnswer, error))
	// SyncChunk appends a run of the owner's log to a replica's copy and
	// calls done once it is durable there.
	SyncChunk(replica string, chunk Chunk, done func(error))
	// ForgetReplica tells a node to drop its copy of a room, unless its
	// copy follows a term above term (a newer owner's).
	ForgetReplica(node string, room string, term uint64)
	// Claim asks peer to promise a term for a room (or, with Promise
	// false, whether it is handing the room over), and calls done with its
	// answer.
	Claim(peer string, req ClaimRequest, done func(ClaimReply, error))
	// Fetch asks peer, which promised req.Term, for a chunk of its copy.
	Fetch(peer string, req FetchRequest, done func(FetchReply, error))
	// HandOff tells a room's new owner this node is done with it: claim it
	// now (its copy here is the newest) and take its subscribers.
	HandOff(node string, notice HandoffNotice, done func(error))
}

// Replication is one message an owner stores on a replica, in its term.
type Replication struct {
	Room  string           `json:"room"`
	Epoch string           `json:"epoch"`
	Term  uint64           `json:"term"`
	Msg   protocol.Message `json:"msg"`
}

// SyncOffer describes the owner's log to a replica that is to follow it.
type SyncOffer struct {
	Meta roomlog.Meta `json:"meta"`
}

// SyncAnswer is how far a replica's copy matches the owner's log after a
// SyncOffer: the owner sends the rest from Have+1.
type SyncAnswer struct {
	Have uint64 `json:"have"`
}

// Chunk is a run of an owner's log, in its term, sent to a replica that
// follows it.
type Chunk struct {
	Room    string          `json:"room"`
	Epoch   string          `json:"epoch"`
	Term    uint64          `json:"term"`
	Entries []roomlog.Entry `json:"entries"`
}

// FetchRequest asks a node that promised Term for its copy of a room. The
// first request describes the claimant's own copy (Have), so only what it
// lacks is sent; the next ones ask for the entries after After.
type FetchRequest struct {
	Room  string        `json:"room"`
	Term  uint64        `json:"term"`
	Have  *roomlog.Meta `json:"have,omitempty"`
	After uint64        `json:"after,omitempty"`
}

// FetchReply is a chunk of a copy: the copy's metadata, where the
// claimant's copy must be cut (Keep) or restarted (Reset, at Meta.Oldest),
// entries from Keep+1 (or After+1), whether more follow, and the room's
// subscribers when the node owned it until the claim.
type FetchReply struct {
	Meta    roomlog.Meta        `json:"meta"`
	Keep    uint64              `json:"keep"`
	Reset   bool                `json:"reset,omitempty"`
	Entries []roomlog.Entry     `json:"entries,omitempty"`
	More    bool                `json:"more,omitempty"`
	Nodes   map[string][]string `json:"nodes,omitempty"`
}

// HandoffNotice is what an old owner tells the new one when it is done with
// a room: its term and head (its copy is the newest: it committed what it
// could) and the nodes subscribed to the room with their users.
type HandoffNotice struct {
	Room  string              `json:"room"`
	Term  uint64              `json:"term"`
	Head  uint64              `json:"head"`
	Nodes map[string][]string `json:"nodes,omitempty"` // node → users present there
}

// ClaimRequest asks a node about a room this node is becoming the owner of.
type ClaimRequest struct {
	Room string `json:"room"`
	// Promise asks the node to promise Term: to refuse, from now on, writes
	// of the room from any lower term. Without it the node only says
	// whether it is handing the room over (the previous owner, when it is
	// alive, hands it over with its subscribers and without a new term
	// round: it retires the room itself).
	Promise bool   `json:"promise,omitempty"`
	Term    uint64 `json:"term,omitempty"`
}

// ClaimReply is a node's answer to a claim.
type ClaimReply struct {
	// Refused, when set, says why the claim was not granted: stale_term
	// (Promised is higher), owned (the node owns the room in its view),
	// not_member (the node does not count the claimant as a live member)
	// or no_quorum.
	Refused string `json:"refused,omitempty"`
	// Handing: the node owned the room and is handing it over (query), or
	// retired it on this promise (its copy is then the one to fetch).
	Handing bool `json:"handing,omitempty"`
	// Promised is the highest term the node has promised for the room
	// (after this claim, when it was granted).
	Promised uint64 `json:"promised,omitempty"`
	// Copy describes the node's copy of the room, if it holds one.
	Copy *CopyInfo `json:"copy,omitempty"`
}

// CopyInfo describes a copy of a room's log.
type CopyInfo struct {
	Epoch string `json:"epoch"`
	Term  uint64 `json:"term"`
	Head  uint64 `json:"head"`
}

// Config tunes the owner service.
type Config struct {
	// Self is this node's name.
	Self            string
	HistorySize     int
	DedupeWindow    int
	PresenceListMax int
	// RoomIdleTTL is how long a room without subscribed nodes is kept.
	RoomIdleTTL    time.Duration
	TypingCoalesce time.Duration
	// PresenceCoalesce is how often a room in count mode (more users than
	// PresenceListMax) reports its count, at most.
	PresenceCoalesce time.Duration
	// PresenceBatch is a list-mode room's presence window: the first
	// arrival or departure after a quiet window is announced at once, the
	// ones inside the window together when it ends. 0 announces every
	// change on its own.
	PresenceBatch time.Duration
	// View is the membership as this node sees it. Required.
	View View
	// Store, when set, keeps every copy of a room this node holds on disk
	// (chatd/store): history survives restarts and idle rooms, memory only
	// caches the newest HistorySize messages of the rooms in use, and a
	// message is acknowledged once it is durable on every copy. Nil keeps
	// history in memory only.
	Store Store
	// ReplicaCache is how many of a replica copy's newest messages stay in
	// memory when there is a Store (the rest is read from disk when
	// needed). Zero means DefaultReplicaCache.
	ReplicaCache int
	// ChunkSize bounds the messages of one chunk when a copy is sent to
	// another node (a replica catching up, a claimant fetching). Zero means
	// DefaultChunkSize.
	ChunkSize int
	// MinAnswers is how many members (this node included) must have
	// answered a claim before it may go on when the node has a Store: with
	// N expected members and replication factor R, N−R+1 answers meet
	// every set of R copies, so the newest copy is among them (members that
	// are down come back with their copies). Without a store it does not
	// apply: a member that is down lost its copies. Nil means one.
	MinAnswers func() int
	// Verified reports whether this node may acknowledge messages: false
	// from the moment it notices it was paused or suspected by the others
	// until its rooms were claimed again (see Service.Reverify). Nil means
	// always.
	Verified func() bool
	// Observe receives events worth measuring; nil drops them.
	Observe Observer
	// HandoffGrace is how long a new owner holds requests for a room while
	// waiting for the previous owner's handoff before it claims the room
	// from every member instead. Half of it bounds how long an old owner's
	// handoff waits for messages still being replicated.
	HandoffGrace time.Duration
	// ClaimRetry is the pause between two claim rounds that could not
	// complete (a member did not answer, or owns the room in its view)
	// when the view does not change meanwhile. Zero means
	// DefaultClaimRetry.
	ClaimRetry time.Duration
	// ReplicationRetry is the first pause before a replica whose replicate
	// or sync failed gets a full copy again; each failure in a row doubles
	// it, up to ReplicationRetryMax. Zero means the defaults.
	ReplicationRetry    time.Duration
	ReplicationRetryMax time.Duration
	// Stream turns on the event stream's bookkeeping (stream.go): rooms
	// remember how far the backend has their log, and a room with
	// entries it does not have yet is not freed when idle.
	Stream bool
	// OnUnstreamed, with Stream, is told that a room has new committed
	// entries for the backend. It must not block or call the service.
	OnUnstreamed func()
	Now          func() time.Time
}

// Store is what the owner needs of the node's durable store
// (*store.Store): the room logs' backing, promises, and the rooms it holds.
type Store interface {
	roomlog.Backing
	// Promise durably records that this node promised term for room.
	Promise(room string, term uint64, done func(error)) error
	// Rooms yields every room the store holds, with its metadata.
	Rooms() iter.Seq2[string, store.RoomMeta]
}

// Defaults for the zero values of Config's retry pauses. The first retry is
// quick because most failures are a dropped connection that redials at once;
// the cap keeps a replica that is down for long from costing a snapshot per
// room more often than every few seconds.
const (
	DefaultReplicationRetry    = 200 * time.Millisecond
	DefaultReplicationRetryMax = 5 * time.Second
	DefaultClaimRetry          = 100 * time.Millisecond
	DefaultReplicaCache        = 16
	DefaultChunkSize           = 512
)

// Service holds the rooms this node owns and the replicas it keeps.
type Service struct {
	cfg  Config
	view View
	out  Outbound
	log  *slog.Logger

	mu       sync.Mutex
	rooms    map[string]*room
	replicas map[string]*roomlog.Log
	// promised holds, per room, the highest ownership term this node has
	// promised (to a claimant, or by accepting a write of that term):
	// writes of lower terms are refused.
	promised map[string]uint64
	// retired holds the subscribers of rooms this node gave up to a
	// claimant with a newer term, until the claimant fetches the copy.
	retired map[string]map[string][]string
	// replicaUsed is when each replica copy in memory was last written or
	// read: with a store, idle copies leave memory (Sweep).
	replicaUsed map[string]time.Time
	// relinquished holds rooms this node told a new owner it does not hold,
	// with when that promise expires: until then it must not start them.
	relinquished map[string]time.Time
	// closed is set by Close under mu; rooms read it under their own lock
	// (which may not take mu) before arming a timer.
	closed atomic.Bool
	// done is closed by Close: claim rounds in flight stop.
	done chan struct{}
	// acquiring counts claim loops, for Close to wait on.
	acquiring sync.WaitGroup

	// smu guards unstreamed; it is taken last (under a room's lock).
	smu sync.Mutex
	// unstreamed holds the owned rooms with committed entries the event
	// stream has not delivered (Config.Stream).
	unstreamed map[string]struct{}
}

// New returns an empty service.
func New(cfg Config, out Outbound, log *slog.Logger) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Observe == nil {
		cfg.Observe = nopObserver{}
	}
	if cfg.Verified == nil {
		cfg.Verified = func() bool { return true }
	}
	if cfg.ClaimRetry <= 0 {
		cfg.ClaimRetry = DefaultClaimRetry
	}
	if cfg.ReplicaCache <= 0 {
		cfg.ReplicaCache = DefaultReplicaCache
	}
	if cfg.ChunkSize <= 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.MinAnswers == nil {
		cfg.MinAnswers = func() int { return 1 }
	}
	if cfg.ReplicationRetry <= 0 {
		cfg.ReplicationRetry = DefaultReplicationRetry
	}
	if cfg.ReplicationRetryMax < cfg.ReplicationRetry {
		cfg.ReplicationRetryMax = max(DefaultReplicationRetryMax, cfg.ReplicationRetry)
	}
	s := &Service{
		cfg: cfg, view: cfg.View, out: out, log: log,
		rooms:        make(map[string]*room),
		replicas:     make(map[string]*roomlog.Log),
		promised:     make(map[string]uint64),
		retired:      make(map[string]map[string][]string),
		replicaUsed:  make(map[string]time.Time),
		relinquished: make(map[string]time.Time),
		done:         make(chan struct{}),
		unstreamed:   make(map[string]struct{}),
	}
	if cfg.Store != nil {
		// Promises outlive restarts: a node must not accept, after one,
		// a write its promise refused before. A copy's term counts as
		// promised too: the node accepted writes of that term.
		for room, m := range cfg.Store.Rooms() {
			if p := max(m.Promised, m.Term); p > 0 {
				s.promised[room] = p
			}
		}
	}
	return s
}

// logConfig is the configuration of a copy's log: an owner's keeps
// HistorySize messages in memory; with a store, a replica's only
// ReplicaCache of them.
func (s *Service) logConfig(owned bool) roomlog.Config {
	cfg := roomlog.Config{HistorySize: s.cfg.HistorySize, DedupeWindow: s.cfg.DedupeWindow, Now: s.cfg.Now}
	if s.cfg.Store != nil {
		cfg.Backing = s.cfg.Store
		if !owned {
			cfg.HistorySize = min(s.cfg.HistorySize, s.cfg.ReplicaCache)
		}
	}
	return cfg
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

// Promised returns the highest term this node has promised for a room.
func (s *Service) Promised(room string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.promised[room]
}

// Observer is told about events worth a metric.
type Observer interface {
	// Replicated reports how long a message waited for its replicas.
	Replicated(d time.Duration)
	// Handoff reports a room handed out or taken in.
	Handoff(out bool, err error)
	// Held reports a request held while a room waited for its handoff.
	Held()
	// Claimed reports a finished claim: how long it took from the first
	// round to serving, and whether the room was fetched from another node.
	Claimed(d time.Duration, fetched bool)
	// Fenced reports a room this node gave up because another node holds
	// a newer term (a write or a claim showed it).
	Fenced()
	// Conflict reports a replicated message refused because the copy held
	// another message at its sequence number.
	Conflict()
}

type nopObserver struct{}

func (nopObserver) Replicated(time.Duration)    {}
func (nopObserver) Handoff(bool, error)         {}
func (nopObserver) Held()                       {}
func (nopObserver) Claimed(time.Duration, bool) {}
func (nopObserver) Fenced()                     {}
func (nopObserver) Conflict()                   {}
