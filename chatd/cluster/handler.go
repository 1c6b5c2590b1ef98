package cluster

import (
	"encoding/json"
	"fmt"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/transport"
)

// Inbound requests and pushes are dispatched through two tables, one
// handler per op: each decodes its own body, so adding an op is adding an
// entry, and an op this version does not know is refused by name.

// requestHandler answers one request from a peer; answer is called exactly
// once, from any goroutine.
type requestHandler func(n *Node, from transport.Peer, body []byte, answer answerer)

// pushHandler handles one push from a peer.
type pushHandler func(n *Node, from transport.Peer, body []byte) error

// answerer wraps a transport reply with the encodings every handler uses.
type answerer struct{ reply transport.Reply }

// ok answers with v encoded as JSON.
func (a answerer) ok(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		_ = a.reply.Err("encode reply: " + err.Error())
		return
	}
	_ = a.reply.OK(b)
}

// fail answers with err's wire code.
func (a answerer) fail(err error) { _ = a.reply.Err(errCode(err)) }

// bad answers a request whose body did not decode.
func (a answerer) bad(err error) { _ = a.reply.Err("bad request: " + err.Error()) }

// done answers an operation that returns only an error.
func (a answerer) done(err error) {
	if err != nil {
		a.fail(err)
		return
	}
	a.ok(struct{}{})
}

// decodeRequest decodes body into a T, answering bad on failure.
func decodeRequest[T any](body []byte, a answerer) (T, bool) {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		a.bad(err)
		return v, false
	}
	return v, true
}

var requestHandlers = map[op]requestHandler{
	opSubscribe: func(n *Node, from transport.Peer, body []byte, a answerer) {
		req, ok := decodeRequest[subscribeReq](body, a)
		if !ok {
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.Subscribe(req.Room, from.Name, req.Users, func(rep feed.State, err error) {
			if err != nil {
				a.fail(err)
				return
			}
			a.ok(rep)
		})
	},
	opPublish: func(n *Node, from transport.Peer, body []byte, a answerer) {
		req, ok := decodeRequest[publishReq](body, a)
		if !ok {
			return
		}
		if !n.hasQuorum() {
			a.fail(ErrNoQuorum)
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.Publish(req.Room, req.User, req.CID, req.Text, func(ack protocol.Ack, err error) {
			if err != nil {
				a.fail(err)
				return
			}
			a.ok(ack)
		})
	},
	opHistory: func(n *Node, from transport.Peer, body []byte, a answerer) {
		req, ok := decodeRequest[historyReq](body, a)
		if !ok {
			return
		}
		n.checkView(from.Name, req.Room, req.View)
		n.owners.History(req.Room, req.Before, req.Limit, func(p protocol.HistoryPage, err error) {
			if err != nil {
				a.fail(err)
				return
			}
			a.ok(p)
		})
	},
	opDirect: func(n *Node, _ transport.Peer, body []byte, a answerer) {
		req, ok := decodeRequest[directReq](body, a)
		if !ok {
			return
		}
		a.ok(directResp{Delivered: n.hub.DeliverDirect(req.To, req.From, req.Except, req.Frame)})
	},
	// Writes to a replica are answered once durable there, from the
	// store's goroutine (at once without a store).
	opReplicate: func(n *Node, from transport.Peer, body []byte, a answerer) {
		req, ok := decodeRequest[owner.Replication](body, a)
		if !ok {
			return
		}
		n.owners.ApplyReplica(from.Name, req, a.done)
	},
	opSync: func(n *Node, from transport.Peer, body []byte, a answerer) {
		offer, ok := decodeRequest[owner.SyncOffer](body, a)
		if !ok {
			return
		}
		n.owners.HandleSyncOffer(from.Name, offer, func(ans owner.SyncAnswer, err error) {
			if err != nil {
				a.fail(err)
				return
			}
			a.ok(ans)
		})
	},
	opSyncChunk: func(n *Node, from transport.Peer, body []byte, a answerer) {
		chunk, ok := decodeRequest[owner.Chunk](body, a)
		if !ok {
			return
		}
		n.owners.HandleSyncChunk(from.Name, chunk, a.done)
	},
	opHandoff: func(n *Node, _ transport.Peer, body []byte, a answerer) {
		notice, ok := decodeRequest[owner.HandoffNotice](body, a)
		if !ok {
			return
		}
		a.done(n.owners.AcceptHandoff(notice))
	},
	opClaim: func(n *Node, from transport.Peer, body []byte, a answerer) {
		req, ok := decodeRequest[owner.ClaimRequest](body, a)
		if !ok {
			return
		}
		n.owners.HandleClaim(from.Name, req, func(rep owner.ClaimReply) { a.ok(rep) })
	},
	opFetch: func(n *Node, _ transport.Peer, body []byte, a answerer) {
		req, ok := decodeRequest[owner.FetchRequest](body, a)
		if !ok {
			return
		}
		rep, err := n.owners.HandleFetch(req)
		if err != nil {
			a.fail(err)
			return
		}
		a.ok(rep)
	},
	opPing: func(_ *Node, _ transport.Peer, _ []byte, a answerer) { _ = a.reply.OK(nil) },
	opRingStats: func(n *Node, _ transport.Peer, _ []byte, a answerer) {
		a.ok(n.ringStats())
	},
}

// decodePush decodes body into a T.
func decodePush[T any](body []byte) (T, error) {
	var v T
	err := json.Unmarshal(body, &v)
	return v, err
}

var pushHandlers = map[op]pushHandler{
	opEvent: func(n *Node, _ transport.Peer, body []byte) error {
		ev, err := decodeEvent(body)
		if err == nil {
			n.hub.Deliver(ev)
		}
		return err
	},
	opUnsubscribe: func(n *Node, from transport.Peer, body []byte) error {
		req, err := decodePush[subscribeReq](body)
		if err == nil {
			n.owners.Unsubscribe(req.Room, from.Name)
		}
		return err
	},
	opPresence: func(n *Node, from transport.Peer, body []byte) error {
		req, err := decodePush[presenceReq](body)
		if err == nil {
			n.owners.PresenceChange(req.Room, from.Name, req.User, req.Joined)
		}
		return err
	},
	opTyping: func(n *Node, _ transport.Peer, body []byte) error {
		req, err := decodePush[typingReq](body)
		if err == nil {
			n.owners.Typing(req.Room, req.User)
		}
		return err
	},
	opForget: func(n *Node, _ transport.Peer, body []byte) error {
		req, err := decodePush[forgetReq](body)
		if err == nil {
			n.owners.ForgetReplica(req.Room, req.Term)
		}
		return err
	},
	opRejoined: func(n *Node, from transport.Peer, _ []byte) error {
		n.hub.ResubscribeOwnedBy(func(room string) bool {
			o, _ := n.ownerOf(room)
			return o == from.Name
		})
		return nil
	},
}

// HandlePush implements transport.Handler: owner events and one-way
// notifications from other nodes.
func (n *Node) HandlePush(from transport.Peer, payload []byte) {
	if len(payload) == 0 {
		return
	}
	h, ok := pushHandlers[op(payload[0])]
	var err error
	if ok {
		err = h(n, from, payload[1:])
	} else {
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
	h, ok := requestHandlers[op(payload[0])]
	if !ok {
		_ = reply.Err(fmt.Sprintf("unknown request op %d", payload[0]))
		return
	}
	h(n, from, payload[1:], answerer{reply})
}
