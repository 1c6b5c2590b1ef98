package cluster

import (
	"errors"
	"fmt"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/transport"
)

// The owner service reaches other nodes through these methods
// (owner.Outbound). Calls to this node itself go straight to the local
// service; the owner never replicates to itself, but a view that changes
// under it may name this node for a moment.

// addrOf returns a live member's transport address in the current view.
func (n *Node) addrOf(node string) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.view.addrs[node]
}

// Push implements owner.Outbound. Events for this node go straight into the
// hub, synchronously, which keeps them in order with the owner's replies.
func (n *Node) Push(node string, ev feed.Event) {
	if node == n.cfg.Self {
		n.hub.Deliver(ev)
		return
	}
	n.push(node, n.addrOf(node), encodeEvent(ev))
}

// Replicate implements owner.Outbound. A replica that answers with a gap
// gets a full copy (ResyncReplica).
func (n *Node) Replicate(replica string, rep owner.Replication, done func(error)) {
	if replica == n.cfg.Self {
		go done(fmt.Errorf("%w: a node does not replicate to itself", transport.ErrUnknownPeer))
		return
	}
	n.call(replica, n.addrOf(replica), encode(opReplicate, rep), nil, func(err error) {
		if errors.Is(err, roomlog.ErrGap) {
			n.owners.ResyncReplica(rep.Room, replica)
		}
		done(err)
	})
}

// SyncReplica implements owner.Outbound.
func (n *Node) SyncReplica(replica string, snap roomlog.Snapshot, done func(error)) {
	if replica == n.cfg.Self {
		go done(fmt.Errorf("%w: a node does not replicate to itself", transport.ErrUnknownPeer))
		return
	}
	n.call(replica, n.addrOf(replica), encode(opSync, snap), nil, done)
}

// ForgetReplica implements owner.Outbound.
func (n *Node) ForgetReplica(replica, room string) {
	if replica == n.cfg.Self {
		n.owners.ForgetReplica(room)
		return
	}
	n.push(replica, n.addrOf(replica), encode(opForget, forgetReq{Room: room}))
}

// Claim implements owner.Outbound.
func (n *Node) Claim(peer string, req owner.ClaimRequest, done func(owner.ClaimReply, error)) {
	var rep owner.ClaimReply
	n.call(peer, n.addrOf(peer), encode(opClaim, req), &rep, func(err error) { done(rep, err) })
}

// Fetch implements owner.Outbound.
func (n *Node) Fetch(peer, room string, term uint64, done func(owner.HandoffState, error)) {
	var st owner.HandoffState
	n.call(peer, n.addrOf(peer), encode(opFetch, fetchReq{Room: room, Term: term}), &st, func(err error) { done(st, err) })
}

// HandOff implements owner.Outbound.
func (n *Node) HandOff(node string, st owner.HandoffState, done func(error)) {
	n.call(node, n.addrOf(node), encode(opHandoff, st), nil, done)
}
