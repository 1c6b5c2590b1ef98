package cluster

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/store"
)

// The hub reaches rooms' owners through these methods (hub.Router); each
// goes through route, call or push (route.go).

// Subscribe implements hub.Router.
func (n *Node) Subscribe(room string, users []string, reply func(feed.State, error)) {
	route(n, room, nil,
		func(answer func(feed.State, error)) {
			n.owners.Subscribe(room, n.cfg.Self, users, answer)
		},
		func() []byte {
			return rpc.Encode(rpc.OpSubscribe, rpc.SubscribeReq{Room: room, Users: users, View: n.viewIDNow()})
		},
		reply)
}

// Unsubscribe implements hub.Router.
func (n *Node) Unsubscribe(room string) {
	o, addr := n.ownerOf(room)
	if o == n.cfg.Self {
		n.owners.Unsubscribe(room, n.cfg.Self)
		return
	}
	n.push(o, addr, rpc.Encode(rpc.OpUnsubscribe, rpc.SubscribeReq{Room: room}))
}

// PresenceChange implements hub.Router.
func (n *Node) PresenceChange(room, user string, joined bool) {
	o, addr := n.ownerOf(room)
	if o == n.cfg.Self {
		n.owners.PresenceChange(room, n.cfg.Self, user, joined)
		return
	}
	n.push(o, addr, rpc.Encode(rpc.OpPresence, rpc.PresenceReq{Room: room, User: user, Joined: joined}))
}

// storageError turns a storage refusal into the protocol error the client
// gets (storage_full or storage_failed); other errors pass through.
func storageError(err error) error {
	if !errors.Is(err, owner.ErrStorage) {
		return err
	}
	if errors.Is(err, store.ErrFull) {
		return protocol.NewError(protocol.CodeStorageFull, "", "the room's storage is full; nothing was stored: retry later with the same cid")
	}
	return protocol.NewError(protocol.CodeStorageFailed, "", "the room's storage failed; nothing was acknowledged: retry later with the same cid")
}

// Publish implements hub.Router. It is refused (and retried) on the minority
// side of a partition.
func (n *Node) Publish(room, user, cid, text string, reply func(protocol.Ack, error)) {
	n.routeWrite(room,
		func(answer func(protocol.Ack, error)) {
			n.owners.Publish(room, user, cid, text, answer)
		},
		func() []byte {
			return rpc.Encode(rpc.OpPublish, rpc.PublishReq{Room: room, User: user, CID: cid, Text: text, View: n.viewIDNow()})
		},
		reply)
}

// DeleteMessage deletes the message at seq of room in the name of by (the
// server API's moderation): it reaches the room's owner as a publish does,
// and reply gets the deletion's ack.
func (n *Node) DeleteMessage(room, by string, seq uint64, reply func(protocol.Ack, error)) {
	n.routeWrite(room,
		func(answer func(protocol.Ack, error)) {
			n.owners.Delete(room, by, seq, answer)
		},
		func() []byte {
			return rpc.Encode(rpc.OpDeleteMessage, rpc.DeleteMessageReq{Room: room, Seq: seq, By: by, View: n.viewIDNow()})
		},
		reply)
}

// routeWrite routes a write of a room's log (a message, a deletion) to the
// room's owner: refused, and retried, on the minority side of a partition;
// a storage refusal is answered with its error code.
func (n *Node) routeWrite(room string, local func(answer func(protocol.Ack, error)), remote func() []byte, reply func(protocol.Ack, error)) {
	route(n, room,
		func() error {
			if !n.hasQuorum() {
				return ErrNoQuorum
			}
			return nil
		},
		local, remote,
		func(ack protocol.Ack, err error) { reply(ack, storageError(err)) })
}

// History implements hub.Router. A page the owner's store could not read
// is answered storage_failed.
func (n *Node) History(room string, before uint64, limit int, reply func(protocol.HistoryPage, error)) {
	inner := reply
	reply = func(p protocol.HistoryPage, err error) { inner(p, storageError(err)) }
	route(n, room, nil,
		func(answer func(protocol.HistoryPage, error)) {
			n.owners.History(room, before, limit, answer)
		},
		func() []byte {
			return rpc.Encode(rpc.OpHistory, rpc.HistoryReq{Room: room, Before: before, Limit: limit, View: n.viewIDNow()})
		},
		reply)
}

// Typing implements hub.Router.
func (n *Node) Typing(room, user string) {
	o, addr := n.ownerOf(room)
	if o == n.cfg.Self {
		n.owners.Typing(room, user)
		return
	}
	n.push(o, addr, rpc.Encode(rpc.OpTyping, rpc.TypingReq{Room: room, User: user}))
}

// DirectMessage implements hub.Router: the frame goes to every live node,
// which delivers it to its own connections of the two users; the reply sums
// what the recipient's connections received. A node that cannot be reached
// counts as delivering nothing.
func (n *Node) DirectMessage(to, from, exceptSession string, frame []byte, reply func(int)) {
	v, _ := n.currentView()
	var (
		total     atomic.Int64
		remaining sync.WaitGroup
	)
	total.Add(int64(n.hub.DeliverDirect(to, from, exceptSession, frame)))
	payload := rpc.Encode(rpc.OpDirect, rpc.DirectReq{To: to, From: from, Except: exceptSession, Frame: frame})
	for name, addr := range v.addrs {
		if name == n.cfg.Self {
			continue
		}
		remaining.Add(1)
		var resp rpc.DirectResp
		n.call(name, addr, payload, &resp, func(err error) {
			if err == nil {
				total.Add(int64(resp.Delivered))
			}
			remaining.Done()
		})
	}
	go func() {
		remaining.Wait()
		reply(int(total.Load()))
	}()
}

func (n *Node) viewIDNow() string {
	v, _ := n.currentView()
	return v.id
}
