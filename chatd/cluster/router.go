package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/store"
	"github.com/ringchat/ringchat/chatd/transport"
)

// retryPause bounds the wait between two attempts when the view does not
// change in the meantime.
const retryPause = 100 * time.Millisecond

// route sends a request to the room's owner in the current view: local runs
// it against this node's owner service, remote encodes it for another node.
// When an attempt fails with a retryable error (the target does not own the
// room in its view, the room is moving, the owner cannot be reached, check
// refuses), route waits for the view to change (or retryPause) and tries
// again, until RouteTimeout; then reply gets ErrUnavailable wrapping the
// last error.
//
// reply is called exactly once, and within RouteTimeout+CallTimeout even if
// an attempt never answers (a message waiting for an unreachable replica, a
// room waiting for its handoff): the client then resends, which the owner's
// dedupe window makes safe.
func route[T any](n *Node, room string, check func() error, local func(answer func(T, error)), remote func() []byte, reply func(T, error)) {
	r := &routed[T]{reply: reply}
	r.timer = time.AfterFunc(n.cfg.RouteTimeout+n.cfg.CallTimeout, r.expire)
	deadline := time.Now().Add(n.cfg.RouteTimeout)
	var (
		run func()
		// wait is the view's change signal as of the current attempt, so a
		// view that changes while the attempt is in flight retries at once.
		wait <-chan struct{}
	)
	retry := func(err error) {
		if !retryable(err) || time.Now().After(deadline) {
			var zero T
			r.finish(zero, fmt.Errorf("%w: %w", ErrUnavailable, err))
			return
		}
		go func() {
			select {
			case <-wait:
			case <-time.After(retryPause):
			}
			run()
		}()
	}
	answer := func(v T, err error) {
		if err != nil {
			retry(err)
			return
		}
		r.finish(v, nil)
	}
	run = func() {
		_, wait = n.currentView()
		if check != nil {
			if err := check(); err != nil {
				retry(err)
				return
			}
		}
		o, addr := n.ownerOf(room)
		if o == n.cfg.Self {
			local(answer)
			return
		}
		var v T
		n.call(o, addr, remote(), &v, func(err error) { answer(v, err) })
	}
	run()
}

// routed is one routed request's single answer.
type routed[T any] struct {
	once  sync.Once
	timer *time.Timer
	reply func(T, error)
}

func (r *routed[T]) finish(v T, err error) {
	r.once.Do(func() {
		r.timer.Stop()
		r.reply(v, err)
	})
}

// expire runs on the timer's goroutine; it does not touch the timer.
func (r *routed[T]) expire() {
	r.once.Do(func() {
		var zero T
		r.reply(zero, fmt.Errorf("%w: no answer in time", ErrUnavailable))
	})
}

func retryable(err error) bool {
	if errors.Is(err, ErrNoQuorum) || errors.Is(err, owner.ErrNotOwner) || errors.Is(err, owner.ErrMoving) ||
		errors.Is(err, transport.ErrPeerUnavailable) || errors.Is(err, transport.ErrQueueFull) ||
		errors.Is(err, transport.ErrTimeout) || errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrUnknownPeer) {
		return true
	}
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return re.Msg == rpc.CodeNotOwner || re.Msg == rpc.CodeMoving || re.Msg == rpc.CodeNoQuorum
	}
	return errors.Is(err, owner.ErrNoQuorum)
}

// call sends a request to a peer and decodes a JSON reply into out.
func (n *Node) call(to, addr string, payload []byte, out any, done func(error)) {
	if n.peers == nil {
		go done(fmt.Errorf("%w: no transport in a cluster of one", transport.ErrPeerUnavailable))
		return
	}
	n.countForward(payload)
	n.peers.Request(transport.Peer{Name: to, Addr: addr}, payload, n.cfg.CallTimeout, func(resp []byte, err error) {
		if err != nil {
			// The transport reports some failures (queue full, backing off)
			// before Request returns, on the caller's goroutine, which may
			// hold a room lock the callback needs: never answer inline.
			go done(rpc.DecodeErr(err))
			return
		}
		if out != nil {
			if err := json.Unmarshal(resp, out); err != nil {
				done(fmt.Errorf("cluster: reply from %s: %w", to, err))
				return
			}
		}
		done(nil)
	})
}

// push sends a one-way message to a peer, logging failures: pushes are
// either idempotent or repaired by the receiver's gap detection.
func (n *Node) push(to, addr string, payload []byte) {
	if n.peers == nil {
		return
	}
	n.countForward(payload)
	if err := n.peers.Send(transport.Peer{Name: to, Addr: addr}, payload); err != nil {
		n.log.Debug("push failed", "peer", to, "err", err)
	}
}

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
	inner := reply
	reply = func(ack protocol.Ack, err error) { inner(ack, storageError(err)) }
	route(n, room,
		func() error {
			if !n.hasQuorum() {
				return ErrNoQuorum
			}
			return nil
		},
		func(answer func(protocol.Ack, error)) {
			n.owners.Publish(room, user, cid, text, answer)
		},
		func() []byte {
			return rpc.Encode(rpc.OpPublish, rpc.PublishReq{Room: room, User: user, CID: cid, Text: text, View: n.viewIDNow()})
		},
		reply)
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
