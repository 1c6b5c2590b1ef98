package cluster

import (
	"encoding/json"
	"fmt"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/transport"
)

// HandlePush implements transport.Handler: owner events and one-way
// notifications from other nodes.
func (n *Node) HandlePush(from transport.Peer, payload []byte) {
	if len(payload) == 0 {
		return
	}
	body := payload[1:]
	var err error
	switch op(payload[0]) {
	case opEvent:
		var ev feed.Event
		if ev, err = decodeEvent(body); err == nil {
			n.hub.Deliver(ev)
		}
	case opUnsubscribe:
		var req subscribeReq
		if err = json.Unmarshal(body, &req); err == nil {
			n.owners.Unsubscribe(req.Room, from.Name)
		}
	case opPresence:
		var req presenceReq
		if err = json.Unmarshal(body, &req); err == nil {
			n.owners.PresenceChange(req.Room, from.Name, req.User, req.Joined)
		}
	case opTyping:
		var req typingReq
		if err = json.Unmarshal(body, &req); err == nil {
			n.owners.Typing(req.Room, req.User)
		}
	case opForget:
		var req forgetReq
		if err = json.Unmarshal(body, &req); err == nil {
			n.owners.ForgetReplica(req.Room)
		}
	default:
		err = fmt.Errorf("unknown push op %d", payload[0])
	}
	if err != nil {
		n.log.Warn("bad push from peer", "peer", from.Name, "err", err)
	}
}

// HandleRequest implements transport.Handler. Replies to subscribe are made
// under the owner's room lock (inside the owner service), which orders them
// before any later event pushed to the same node.
func (n *Node) HandleRequest(from transport.Peer, payload []byte, reply transport.Reply) {
	if len(payload) == 0 {
		_ = reply.Err("empty request")
		return
	}
	body := payload[1:]
	fail := func(err error) { _ = reply.Err(errCode(err)) }
	ok := func(v any) {
		b, err := json.Marshal(v)
		if err != nil {
			_ = reply.Err("encode reply: " + err.Error())
			return
		}
		_ = reply.OK(b)
	}
	bad := func(err error) { _ = reply.Err("bad request: " + err.Error()) }
	switch op(payload[0]) {
	case opSubscribe:
		var req subscribeReq
		if err := json.Unmarshal(body, &req); err != nil {
			bad(err)
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.Subscribe(req.Room, from.Name, req.Users, n.claim, func(rep feed.State, err error) {
			if err != nil {
				fail(err)
				return
			}
			ok(rep)
		})
	case opPublish:
		var req publishReq
		if err := json.Unmarshal(body, &req); err != nil {
			bad(err)
			return
		}
		if !n.hasQuorum() {
			fail(ErrNoQuorum)
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.Publish(req.Room, req.User, req.CID, req.Text, n.claim, func(ack protocol.Ack, err error) {
			if err != nil {
				fail(err)
				return
			}
			ok(ack)
		})
	case opHistory:
		var req historyReq
		if err := json.Unmarshal(body, &req); err != nil {
			bad(err)
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.History(req.Room, req.Before, req.Limit, n.claim, func(p protocol.HistoryPage, err error) {
			if err != nil {
				fail(err)
				return
			}
			ok(p)
		})
	case opDirect:
		var req directReq
		if err := json.Unmarshal(body, &req); err != nil {
			bad(err)
			return
		}
		ok(directResp{Delivered: n.hub.DeliverDirect(req.To, req.From, req.Except, req.Frame)})
	case opReplicate:
		var req replicateReq
		if err := json.Unmarshal(body, &req); err != nil {
			bad(err)
			return
		}
		if err := n.owners.ApplyReplica(req.Room, req.Epoch, req.Msg); err != nil {
			fail(err)
			return
		}
		ok(struct{}{})
	case opSync:
		var snap roomlog.Snapshot
		if err := json.Unmarshal(body, &snap); err != nil {
			bad(err)
			return
		}
		if err := n.owners.SyncReplica(snap); err != nil {
			fail(err)
			return
		}
		ok(struct{}{})
	case opHandoff:
		var st owner.HandoffState
		if err := json.Unmarshal(body, &st); err != nil {
			bad(err)
			return
		}
		if err := n.owners.AcceptHandoff(st); err != nil {
			fail(err)
			return
		}
		ok(struct{}{})
	case opClaim:
		var req forgetReq
		if err := json.Unmarshal(body, &req); err != nil {
			bad(err)
			return
		}
		handing := n.owners.ReleaseTo(req.Room, func(st owner.HandoffState, done func(error)) {
			n.call(from.Name, from.Addr, encode(opHandoff, st), nil, done)
		})
		ok(claimResp{Handing: handing})
	case opPing:
		_ = reply.OK(nil)
	case opRingStats:
		ok(n.ringStats())
	default:
		_ = reply.Err(fmt.Sprintf("unknown request op %d", payload[0]))
	}
}
