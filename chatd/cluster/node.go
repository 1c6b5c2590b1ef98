// Package cluster turns one chatd process into a member of a ringchat
// cluster. It connects the local hub (connections) to the owner service
// (rooms this node owns) through routing: every room has exactly one owner,
// the node that rendezvous hashing picks among the active members, and every
// request about a room goes to it, over the inter-node transport when it is
// another node. The package also reacts to membership changes: it hands
// rooms over, re-points replication and re-subscribes local rooms.
//
// A node without peers (no --join) is a cluster of one and runs the very same
// code with an in-process loopback instead of the transport.
package cluster

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rendezvous"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// Config tunes a node's routing.
type Config struct {
	// Self is this node's name (its memberlist name).
	Self string
	// ReplicationFactor is the number of nodes that store a room's
	// messages before they are acknowledged, the owner included. It is
	// capped by the number of active members.
	ReplicationFactor int
	// ExpectedNodes is the cluster's intended size at start (SetExpectedNodes
	// changes it). A node that sees no strict majority of it alive refuses
	// new messages: on the minority side of a partition nothing new is
	// acknowledged, so nothing acknowledged can be lost when the sides merge.
	// 0 disables the rule.
	ExpectedNodes int
	// Metrics, when set, receives the cluster's metrics.
	Metrics *metrics.Metrics
	// RouteTimeout bounds how long a request keeps retrying while a room
	// moves or the view catches up, before the client gets "unavailable".
	RouteTimeout time.Duration
	// CallTimeout bounds one inter-node request.
	CallTimeout time.Duration
	// HandoffGrace is how long ownership changes are considered fresh: a new
	// owner waits this long for the previous owner's handoff.
	HandoffGrace time.Duration
}

// Node is this process's place in the cluster.
type Node struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Metrics
	hub     *hub.Hub
	owners  *owner.Service
	peers   peerLink // nil in a cluster of one
	// table dispatches what other nodes send (see handler.go).
	table *rpc.Table

	// expected is the cluster's intended size (Config.ExpectedNodes, then
	// SetExpectedNodes): it changes at run time so that scaling a cluster
	// does not restart its nodes.
	expected atomic.Int64

	mu sync.RWMutex
	// view is the current membership: active is who owns rooms; addrs maps
	// every live member to its transport address.
	view     nodeView
	prevView nodeView
	// changedAt is when the active set last changed.
	changedAt time.Time
	// viewWait is closed and replaced on every view change, so retries can
	// wait for the view to move instead of polling.
	viewWait chan struct{}
	closed   bool

	// suspending is set while the rooms are being put back into a claim
	// (see claimAgain): nothing commits meanwhile.
	suspending atomic.Bool
	// pause is the pause detector (see pause.go).
	pause pauseDetector
	// foreignSeen remembers the members of another protocol version
	// already logged.
	foreignSeen sync.Map
	// retained is kicked after a retention pass (see Retained).
	retained chan struct{}
}

type nodeView struct {
	version uint64
	id      string            // digest of active, comparable across nodes
	active  []string          // sorted
	addrs   map[string]string // live members (any state) → transport address
	// joining holds the live members that are neither active nor
	// draining: they have never owned or replicated a room in this life.
	joining map[string]bool
}

// ErrNoQuorum is returned for messages refused on the minority side of a
// partition.
var ErrNoQuorum = errors.New("no quorum: this node sees too few cluster members to accept messages")

// HasQuorum reports whether this node sees a majority of the expected
// cluster (always true without --expected-nodes), and how many it sees.
func (n *Node) HasQuorum() (bool, string) {
	if n.hasQuorum() {
		return true, ""
	}
	v, _ := n.currentView()
	return false, fmt.Sprintf("no quorum: sees %d of %d expected nodes", len(v.addrs), n.ExpectedNodes())
}

// minAnswers is how many members must answer a claim before a room nobody
// holds a copy of starts afresh (owner.Config.MinAnswers): N−R+1 of the N
// expected members meet every set of R copies. Without an expected size,
// the node itself suffices.
func (n *Node) minAnswers() int {
	e := n.ExpectedNodes()
	if e <= 0 {
		return 1
	}
	return max(1, e-max(n.cfg.ReplicationFactor, 1)+1)
}

// ExpectedNodes is the cluster size the quorum rule currently applies.
func (n *Node) ExpectedNodes() int { return int(n.expected.Load()) }

// SetExpectedNodes changes the cluster size the quorum rule applies (0
// disables it). Raising it before a cluster grows and lowering it only once
// the cluster has shrunk keeps it at or above the number of nodes that exist,
// which is what keeps two sides of a partition from both holding a majority.
func (n *Node) SetExpectedNodes(v int) {
	old := n.expected.Load()
	if old == int64(v) {
		return
	}
	// As in setView, rooms are suspended before the size that gives this
	// node its quorum back takes effect, so no request is sequenced on a
	// stale copy in between. (One goroutine, the file watcher, calls this.)
	view, _ := n.currentView()
	regained := !quorumWith(view, int(old)) && quorumWith(view, v)
	if regained {
		n.suspending.Store(true)
	}
	n.expected.Store(int64(v))
	if regained {
		n.claimAgain("quorum regained")
		n.endSuspension()
	}
	if n.metrics != nil {
		n.metrics.ExpectedNodes.Set(float64(v))
	}
	n.log.Info("expected nodes changed", "from", old, "to", v)
}

// hasQuorum reports whether this node sees a strict majority of the
// expected cluster alive (itself included).
func (n *Node) hasQuorum() bool {
	v, _ := n.currentView()
	return n.quorumIn(v)
}

