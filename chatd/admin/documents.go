package admin

import (
	"context"
	"time"

	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rpc"
)

// The admin API's documents are built here from four small views of the
// node's parts, each an interface its part already satisfies, so this
// package needs neither chatd/cluster nor a running node to be tested.

// Node is this node's routing, as the documents report it; *cluster.Node
// implements it.
type Node interface {
	// Self is this node's name.
	Self() string
	// RoutingView returns the view the node routes by: its version (local
	// to this node), its digest (two nodes with the same digest place every
	// room alike) and its active members, sorted and not to be modified.
	RoutingView() (version uint64, id string, active []string)
	// ReplicationFactor is the configured replication factor.
	ReplicationFactor() int
	// ExpectedNodes is the cluster size the quorum rule applies (0: none).
	ExpectedNodes() int
	// RingStats asks the member name, at its inter-node address addr, for
	// its room counts, waiting at most timeout; the node answers for
	// itself without the network. done runs once, on any goroutine, maybe
	// before RingStats returns.
	RingStats(name, addr string, timeout time.Duration, done func(rpc.RingStats, error))
}

// Owners is the owner service's part of the documents (the rooms this node
// owns and replicates); *owner.Service implements it.
type Owners interface {
	OwnedRooms() []string
	ReplicaRooms() []string
	RoomStats() []owner.RoomStat
}

// LocalRooms is the hub's part of the documents (rooms with subscribers on
// this node); *hub.Hub implements it.
type LocalRooms interface {
	Stats() []hub.RoomStat
}

// Members is the gossip membership; *membership.Membership implements it.
type Members interface {
	View() membership.View
}

// Documents builds the admin API's documents.
type Documents struct {
	Node   Node
	Owners Owners
	Hub    LocalRooms
	// Members is nil for a cluster of one: a nil interface, not a nil
	// *membership.Membership in one, which would read as clustered.
	Members Members
}

// Views serves the documents through the handler.
func (d Documents) Views() Views {
	return Views{
		Cluster: func() any { return d.Cluster() },
		Ring:    func(ctx context.Context) any { return d.Ring(ctx) },
		Rooms:   func() any { return d.Rooms() },
	}
}
