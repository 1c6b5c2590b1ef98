package cluster

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/rendezvous"
	"github.com/ringchat/ringchat/chatd/rpc"
)

// reconcilePeriod is how often a node re-checks its rooms against the view
// even when nothing changed: it retries failed handoffs, lets a handoff held
// up by unreplicated messages go without them once it has waited long
// enough (owner.Service.HandOff), and forgets idle rooms. Replicas that
// missed messages are not this loop's business: with an unchanged replica
// set SetReplicas does nothing, and the owner service repairs them on its
// own retry timer.
const reconcilePeriod = time.Second

// reconcile brings this node's rooms in line with a new view: forget nodes
// that left, hand over rooms this node no longer owns, re-point replication
// of rooms it still owns, and re-subscribe local rooms whose owner changed.
func (n *Node) reconcile(old, v nodeView) {
	for name := range old.addrs {
		if _, ok := v.addrs[name]; !ok && name != n.cfg.Self {
			n.owners.DropNode(name)
			if n.peers != nil {
				n.peers.Forget(name)
			}
		}
	}
	for name, addr := range v.addrs {
		if _, ok := old.addrs[name]; !ok && name != n.cfg.Self {
			// A member this node had dropped (or never saw): whatever it
			// was subscribed to here was dropped with it, and if it was
			// only declared dead (paused, cut off) it does not know. It
			// re-subscribes what this node owns.
			n.push(name, addr, rpc.Bare(rpc.OpRejoined))
		}
	}
	for _, room := range n.owners.OwnedRooms() {
		o := rendezvous.Owner(room, v.active)
		if o == "" {
			continue // no active member at all (this node is draining alone)
		}
		if o != n.cfg.Self {
			n.owners.HandOff(room, o)
			continue
		}
		n.owners.Reclaim(room)
		n.owners.SetReplicas(room, replicasOf(room, v.active, n.cfg.ReplicationFactor))
	}
	if !slices.Equal(old.active, v.active) {
		for _, room := range n.hub.LocalRooms() {
			if rendezvous.Owner(room, old.active) != rendezvous.Owner(room, v.active) {
				n.hub.Resubscribe(room)
			}
		}
	}
}

// viewFrom converts a membership view. Members that speak another
// inter-node protocol version than this node are left out altogether (they
// own nothing, replicate nothing, and their claims and writes are refused
// as from non-members): mixing versions could break the fencing rule, so an
// upgrade across protocol versions is a full restart (docs/architecture.md).
// foreign receives the names of those members.
func viewFrom(mv membership.View, foreign func(name string, proto int)) nodeView {
	v := nodeView{version: mv.Version, addrs: make(map[string]string, len(mv.Members))}
	for _, m := range mv.Members {
		if m.Name != mv.Self && m.Meta.Proto != rpc.Version {
			if foreign != nil {
				foreign(m.Name, m.Meta.Proto)
			}
			continue
		}
		v.addrs[m.Name] = m.Meta.RPCAddr
		if m.Meta.State != membership.StateActive && m.Meta.State != membership.StateDraining {
			if v.joining == nil {
				v.joining = make(map[string]bool)
			}
			v.joining[m.Name] = true
		}
	}
	for _, m := range mv.Active() {
		if _, ok := v.addrs[m.Name]; ok {
			v.active = append(v.active, m.Name)
		}
	}
	slices.Sort(v.active)
	v.id = viewID(v.active)
	return v
}

// Run follows membership changes (when m is not nil) and re-checks rooms
// periodically until ctx is done. It is the node's one long-lived goroutine;
// its owner is the app.
func (n *Node) Run(ctx context.Context, m *membership.Membership) {
	var views <-chan membership.View
	if m != nil {
		ch, cancel := m.Subscribe()
		defer cancel()
		views = ch
		n.setView(viewFrom(m.View(), n.foreignMember))
	}
	t := time.NewTicker(reconcilePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.retained:
			n.owners.Trim()
		case mv := <-views:
			n.setView(viewFrom(mv, n.foreignMember))
			n.updateGauges(m)
		case <-t.C:
			v, _ := n.currentView()
			n.reconcile(v, v)
			n.owners.Sweep()
			n.updateGauges(m)
		}
	}
}

// foreignMember logs, once per member and version, a member that speaks
// another inter-node protocol version and is therefore left out.
func (n *Node) foreignMember(name string, proto int) {
	key := name + "/" + strconv.Itoa(proto)
	if _, seen := n.foreignSeen.LoadOrStore(key, true); !seen {
		n.log.Error("ignoring a member that speaks another inter-node protocol version; upgrades across protocol versions need every node restarted",
			"member", name, "its_version", proto, "our_version", rpc.Version)
	}
}

// Retained tells the node that the store's retention removed messages:
// the rooms in memory forget them at once (not only at the next pass). It
// never blocks.
func (n *Node) Retained() {
	select {
	case n.retained <- struct{}{}:
	default:
	}
}

// SetPeers attaches the inter-node transport (after the node exists, since
// the transport needs the node as its handler).
func (n *Node) SetPeers(p peerLink) { n.peers = p }

// Close stops the node's routing; requests in flight fail.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.owners.Close()
}
