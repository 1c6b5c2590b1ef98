package cluster

import (
	"errors"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/transport"
)

// Push implements owner.Outbound. Events for this node go straight into the
// hub, synchronously, which keeps them in order with the owner's replies.
func (n *Node) Push(node string, ev feed.Event) {
	if node == n.cfg.Self {
		n.hub.Deliver(ev)
		return
	}
	n.mu.RLock()
	addr := n.view.addrs[node]
	n.mu.RUnlock()
	n.push(node, addr, encodeEvent(ev))
}

// Replicate implements owner.Outbound.
func (n *Node) Replicate(replica, room string, msg protocol.Message, done func(error)) {
	if replica == n.cfg.Self {
		done(n.owners.ApplyReplica(room, epochOf(msg), msg))
		return
	}
	n.mu.RLock()
	addr := n.view.addrs[replica]
	n.mu.RUnlock()
	n.call(replica, addr, encode(opReplicate, replicateReq{Room: room, Epoch: epochOf(msg), Msg: msg}), nil, func(err error) {
		var re *transport.RemoteError
		if errors.As(err, &re) && re.Msg == errCodeGap {
			n.owners.ResyncReplica(room, replica)
		}
		done(err)
	})
}

// epochOf reads the epoch from a message id ("<epoch>-<seq>").
func epochOf(m protocol.Message) string {
	for i := len(m.MID) - 1; i >= 0; i-- {
		if m.MID[i] == '-' {
			return m.MID[:i]
		}
	}
	return ""
}

// SyncReplica implements owner.Outbound.
func (n *Node) SyncReplica(replica string, snap roomlog.Snapshot, done func(error)) {
	if replica == n.cfg.Self {
		done(n.owners.SyncReplica(snap))
		return
	}
	n.mu.RLock()
	addr := n.view.addrs[replica]
	n.mu.RUnlock()
	n.call(replica, addr, encode(opSync, snap), nil, done)
}

// ForgetReplica implements owner.Outbound.
func (n *Node) ForgetReplica(replica, room string) {
	if replica == n.cfg.Self {
		n.owners.ForgetReplica(room)
		return
	}
	n.mu.RLock()
	addr := n.view.addrs[replica]
	n.mu.RUnlock()
	n.push(replica, addr, encode(opForget, forgetReq{Room: room}))
}
