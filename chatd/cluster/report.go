package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// What the admin API's documents read from the node (chatd/admin builds
// them; these methods are its admin.Node).

// Self is this node's name.
func (n *Node) Self() string { return n.cfg.Self }

// ReplicationFactor is the configured replication factor (the effective
// one is capped by the number of active members).
func (n *Node) ReplicationFactor() int { return n.cfg.ReplicationFactor }

// RoutingView returns the view this node routes by: its version, its
// digest (equal on two nodes with the same active members) and its active
// members, sorted. The slice is the view's own: callers must not modify it.
func (n *Node) RoutingView() (version uint64, id string, active []string) {
	v, _ := n.currentView()
	return v.version, v.id, v.active
}

// RingStats asks the member name, at its inter-node address addr, for its
// room counts (rpc.OpRingStats), waiting at most timeout. This node answers
// for itself at once. done runs once, on any goroutine, maybe before
// RingStats returns.
func (n *Node) RingStats(name, addr string, timeout time.Duration, done func(rpc.RingStats, error)) {
	switch {
	case name == n.cfg.Self:
		done(n.ringStats(), nil)
	case n.peers == nil:
		done(rpc.RingStats{}, errors.New("no inter-node transport"))
	case addr == "":
		done(rpc.RingStats{}, errors.New("no inter-node address in its gossip metadata"))
	default:
		n.peers.Request(transport.Peer{Name: name, Addr: addr}, rpc.Bare(rpc.OpRingStats), timeout, func(b []byte, err error) {
			var resp rpc.RingStats
			if err == nil {
				if err := json.Unmarshal(b, &resp); err != nil {
					done(resp, fmt.Errorf("bad answer: %w", err))
					return
				}
			}
			done(resp, err)
		})
	}
}

// ringStats is this node's answer to rpc.OpRingStats.
func (n *Node) ringStats() rpc.RingStats {
	owned, replicas := n.owners.Counts()
	v, _ := n.currentView()
	return rpc.RingStats{Owned: owned, Replicas: replicas, Local: len(n.hub.LocalRooms()), View: v.id}
}