// quorumIn reports whether view v holds a strict majority of the expected
// cluster.
func (n *Node) quorumIn(v nodeView) bool { return quorumWith(v, n.ExpectedNodes()) }

// quorumWith reports whether view v holds a strict majority of expected
// nodes (always, when expected is 0).
func quorumWith(v nodeView, expected int) bool {
	return expected <= 0 || 2*len(v.addrs) > expected
}

// claimAgain puts every room this node owns back into a claim (see
// owner.Service.Suspend): the node regained its quorum, or noticed it was
// paused or suspected, so others may have taken its rooms over meanwhile.
func (n *Node) claimAgain(why string) {
	rooms := n.owners.Suspend()
	if len(rooms) > 0 {
		n.log.Info("claiming the rooms owned here again", "why", why, "rooms", len(rooms))
	}
}

// endSuspension makes the node verified again after claimAgain, and commits
// what replicas acknowledged while it was not (owner.Service.Recommit).
func (n *Node) endSuspension() {
	n.suspending.Store(false)
	n.owners.Recommit()
}

// ErrUnavailable is returned when a request could not reach the room's owner
// within RouteTimeout.
var ErrUnavailable = errors.New("room owner unavailable")

// New creates a node. The owner service is created by the node, which is its
// Outbound; the hub is given and gets the node as its Router.
func New(cfg Config, h *hub.Hub, ownerCfg owner.Config, log *slog.Logger) *Node {
	n := &Node{
		metrics:  cfg.Metrics,
		cfg:      cfg,
		log:      log,
		hub:      h,
		viewWait: make(chan struct{}),
		retained: make(chan struct{}, 1),
	}
	ownerCfg.Self = cfg.Self
	ownerCfg.HandoffGrace = cfg.HandoffGrace
	ownerCfg.View = ownerView{n}
	ownerCfg.Verified = n.verified
	ownerCfg.MinAnswers = n.minAnswers
	if cfg.Metrics != nil {
		ownerCfg.Observe = observer{cfg.Metrics}
	}
	n.owners = owner.New(ownerCfg, n, log)
	n.table = n.handlers()
	n.expected.Store(int64(cfg.ExpectedNodes))
	if cfg.Metrics != nil {
		cfg.Metrics.ExpectedNodes.Set(float64(cfg.ExpectedNodes))
	}
	n.view = nodeView{active: []string{cfg.Self}, addrs: map[string]string{cfg.Self: ""}}
	n.view.id = viewID(n.view.active)
	n.prevView = n.view
	h.SetRouter(n)
	return n
}

// Owners exposes the owner service (for the admin API and tests).
func (n *Node) Owners() *owner.Service { return n.owners }

// currentView returns the view under the read lock.
func (n *Node) currentView() (nodeView, chan struct{}) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.view, n.viewWait
}

// ownerOf returns the owner of room in the current view.
func (n *Node) ownerOf(room string) (string, string) {
	v, _ := n.currentView()
	o := rendezvous.Owner(room, v.active)
	return o, v.addrs[o]
}

// replicasOf returns the replicas of an owned room (owner excluded).
func replicasOf(room string, active []string, factor int) []string {
	owners := rendezvous.Owners(room, active, max(factor, 1))
	if len(owners) <= 1 {
		return nil
	}
	return owners[1:]
}

// setView installs a new membership view and reacts to it.
func (n *Node) setView(v nodeView) {
	// Rooms are suspended before the view that gives this node its quorum
	// back is installed, so no request is sequenced on a stale copy in
	// between; their claims go out once the view is in place.
	n.mu.RLock()
	regained := !n.closed && !n.quorumIn(n.view) && n.quorumIn(v)
	n.mu.RUnlock()
	if regained {
		// Nothing may commit between the view that restores the quorum and
		// the claims that check it: Verified is false meanwhile.
		n.suspending.Store(true)
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	old := n.view
	if !slices.Equal(old.active, v.active) {
		n.prevView = old
		n.changedAt = time.Now()
	}
	n.view = v
	close(n.viewWait)
	n.viewWait = make(chan struct{})
	n.mu.Unlock()
	if regained {
		n.claimAgain("quorum regained")
		n.endSuspension()
	}
	n.reconcile(old, v)
}

// peerLink is what the node needs from the transport.
type peerLink interface {
	Request(p transport.Peer, payload []byte, timeout time.Duration, onReply func([]byte, error))
	Send(p transport.Peer, payload []byte) error
	Forget(name string)
}

// HasActivePeers reports whether another node is active, i.e. could take
// this node's rooms.
func (n *Node) HasActivePeers() bool {
	v, _ := n.currentView()
	for _, name := range v.active {
		if name != n.cfg.Self {
			return true
		}
	}
	return false
}

// viewID digests an active member list; two nodes with the same active set
// have the same id, whatever their local view versions.
func viewID(active []string) string {
	h := fnv.New64a()
	for _, name := range active {
		h.Write([]byte(name))
		h.Write([]byte{0})
	}
	return strconv.FormatUint(h.Sum64(), 36)
}

// checkView compares a forwarded request's view with this node's, counting
// and logging disagreements: they are expected for a moment after every
// membership change, and a sign of trouble when they persist.
func (n *Node) checkView(from, room, theirs string) {
	if theirs == "" {
		return
	}
	v, _ := n.currentView()
	if theirs == v.id {
		return
	}
	if n.metrics != nil {
		n.metrics.ViewMismatches.Inc()
	}
	n.log.Debug("forwarded request from a node with another view", "peer", from, "room", room, "their_view", theirs, "our_view", v.id)
}
