package cluster

import (
	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// handlers builds the table of what this node does with each op it is
// sent: routed requests go to the owner service (after counting a
// disagreement about the view), direct messages and events to the hub.
func (n *Node) handlers() *rpc.Table {
	t := rpc.NewTable()
	rpc.OnRequestOf(t, rpc.OpSubscribe, func(from transport.Peer, req rpc.SubscribeReq, a rpc.Answer) {
		n.checkView(from.Name, req.Room, req.View)
		n.owners.Subscribe(req.Room, from.Name, req.Users, rpc.ReplyFunc[feed.State](a))
	})
	rpc.OnRequestOf(t, rpc.OpPublish, func(from transport.Peer, req rpc.PublishReq, a rpc.Answer) {
		if n.refuseWithoutQuorum(a) {
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.Publish(req.Room, req.User, req.CID, req.Text, rpc.ReplyFunc[protocol.Ack](a))
	})
	rpc.OnRequestOf(t, rpc.OpDeleteMessage, func(from transport.Peer, req rpc.DeleteMessageReq, a rpc.Answer) {
		if n.refuseWithoutQuorum(a) {
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.Delete(req.Room, req.By, req.Seq, rpc.ReplyFunc[protocol.Ack](a))
	})
	rpc.OnRequestOf(t, rpc.OpHistory, func(from transport.Peer, req rpc.HistoryReq, a rpc.Answer) {
		n.checkView(from.Name, req.Room, req.View)
		n.owners.History(req.Room, req.Before, req.Limit, rpc.ReplyFunc[protocol.HistoryPage](a))
	})
	rpc.OnRequestOf(t, rpc.OpDirect, func(_ transport.Peer, req rpc.DirectReq, a rpc.Answer) {
		a.OK(rpc.DirectResp{Delivered: n.hub.DeliverDirect(req.To, req.From, req.Except, req.Frame)})
	})
	rpc.OnRequestOf(t, rpc.OpDisconnect, func(_ transport.Peer, req rpc.DisconnectReq, a rpc.Answer) {
		a.OK(rpc.DisconnectResp{Closed: n.hub.DisconnectUser(req.User, req.Code, req.Reason)})
	})
	rpc.OnRequestOf(t, rpc.OpKick, func(_ transport.Peer, req rpc.KickReq, a rpc.Answer) {
		a.OK(rpc.KickResp{Kicked: n.hub.Kick(req.Room, req.User, req.Reason)})
	})
	rpc.OnRequestOf(t, rpc.OpSubscribeUser, func(_ transport.Peer, req rpc.SubscribeUserReq, a rpc.Answer) {
		a.OK(rpc.SubscribeUserResp{Subscribed: n.hub.SubscribeUser(req.Room, req.User)})
	})
	rpc.OnRequestOf(t, rpc.OpOwnedRooms, func(_ transport.Peer, _ rpc.OwnedRoomsReq, a rpc.Answer) {
		a.OK(n.ownedRooms())
	})
	rpc.OnRequestOf(t, rpc.OpRoomUsers, func(_ transport.Peer, req rpc.RoomUsersReq, a rpc.Answer) {
		owned, count, users := n.owners.Present(req.Room, req.Limit)
		a.OK(rpc.RoomUsersResp{Owner: owned, Count: count, Users: users})
	})
	rpc.OnRequestOf(t, rpc.OpUserConns, func(_ transport.Peer, req rpc.UserConnsReq, a rpc.Answer) {
		a.OK(localConns(n.hub.UserConnections(req.User)))
	})
	// Writes to a replica are answered once durable there, from the
	// store's goroutine (at once without a store).
	rpc.OnRequestOf(t, rpc.OpReplicate, func(from transport.Peer, req owner.Replication, a rpc.Answer) {
		n.owners.ApplyReplica(from.Name, req, a.Done)
	})
	rpc.OnRequestOf(t, rpc.OpSync, func(from transport.Peer, offer owner.SyncOffer, a rpc.Answer) {
		n.owners.HandleSyncOffer(from.Name, offer, rpc.ReplyFunc[owner.SyncAnswer](a))
	})
	rpc.OnRequestOf(t, rpc.OpSyncChunk, func(from transport.Peer, chunk owner.Chunk, a rpc.Answer) {
		n.owners.HandleSyncChunk(from.Name, chunk, a.Done)
	})
	rpc.OnRequestOf(t, rpc.OpHandoff, func(_ transport.Peer, notice owner.HandoffNotice, a rpc.Answer) {
		a.Done(n.owners.AcceptHandoff(notice))
	})
	rpc.OnRequestOf(t, rpc.OpClaim, func(from transport.Peer, req owner.ClaimRequest, a rpc.Answer) {
		n.owners.HandleClaim(from.Name, req, func(rep owner.ClaimReply) { a.OK(rep) })
	})
	rpc.OnRequestOf(t, rpc.OpFetch, func(_ transport.Peer, req owner.FetchRequest, a rpc.Answer) {
		rep, err := n.owners.HandleFetch(req)
		if err != nil {
			a.Fail(err)
			return
		}
		a.OK(rep)
	})
	// Ping and ring stats carry no body: they are answered without decoding
	// one.
	t.OnRequest(rpc.OpPing, func(_ transport.Peer, _ []byte, a rpc.Answer) { a.Empty() })
	t.OnRequest(rpc.OpRingStats, func(_ transport.Peer, _ []byte, a rpc.Answer) { a.OK(n.ringStats()) })

	t.OnPush(rpc.OpEvent, func(_ transport.Peer, body []byte) error {
		ev, err := rpc.DecodeEvent(body)
		if err == nil {
			n.hub.Deliver(ev)
		}
		return err
	})
	rpc.OnPushOf(t, rpc.OpUnsubscribe, func(from transport.Peer, req rpc.SubscribeReq) {
		n.owners.Unsubscribe(req.Room, from.Name)
	})
	rpc.OnPushOf(t, rpc.OpPresence, func(from transport.Peer, req rpc.PresenceReq) {
		n.owners.PresenceChange(req.Room, from.Name, req.User, req.Joined)
	})
	rpc.OnPushOf(t, rpc.OpTyping, func(_ transport.Peer, req rpc.TypingReq) {
		n.owners.Typing(req.Room, req.User)
	})
	rpc.OnPushOf(t, rpc.OpStreamCursor, func(_ transport.Peer, req rpc.StreamCursorReq) {
		n.owners.HandleStreamCursor(req.Room, req.Epoch, req.Seq)
	})
	rpc.OnPushOf(t, rpc.OpForget, func(_ transport.Peer, req rpc.ForgetReq) {
		n.owners.ForgetReplica(req.Room, req.Term)
	})
	t.OnPush(rpc.OpRejoined, func(from transport.Peer, _ []byte) error {
		n.hub.ResubscribeOwnedBy(func(room string) bool {
			o, _ := n.ownerOf(room)
			return o == from.Name
		})
		return nil
	})
	return t
}

// HandlePush implements transport.Handler: owner events and one-way
// notifications from other nodes.
func (n *Node) HandlePush(from transport.Peer, payload []byte) {
	if err := n.table.ServePush(from, payload); err != nil {
		n.log.Warn("bad push from peer", "peer", from.Name, "err", err)
	}
}

// HandleRequest implements transport.Handler. Replies to subscribe are made
// under the owner's room lock (inside the owner service), which orders them
// before any later event pushed to the same node.
func (n *Node) HandleRequest(from transport.Peer, payload []byte, reply transport.Reply) {
	n.table.ServeRequest(from, payload, reply)
}

// refuseWithoutQuorum refuses a write (a message, a deletion) on the
// minority side of a partition, and reports whether it did. ErrNoQuorum
// travels as the owner service's refusal: the sender retries both alike.
func (n *Node) refuseWithoutQuorum(a rpc.Answer) bool {
	if n.hasQuorum() {
		return false
	}
	a.Refuse(rpc.CodeNoQuorum)
	return true
}
