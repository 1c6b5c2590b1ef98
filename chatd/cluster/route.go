package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// How a request reaches a room's owner: route retries it while the room
// moves or the view catches up; call and push are the one hop to another
// node.

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
