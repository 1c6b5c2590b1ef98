package transport

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Send queues a one-way push of payload to peer and returns without
// blocking. A nil error means the push is queued behind everything sent to
// peer before, not that it was delivered. It fails with ErrQueueFull when the
// peer's queue is full, with an error wrapping ErrPeerUnavailable while the
// peer is backing off after a failure, with ErrFrameTooLarge, or with
// ErrClosed. payload must not be modified afterwards.
//
// If peer.Addr differs from the address of the current stream to peer.Name,
// the peer is taken to have moved: the old stream is closed (its queue
// dropped, its requests failed) and the next frame dials the new address.
func (t *Transport) Send(peer Peer, payload []byte) error {
	_, err := t.enqueue(peer, true, outFrame{kind: kindPush, payload: payload}, nil, 0)
	return err
}

// Request sends a request to peer and arranges for onReply to be called
// exactly once: with the reply's payload, on the reader goroutine of peer's
// stream to us and in order with the peer's other frames; or with an error
// from any goroutine: a *RemoteError if the peer answered with Reply.Err, or
// an error wrapping ErrTimeout, ErrConnLost, ErrPeerUnavailable,
// ErrQueueFull, ErrFrameTooLarge or ErrClosed. If the request cannot be
// queued at all, onReply is called before Request returns, so the caller
// must not hold a lock that onReply takes. A timeout <= 0 means
// Config.RequestTimeout. A nil onReply discards the answer. payload must not
// be modified afterwards. See Send for a changed peer.Addr.
func (t *Transport) Request(peer Peer, payload []byte, timeout time.Duration, onReply func(payload []byte, err error)) {
	if onReply == nil {
		onReply = func([]byte, error) {}
	}
	if _, _, err := t.request(peer, payload, timeout, onReply); err != nil {
		onReply(nil, err)
	}
}

// Call sends a request and waits for its answer, for at most
// Config.RequestTimeout, or until ctx is done. Errors are as for Request, or
// wrap ctx's error; either way nothing is left pending. It must not be
// called from a Handler or onReply callback for the same peer: the reply
// would arrive on the goroutine that is waiting for it.
func (t *Transport) Call(ctx context.Context, peer Peer, payload []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("transport: call %q: %w", peer.Name, err)
	}
	type answer struct {
		payload []byte
		err     error
	}
	done := make(chan answer, 1)
	// ctx's deadline is not folded into the request's timeout: ctx is
	// watched below, so its expiry is reported as its own error.
	p, id, err := t.request(peer, payload, 0, func(b []byte, err error) { done <- answer{b, err} })
	if err != nil {
		return nil, err
	}
	select {
	case a := <-done:
		return a.payload, a.err
	case <-ctx.Done():
		// Withdraw the request so that it does not linger until its timeout;
		// if it was answered meanwhile, the answer is already on its way.
		if p.takeCall(id) != nil {
			return nil, fmt.Errorf("transport: call %q: %w", peer.Name, ctx.Err())
		}
		a := <-done
		return a.payload, a.err
	}
}

// request queues a request with fn as its callback. On error nothing was
// queued and fn will not be called.
func (t *Transport) request(to Peer, payload []byte, timeout time.Duration, fn func([]byte, error)) (*peer, uint64, error) {
	if timeout <= 0 {
		timeout = t.cfg.RequestTimeout
	}
	id := t.nextID.Add(1)
	p, err := t.enqueue(to, true, outFrame{kind: kindRequest, id: id, payload: payload}, &call{fn: fn}, timeout)
	return p, id, err
}

// Forget closes and drops the outbound stream to the named peer, if any: its
// queue is dropped and its pending requests fail with an error wrapping
// ErrConnLost. The cluster layer calls it when a member leaves. A later send
// to the peer dials afresh, without backoff. The peer's stream to us is
// left alone: the peer owns it and closes it when it goes.
func (t *Transport) Forget(peerName string) {
	t.mu.Lock()
	p := t.peers[peerName]
	delete(t.peers, peerName)
	t.mu.Unlock()
	if p != nil {
		p.log.Info("transport forgetting peer")
		p.retire(fmt.Errorf("%w: peer %q forgotten", ErrConnLost, peerName))
	}
}

