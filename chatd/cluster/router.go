package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/transport"
)

// retryPause bounds the wait between two attempts when the view does not
// change in the meantime.
const retryPause = 100 * time.Millisecond

// route runs attempt against the room's owner in the current view. When the
// attempt fails with a retryable error (the target does not own the room in
// its view, the room is moving, the owner cannot be reached), it waits for
// the view to change (or retryPause) and tries again, until RouteTimeout;
// then fail gets ErrUnavailable wrapping the last error.
func (n *Node) route(room string, attempt func(ownerName, addr string, retry func(error)), fail func(error)) {
	deadline := time.Now().Add(n.cfg.RouteTimeout)
	var run func()
	run = func() {
		o, addr := n.ownerOf(room)
		_, wait := n.currentView()
		attempt(o, addr, func(err error) {
			if !retryable(err) || time.Now().After(deadline) {
				fail(fmt.Errorf("%w: %w", ErrUnavailable, err))
				return
			}
			go func() {
				select {
				case <-wait:
				case <-time.After(retryPause):
				}
				run()
			}()
		})
	}
	run()
}

func retryable(err error) bool {
	if errors.Is(err, ErrNoQuorum) || errors.Is(err, owner.ErrNotOwner) || errors.Is(err, owner.ErrMoving) ||
		errors.Is(err, transport.ErrPeerUnavailable) || errors.Is(err, transport.ErrQueueFull) ||
		errors.Is(err, transport.ErrTimeout) || errors.Is(err, transport.ErrConnLost) || errors.Is(err, transport.ErrUnknownPeer) {
		return true
	}
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return re.Msg == errCodeNotOwner || re.Msg == errCodeMoving || re.Msg == errCodeNoQuorum
	}
	return false
}

// remoteErr turns a transport error into an owner error where it names one.
func remoteErr(err error) error {
	var re *transport.RemoteError
	if errors.As(err, &re) {
		switch re.Msg {
		case errCodeNotOwner:
			return owner.ErrNotOwner
		case errCodeMoving:
			return owner.ErrMoving
		case errCodeClosed:
			return owner.ErrClosed
		case errCodeBehind:
			return owner.ErrBehind
		}
	}
	return err
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
			go done(remoteErr(err))
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
func (n *Node) Subscribe(room string, users []string, reply func(owner.SubscribeReply, error)) {
	n.route(room, func(o, addr string, retry func(error)) {
		if o == n.cfg.Self {
			n.owners.Subscribe(room, n.cfg.Self, users, n.claim, func(rep owner.SubscribeReply, err error) {
				if err != nil {
					retry(err)
					return
				}
				reply(rep, nil)
			})
			return
		}
		var rep owner.SubscribeReply
		n.call(o, addr, encode(opSubscribe, subscribeReq{Room: room, Users: users, View: n.viewIDNow()}), &rep, func(err error) {
			if err != nil {
				retry(err)
				return
			}
			reply(rep, nil)
		})
	}, func(err error) { reply(owner.SubscribeReply{}, err) })
}

// Unsubscribe implements hub.Router.
func (n *Node) Unsubscribe(room string) {
	o, addr := n.ownerOf(room)
	if o == n.cfg.Self {
		n.owners.Unsubscribe(room, n.cfg.Self)
		return
	}
	n.push(o, addr, encode(opUnsubscribe, subscribeReq{Room: room}))
}

// PresenceChange implements hub.Router.
func (n *Node) PresenceChange(room, user string, joined bool) {
	o, addr := n.ownerOf(room)
	if o == n.cfg.Self {
		n.owners.PresenceChange(room, n.cfg.Self, user, joined)
		return
	}
	n.push(o, addr, encode(opPresence, presenceReq{Room: room, User: user, Joined: joined}))
}

// Publish implements hub.Router. The answer comes within RouteTimeout: a
// message that waits longer (its replicas unreachable, say) is reported
// unavailable, and the client resends it with the same cid, which the
// owner's dedupe window makes safe.
func (n *Node) Publish(room, user, cid, text string, finalReply func(protocol.Ack, error)) {
	var once sync.Once
	reply := func(ack protocol.Ack, err error) { once.Do(func() { finalReply(ack, err) }) }
	timer := time.AfterFunc(n.cfg.RouteTimeout+n.cfg.CallTimeout, func() {
		reply(protocol.Ack{}, fmt.Errorf("%w: no answer in time", ErrUnavailable))
	})
	inner := reply
	reply = func(ack protocol.Ack, err error) {
		timer.Stop()
		inner(ack, err)
	}
	n.route(room, func(o, addr string, retry func(error)) {
		if !n.hasQuorum() {
			retry(ErrNoQuorum)
			return
		}
		if o == n.cfg.Self {
			n.owners.Publish(room, user, cid, text, n.claim, func(ack protocol.Ack, err error) {
				if err != nil {
					retry(err)
					return
				}
				reply(ack, nil)
			})
			return
		}
		var ack protocol.Ack
		n.call(o, addr, encode(opPublish, publishReq{Room: room, User: user, CID: cid, Text: text, View: n.viewIDNow()}), &ack, func(err error) {
			if err != nil {
				retry(err)
				return
			}
			reply(ack, nil)
		})
	}, func(err error) { reply(protocol.Ack{}, err) })
}

// History implements hub.Router.
func (n *Node) History(room string, before uint64, limit int, reply func(protocol.HistoryPage, error)) {
	n.route(room, func(o, addr string, retry func(error)) {
		if o == n.cfg.Self {
			n.owners.History(room, before, limit, n.claim, func(p protocol.HistoryPage, err error) {
				if err != nil {
					retry(err)
					return
				}
				reply(p, nil)
			})
			return
		}
		var p protocol.HistoryPage
		n.call(o, addr, encode(opHistory, historyReq{Room: room, Before: before, Limit: limit, View: n.viewIDNow()}), &p, func(err error) {
			if err != nil {
				retry(err)
				return
			}
			reply(p, nil)
		})
	}, func(err error) { reply(protocol.HistoryPage{}, err) })
}

// Typing implements hub.Router.
func (n *Node) Typing(room, user string) {
	o, addr := n.ownerOf(room)
	if o == n.cfg.Self {
		n.owners.Typing(room, user)
		return
	}
	n.push(o, addr, encode(opTyping, typingReq{Room: room, User: user}))
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
	payload := encode(opDirect, directReq{To: to, From: from, Except: exceptSession, Frame: frame})
	for name, addr := range v.addrs {
		if name == n.cfg.Self {
			continue
		}
		remaining.Add(1)
		var resp directResp
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
