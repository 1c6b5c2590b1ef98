package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/backoff"
)

// peerState is where an outbound stream is in its life.
type peerState uint8

const (
	// stateIdle: no connection and no reason to wait; the next frame dials.
	stateIdle peerState = iota
	// stateConnecting: dialing or in the handshake; frames queue up.
	stateConnecting
	// stateConnected: the writer is draining the queue.
	stateConnected
	// stateBackoff: the last attempt failed; frames are refused until
	// retryAt, after which the next frame dials again.
	stateBackoff
)

// spareCap is the batch capacity always kept for reuse. A larger one is
// kept only while batches still use a good part of it, so sustained load
// does not regrow the queue on every batch, yet the memory of one spike is
// not pinned for the peer's lifetime.
const spareCap = 4 << 10

// call is a pending request: the callback owed exactly one answer. Whoever
// removes it from peer.pending (reply, timeout, failure, Close) answers it.
type call struct {
	fn    func(payload []byte, err error)
	timer *time.Timer
}

// peer is the outbound stream to one peer: a bounded queue, the pending
// requests written on it, and the goroutine that dials and writes. The
// goroutine (run) starts with the peer and lives until the peer is retired
// by Forget, an address change or Close; connections come and go under it.
type peer struct {
	t    *Transport
	name string
	addr string
	log  *slog.Logger

	// ctx aborts a dial in progress when the peer is retired.
	ctx    context.Context
	cancel context.CancelFunc
	// wake (capacity 1) tells run that the queue became non-empty.
	wake chan struct{}
	// stop is closed when the peer is retired.
	stop chan struct{}

	mu       sync.Mutex
	state    peerState
	closed   bool
	closeErr error               // given to pending requests when retired
	conn     net.Conn            // the current TCP connection, closed by retire
	chain    []*x509.Certificate // the peer's certificate chain on conn, once connected
	queue    []outFrame
	// spare is the batch the writer is writing, or wrote last, kept for
	// reuse. Only run's goroutine may touch its elements: the writer reads
	// them without the lock.
	spare    []outFrame
	queued   int // bytes in queue
	pending  map[uint64]*call
	attempts int // connection attempts so far, for the Reconnect metric
	failures int // consecutive failed attempts, for the backoff
	retryAt  time.Time
	// unavailable is returned to callers while backing off. It is built once
	// per failure so that a caller hammering a dead peer costs no allocation.
	unavailable error
}

// newPeer creates the stream to p and starts its goroutine. The caller holds
// t.mu and has checked that t is not closed, so the wg.Add cannot race with
// Close's Wait.
func (t *Transport) newPeer(to Peer) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	p := &peer{
		t:       t,
		name:    to.Name,
		addr:    to.Addr,
		log:     t.log.With("peer", to.Name, "addr", to.Addr),
		ctx:     ctx,
		cancel:  cancel,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		pending: make(map[uint64]*call),
	}
	t.wg.Add(1)
	go p.run()
	return p
}