// enqueue finds or creates the stream to `to` and queues f on it. With
// strict, a different non-empty to.Addr replaces the stream; without it (for
// replies) an existing stream is used whatever its address, because the
// address a peer advertised in its handshake may be spelled differently from
// the one the cluster layer dials (a name versus an IP), and a reply must not
// tear down a working stream over that.
func (t *Transport) enqueue(to Peer, strict bool, f outFrame, c *call, timeout time.Duration) (*peer, error) {
	if len(f.payload) > t.cfg.MaxFrameBytes {
		return nil, fmt.Errorf("%w: %d bytes to %q, limit %d", ErrFrameTooLarge, len(f.payload), to.Name, t.cfg.MaxFrameBytes)
	}
	for {
		p, err := t.peerFor(to, strict)
		if err != nil {
			return nil, err
		}
		err = p.enqueue(f, c, timeout)
		if err == errRetired {
			// Forgotten or replaced between the lookup and the enqueue; the
			// next lookup finds its successor, creates one, or sees Close.
			continue
		}
		return p, err
	}
}

// peerFor returns the stream to `to`, creating it (or replacing it, see
// enqueue) as needed.
func (t *Transport) peerFor(to Peer, strict bool) (*peer, error) {
	if to.Name == "" {
		return nil, errors.New("transport: peer name is empty")
	}
	usable := func(p *peer) bool {
		return p != nil && (to.Addr == "" || !strict || p.addr == to.Addr)
	}
	t.mu.RLock()
	closed, p := t.closed, t.peers[to.Name]
	t.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if usable(p) {
		return p, nil
	}
	if p == nil && to.Addr == "" {
		return nil, fmt.Errorf("%w: %q", ErrUnknownPeer, to.Name)
	}
	if len(to.Addr) > maxFieldLen {
		return nil, fmt.Errorf("transport: address of peer %q is longer than %d bytes", to.Name, maxFieldLen)
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	old := t.peers[to.Name]
	if usable(old) {
		t.mu.Unlock()
		return old, nil
	}
	p = t.newPeer(to)
	t.peers[to.Name] = p
	t.mu.Unlock()
	if old != nil {
		old.log.Info("transport peer address changed", "new_addr", to.Addr)
		old.retire(fmt.Errorf("%w: peer %q moved from %s to %s", ErrConnLost, to.Name, old.addr, to.Addr))
	}
	return p, nil
}

// Reply answers one request. Exactly one of OK or Err should be called,
// once; a second answer is ignored by the requester. A Reply may be used
// from any goroutine, at any time after HandleRequest was called.
type Reply struct {
	t  *Transport
	to Peer
	id uint64
}

// OK answers the request with payload. The reply is queued on our stream to
// the requester before OK returns, so it precedes anything sent to that peer
// afterwards. An error means the reply could not be queued (see Send); the
// requester will then see a timeout or a lost connection. payload must not
// be modified afterwards.
func (r Reply) OK(payload []byte) error {
	return r.send(outFrame{kind: kindReplyOK, id: r.id, payload: payload})
}

// Err answers the request with an error; the requester's onReply receives
// a *RemoteError carrying msg. Ordering and errors are as for OK.
func (r Reply) Err(msg string) error {
	return r.send(outFrame{kind: kindReplyErr, id: r.id, payload: []byte(msg)})
}

func (r Reply) send(f outFrame) error {
	if r.t == nil {
		return errors.New("transport: reply through a zero Reply")
	}
	if _, err := r.t.enqueue(r.to, false, f, nil, 0); err != nil {
		return fmt.Errorf("transport: reply to %q: %w", r.to.Name, err)
	}
	return nil
}
