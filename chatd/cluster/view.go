package cluster

import (
	"slices"

	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// ownerView is the owner service's window on this node's membership view
// (owner.View). Each call reads the current view under the node's read
// lock; none calls back into the owner service.
type ownerView struct{ n *Node }

// Owner implements owner.View.
func (v ownerView) Owner(room string) string {
	o, _ := v.n.ownerOf(room)
	return o
}

// PreviousOwner implements owner.View: the room's owner in the view before
// the last change of the active members.
func (v ownerView) PreviousOwner(room string) (string, bool) {
	n := v.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	prev := rendezvous.Owner(room, n.prevView.active)
	_, alive := n.view.addrs[prev]
	return prev, alive
}

// Replicas implements owner.View. This node is never its own replica: when
// the view no longer names it the owner (it is handing the room on, or took
// a handoff its view has not caught up with), the others are.
func (v ownerView) Replicas(room string) []string {
	view, _ := v.n.currentView()
	reps := replicasOf(room, view.active, v.n.cfg.ReplicationFactor)
	return slices.DeleteFunc(reps, func(name string) bool { return name == v.n.cfg.Self })
}

// Peers implements owner.View: every live member but this node that is
// active or draining (members that own or replicate rooms, or did).
func (v ownerView) Peers() []string { return v.peers(false) }

// Newcomers implements owner.View: the live members still joining.
func (v ownerView) Newcomers() []string { return v.peers(true) }

func (v ownerView) peers(joining bool) []string {
	view, _ := v.n.currentView()
	peers := make([]string, 0, len(view.addrs))
	for name := range view.addrs {
		if name != v.n.cfg.Self && view.joining[name] == joining {
			peers = append(peers, name)
		}
	}
	return peers
}

// Alive implements owner.View.
func (v ownerView) Alive(node string) bool {
	if node == v.n.cfg.Self {
		return true
	}
	view, _ := v.n.currentView()
	_, ok := view.addrs[node]
	return ok
}

// HasQuorum implements owner.View.
func (v ownerView) HasQuorum() bool { return v.n.hasQuorum() }

// Changed implements owner.View.
func (v ownerView) Changed() <-chan struct{} {
	_, ch := v.n.currentView()
	return ch
}