// enqueue appends a frame to the queue without blocking. For a request, c is
// registered as pending and its timeout started, atomically with the
// enqueue, so no answer can be lost between the two.
func (p *peer) enqueue(f outFrame, c *call, timeout time.Duration) error {
	size := f.size()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return errRetired
	}
	if p.state == stateBackoff && time.Now().Before(p.retryAt) {
		err := p.unavailable
		p.mu.Unlock()
		return err
	}
	// An empty queue takes any frame, so a frame larger than QueueBytes (but
	// within MaxFrameBytes) can still be sent.
	if p.queued > 0 && p.queued+size > p.t.cfg.QueueBytes {
		p.mu.Unlock()
		p.t.metrics.QueueFull(p.name)
		return ErrQueueFull
	}
	if p.state == stateIdle || p.state == stateBackoff {
		p.state = stateConnecting
	}
	if c != nil {
		id := f.id
		c.timer = time.AfterFunc(timeout, func() { p.expire(id, timeout) })
		p.pending[id] = c
	}
	p.queue = append(p.queue, f)
	p.queued += size
	first := len(p.queue) == 1
	p.mu.Unlock()
	if first {
		// Only the transition to non-empty needs a wake-up: the writer
		// drains until the queue is empty before it waits again.
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// take removes and returns everything queued. The slice is valid until the
// next take, which only the writer calls.
func (p *peer) take() []outFrame {
	p.mu.Lock()
	defer p.mu.Unlock()
	batch := p.queue
	clear(p.spare) // release the payloads of the batch already written
	if cap(p.spare) > spareCap && len(batch) < cap(p.spare)/4 {
		p.spare = nil
	}
	p.queue = p.spare[:0]
	p.spare = batch
	p.queued = 0
	return batch
}

// dropQueueLocked discards queued frames and returns how many there were.
// It leaves spare alone, since the writer may be iterating over it.
func (p *peer) dropQueueLocked() int {
	n := len(p.queue)
	clear(p.queue)
	p.queue = p.queue[:0]
	p.queued = 0
	return n
}

// takeCall removes and returns the pending request id, or nil if it has been
// answered already. Its timer is stopped.
func (p *peer) takeCall(id uint64) *call {
	p.mu.Lock()
	c := p.pending[id]
	delete(p.pending, id)
	p.mu.Unlock()
	if c != nil {
		c.timer.Stop()
	}
	return c
}

func (p *peer) expire(id uint64, timeout time.Duration) {
	p.mu.Lock()
	c := p.pending[id]
	delete(p.pending, id)
	p.mu.Unlock()
	if c != nil {
		c.fn(nil, fmt.Errorf("%w after %v waiting for peer %q", ErrTimeout, timeout.Round(time.Millisecond), p.name))
	}
}

// failCalls answers calls with err, in the order they were issued, so that a
// caller tracking several requests sees their failures in a sensible order.
func (p *peer) failCalls(calls map[uint64]*call, err error) {
	ids := make([]uint64, 0, len(calls))
	for id := range calls {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		c := calls[id]
		c.timer.Stop()
		c.fn(nil, err)
	}
}

func (p *peer) takePendingLocked() map[uint64]*call {
	calls := p.pending
	p.pending = make(map[uint64]*call)
	return calls
}

// retire stops the peer for good: queued frames are dropped, the connection
// (or dial) is aborted, and run fails pending requests with err as it exits.
// The caller has already removed p from t.peers.
func (p *peer) retire(err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.closeErr = err
	conn := p.conn
	dropped := p.dropQueueLocked()
	p.mu.Unlock()
	if dropped > 0 {
		p.t.metrics.FramesDropped(p.name, dropped)
	}
	p.cancel()
	close(p.stop)
	if conn != nil {
		_ = conn.Close()
	}
}

// run is the peer's goroutine: it waits for frames, dials, writes until the
// connection fails, records the failure, and waits again, until retired.
func (p *peer) run() {
	defer p.t.wg.Done()
	defer p.cancel()
	for {
		select {
		case <-p.stop:
			p.mu.Lock()
			calls := p.takePendingLocked()
			err := p.closeErr
			p.mu.Unlock()
			p.failCalls(calls, err)
			return
		case <-p.wake:
		}
		if !p.shouldConnect() {
			// A wake-up left over from before a failure dropped the queue.
			continue
		}
		conn, err := p.connect()
		if err != nil {
			p.fail(err, false)
			continue
		}
		err = p.serve(conn)
		p.fail(err, true)
	}
}

func (p *peer) shouldConnect() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && p.state == stateConnecting
}

// connect dials the peer and runs the handshake.
func (p *peer) connect() (*tls.Conn, error) {
	p.mu.Lock()
	p.attempts++
	reconnect := p.attempts > 1
	p.mu.Unlock()

	d := net.Dialer{Timeout: p.t.cfg.DialTimeout, KeepAliveConfig: keepAlive}
	conn, err := d.DialContext(p.ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = conn.Close()
		return nil, p.closeErr
	}
	p.conn = conn // from now on retire closes it, aborting the handshake
	p.mu.Unlock()

	_ = conn.SetDeadline(time.Now().Add(p.t.cfg.HandshakeTimeout))
	tc, chain, err := dialHandshake(conn, p.t.cfg.Credentials, hello{
		proto:  uint16(p.t.cfg.ProtocolVersion),
		label:  p.t.cfg.ClusterLabel,
		name:   p.t.cfg.NodeName,
		addr:   p.t.addr,
		target: p.name,
	})
	if err != nil {
		_ = conn.Close()
		select {
		case <-p.stop: // aborted by retire, not a failed handshake
		default:
			reason := reasonOf(err)
			p.t.metrics.AuthFailure(reason)
			if reason == "version" {
				p.log.Error("transport refusing a peer of another inter-node protocol version", "err", err)
			}
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})

	p.mu.Lock()
	p.state = stateConnected
	p.chain = chain
	p.failures = 0
	p.mu.Unlock()
	if reconnect {
		p.t.metrics.Reconnect(p.name)
	}
	p.log.Info("transport connected to peer", "reconnect", reconnect, "peer_cert_serial", chain[0].SerialNumber.Text(16))
	return tc, nil
}

