package cluster

import (
	"errors"
	"fmt"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/rpc"
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

// errSelf refuses an inter-node call addressed to this node itself.
var errSelf = fmt.Errorf("%w: a node does not replicate to itself", transport.ErrUnknownPeer)

// Push implements owner.Outbound. Events for this node go straight into the
// hub, synchronously, which keeps them in order with the owner's replies.
func (n *Node) Push(node string, ev feed.Event) {
	if node == n.cfg.Self {
		n.hub.Deliver(ev)
		return
	}
	n.push(node, n.addrOf(node), rpc.EncodeEvent(ev))
}

// Replicate implements owner.Outbound. A replica that answers with a gap
// is brought to the log again (ResyncReplica).
func (n *Node) Replicate(replica string, rep owner.Replication, done func(error)) {
	if replica == n.cfg.Self {
		go done(errSelf)
		return
	}
	n.call(replica, n.addrOf(replica), rpc.Encode(rpc.OpReplicate, rep), nil, func(err error) {
		if errors.Is(err, roomlog.ErrGap) {
			n.owners.ResyncReplica(rep.Room, replica)
		}
		done(err)
	})
}

// SyncOffer implements owner.Outbound.
func (n *Node) SyncOffer(replica string, offer owner.SyncOffer, done func(owner.SyncAnswer, error)) {
	if replica == n.cfg.Self {
		go done(owner.SyncAnswer{}, errSelf)
		return
	}
	var ans owner.SyncAnswer
	n.call(replica, n.addrOf(replica), rpc.Encode(rpc.OpSync, offer), &ans, func(err error) { done(ans, err) })
}

// SyncChunk implements owner.Outbound.
func (n *Node) SyncChunk(replica string, chunk owner.Chunk, done func(error)) {
	if replica == n.cfg.Self {
		go done(errSelf)
		return
	}
	n.call(replica, n.addrOf(replica), rpc.Encode(rpc.OpSyncChunk, chunk), nil, done)
}

// ForgetReplica implements owner.Outbound.
func (n *Node) ForgetReplica(replica, room string, term uint64) {
	if replica == n.cfg.Self {
		n.owners.ForgetReplica(room, term)
		return
	}
	n.push(replica, n.addrOf(replica), rpc.Encode(rpc.OpForget, rpc.ForgetReq{Room: room, Term: term}))
}

// StreamCursor implements owner.CursorSender.
func (n *Node) StreamCursor(replica, room, epoch string, seq uint64) {
	if replica == n.cfg.Self {
		return
	}
	n.push(replica, n.addrOf(replica), rpc.Encode(rpc.OpStreamCursor, rpc.StreamCursorReq{Room: room, Epoch: epoch, Seq: seq}))
}

// Claim implements owner.Outbound.
func (n *Node) Claim(peer string, req owner.ClaimRequest, done func(owner.ClaimReply, error)) {
	var rep owner.ClaimReply
	n.call(peer, n.addrOf(peer), rpc.Encode(rpc.OpClaim, req), &rep, func(err error) { done(rep, err) })
}

// Fetch implements owner.Outbound.
func (n *Node) Fetch(peer string, req owner.FetchRequest, done func(owner.FetchReply, error)) {
	var rep owner.FetchReply
	n.call(peer, n.addrOf(peer), rpc.Encode(rpc.OpFetch, req), &rep, func(err error) { done(rep, err) })
}

// HandOff implements owner.Outbound.
func (n *Node) HandOff(node string, notice owner.HandoffNotice, done func(error)) {
	n.call(node, n.addrOf(node), rpc.Encode(rpc.OpHandoff, notice), nil, done)
}