// fail records a failed connection or attempt: it drops the queue, fails the
// pending requests and starts the backoff. A retired peer was cleaned up by
// retire and run's exit instead.
func (p *peer) fail(cause error, wasConnected bool) {
	p.mu.Lock()
	p.conn, p.chain = nil, nil
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.failures++
	delay := p.backoff(p.failures)
	p.state = stateBackoff
	p.retryAt = time.Now().Add(delay)
	p.unavailable = fmt.Errorf("%w: %q at %s (backing off %v): %w", ErrPeerUnavailable, p.name, p.addr, delay.Round(time.Millisecond), cause)
	dropped := p.dropQueueLocked()
	clear(p.spare) // safe here: we are run's goroutine and serve has returned
	calls := p.takePendingLocked()
	p.mu.Unlock()

	callErr := p.unavailable
	msg := "transport cannot reach peer"
	if wasConnected {
		callErr = fmt.Errorf("%w: %q at %s: %w", ErrConnLost, p.name, p.addr, cause)
		msg = "transport connection to peer lost"
	}
	p.log.Warn(msg, "err", cause, "backoff", delay, "dropped_frames", dropped, "failed_requests", len(calls))
	if dropped > 0 {
		p.t.metrics.FramesDropped(p.name, dropped)
	}
	p.failCalls(calls, callErr)
}

// backoff returns the delay after n consecutive failures: BackoffMin
// doubling up to BackoffMax, with equal jitter (a random point in the upper
// half) so that peers that lost the same node do not redial in lockstep.
func (p *peer) backoff(n int) time.Duration {
	b := backoff.Backoff{Base: p.t.cfg.BackoffMin, Max: p.t.cfg.BackoffMax, Jitter: backoff.Equal}
	return b.Delay(n)
}

// errRetiredConn ends serve when the peer is retired; run then exits.
var errRetiredConn = errors.New("peer retired")

// serve writes queued frames to conn until it fails or the peer is retired.
// Closing it closes the TCP connection under it, without TLS's
// close_notify, whose write could wait for a peer that stopped reading.
// It drains the queue in batches through a buffered writer and flushes only
// when the queue is empty: under load many frames share a system call, and
// when idle each frame is flushed as soon as it is written.
//
// Beside it runs a watcher that reads from conn. The acceptor never writes
// after the handshake, so a read returns only when the connection is closed
// or reset, and that is how a dead peer is noticed without waiting for the
// next write (and how its pending requests fail promptly). serve waits for
// the watcher before returning, so it owns it.
func (p *peer) serve(conn *tls.Conn) error {
	dead := make(chan struct{})
	var watchErr error
	go func() {
		defer close(dead)
		watchErr = watch(conn)
	}()
	defer func() {
		_ = conn.NetConn().Close()
		<-dead
	}()
	// cause prefers the watcher's diagnosis: once it closed the socket, a
	// write fails with a less helpful "use of closed network connection".
	cause := func(err error) error {
		select {
		case <-dead:
			if watchErr != nil {
				return watchErr
			}
		default:
		}
		return fmt.Errorf("write: %w", err)
	}

	w := bufio.NewWriterSize(deadlineWriter{conn: conn, timeout: p.t.cfg.WriteTimeout}, writeBufferSize)
	for {
		batch := p.take()
		if len(batch) == 0 {
			if w.Buffered() > 0 {
				if err := w.Flush(); err != nil {
					return cause(err)
				}
			}
			select {
			case <-p.stop:
				return errRetiredConn
			case <-dead:
				return watchErr
			case <-p.wake:
			}
			continue
		}
		bytes := 0
		for i := range batch {
			if err := writeFrame(w, &batch[i]); err != nil {
				return cause(err)
			}
			bytes += batch[i].size()
		}
		p.t.metrics.FramesSent(p.name, len(batch), bytes)
	}
}

// watch blocks until conn is closed or the peer breaks the protocol by
// writing to it, closes the TCP connection, and says why.
func watch(conn *tls.Conn) error {
	var b [1]byte
	n, err := conn.Read(b[:])
	_ = conn.NetConn().Close()
	switch {
	case n > 0:
		return errors.New("peer wrote to an outbound stream, which is a protocol violation")
	case errors.Is(err, io.EOF):
		return errors.New("connection closed by peer")
	default:
		return err
	}
}

// deadlineWriter gives each write to the socket its own deadline, so a peer
// that stops reading fails the stream after WriteTimeout of no progress,
// however long a large batch takes in total.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
}

func (w deadlineWriter) Write(b []byte) (int, error) {
	if err := w.conn.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return 0, err
	}
	return w.conn.Write(b)
}
