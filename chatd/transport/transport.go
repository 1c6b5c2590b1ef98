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
	"sync"
	"sync/atomic"
	"time"
)

// keepAlive makes the kernel notice a vanished peer (powered off,
// partitioned) on an idle connection within about 30 seconds, which is what
// fails an outbound stream's pending requests without waiting for their
// timeouts; the transport itself sends no heartbeats.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}

// Peer names a node of the cluster and the address to dial it at.
type Peer struct {
	// Name is the node's Config.NodeName. Streams are keyed by it.
	Name string
	// Addr is the node's advertised TCP address. It may be empty when a
	// connection to Name already exists, to use whatever address that has.
	Addr string
}

// Handler handles what peers send. Its methods are called on the reader
// goroutine of the sender's stream, one frame at a time and in stream order,
// and must return quickly (see the package documentation).
type Handler interface {
	// HandlePush handles a one-way message. The handler owns payload.
	HandlePush(from Peer, payload []byte)
	// HandleRequest handles a request, which must be answered exactly once
	// through reply, now or later and from any goroutine. The handler owns
	// payload. from.Addr is the address the peer advertised, which replies
	// use if no connection to it exists yet.
	HandleRequest(from Peer, payload []byte, reply Reply)
}

// HandlerFuncs adapts functions to Handler. A nil Push drops pushes; a nil
// Request answers every request with an error.
type HandlerFuncs struct {
	Push    func(from Peer, payload []byte)
	Request func(from Peer, payload []byte, reply Reply)
}

// HandlePush implements Handler.
func (h HandlerFuncs) HandlePush(from Peer, payload []byte) {
	if h.Push != nil {
		h.Push(from, payload)
	}
}

// HandleRequest implements Handler.
func (h HandlerFuncs) HandleRequest(from Peer, payload []byte, reply Reply) {
	if h.Request == nil {
		_ = reply.Err("no request handler")
		return
	}
	h.Request(from, payload, reply)
}

// Transport is a node's end of the cluster's connections: it accepts peers'
// streams and dials its own. It is safe for concurrent use. Create it with
// New and stop it with Close.
type Transport struct {
	cfg     Config
	h       Handler
	log     *slog.Logger
	metrics Metrics
	ln      net.Listener
	addr    string

	// ctx is cancelled by Close; it aborts dials and accept-error pauses.
	ctx    context.Context
	cancel context.CancelFunc

	// handshakes holds one token per connection in its handshake; see
	// Config.MaxHandshakes.
	handshakes chan struct{}

	// nextID numbers requests. One counter for all peers keeps ids unique
	// per transport, which makes logs and stray replies unambiguous.
	nextID atomic.Uint64

	// wg counts every goroutine the transport starts: the accept loop, the
	// re-verification loop, one per accepted connection, one per outbound
	// peer (which owns its connection's watcher). Close waits for it.
	wg sync.WaitGroup

	mu       sync.RWMutex
	closed   bool
	peers    map[string]*peer      // outbound streams by peer name
	incoming map[string]*inStream  // authenticated incoming streams by peer name
	conns    map[net.Conn]struct{} // every accepted connection, for Close
}

// inStream is an authenticated incoming stream.
type inStream struct {
	conn  net.Conn            // the TCP connection, which Close and re-verification close
	tls   *tls.Conn           // the stream over it; the reader reads through it (tests write to it)
	chain []*x509.Certificate // the peer's verified chain, leaf first, checked again by reverify
	from  Peer
	done  chan struct{} // closed when its reader has returned
}

// New validates cfg, listens on cfg.ListenAddr and starts accepting peers;
// outbound streams are dialed on first use. h handles what peers send.
func New(cfg Config, h Handler) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("transport: a Handler is required")
	}
	ctx, cancel := context.WithCancel(context.Background())
	lc := net.ListenConfig{KeepAliveConfig: keepAlive}
	ln, err := lc.Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.ListenAddr, err)
	}
	t := &Transport{
		cfg:        cfg,
		h:          h,
		log:        cfg.Logger.With("node", cfg.NodeName),
		metrics:    cfg.Metrics,
		ln:         ln,
		addr:       cfg.AdvertiseAddr,
		ctx:        ctx,
		cancel:     cancel,
		handshakes: make(chan struct{}, cfg.MaxHandshakes),
		peers:      make(map[string]*peer),
		incoming:   make(map[string]*inStream),
		conns:      make(map[net.Conn]struct{}),
	}
	if t.addr == "" {
		t.addr = ln.Addr().String()
	}
	if len(t.addr) > maxFieldLen {
		_ = ln.Close()
		cancel()
		return nil, fmt.Errorf("transport: advertised address %q is longer than %d bytes", t.addr, maxFieldLen)
	}
	t.wg.Add(2)
	go t.acceptLoop()
	go t.reverifyLoop()
	t.log.Info("transport listening", "listen", ln.Addr().String(), "advertise", t.addr, "cluster", cfg.ClusterLabel,
		"protocol_version", cfg.ProtocolVersion, "tls", "mutual, TLS 1.3")
	return t, nil
}

// Addr returns the address peers should dial to reach this node:
// Config.AdvertiseAddr, or the listener's address (with the actual port when
// ListenAddr asked for port 0).
func (t *Transport) Addr() string { return t.addr }

// Name returns this node's name, Config.NodeName.
func (t *Transport) Name() string { return t.cfg.NodeName }

// Close stops the transport: it closes the listener and every connection,
// fails pending requests with ErrClosed, discards queued frames, and waits
// for every goroutine it started to return. Calls made after Close fail with
// ErrClosed. It must not be called from a Handler or onReply callback, which
// run on goroutines Close waits for. Calling it again waits and returns nil.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	peers := t.peers
	t.peers = make(map[string]*peer)
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()

	t.cancel()
	err := t.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	for _, p := range peers {
		p.retire(ErrClosed)
	}
	t.wg.Wait()
	t.log.Info("transport closed")
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("transport: close listener: %w", err)
	}
	return nil
}

// acceptLoop accepts connections until the listener is closed, and hands
// each to its own goroutine for the handshake and then the stream.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var pause time.Duration
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Typically out of file descriptors. Pausing (as net/http does)
			// lets connections close instead of spinning on the error.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			t.log.Error("transport accept failed", "err", err, "retry_in", pause)
			timer := time.NewTimer(pause)
			select {
			case <-t.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		pause = 0
		select {
		case t.handshakes <- struct{}{}:
		default:
			t.log.Warn("transport refused connection: too many handshakes in progress",
				"remote", conn.RemoteAddr().String(), "limit", t.cfg.MaxHandshakes)
			t.metrics.AuthFailure("overload")
			_ = conn.Close()
			continue
		}
		if !t.track(conn) {
			<-t.handshakes
			_ = conn.Close()
			return
		}
		go t.serveIncoming(conn)
	}
}

// track registers an accepted connection so that Close can close it, and
// counts its goroutine; it refuses once Close has begun.
func (t *Transport) track(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[conn] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *Transport) untrack(conn net.Conn) {
	t.mu.Lock()
	delete(t.conns, conn)
	t.mu.Unlock()
	_ = conn.Close()
}

// serveIncoming authenticates an accepted connection and then reads its
// frames until it fails or is closed.
func (t *Transport) serveIncoming(conn net.Conn) {
	defer t.wg.Done()
	defer t.untrack(conn)
	remote := conn.RemoteAddr().String()

	_ = conn.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	tc, r, h, chain, err := acceptHandshake(conn, t.cfg.Credentials, t.cfg.ClusterLabel, t.cfg.NodeName, uint16(t.cfg.ProtocolVersion))
	<-t.handshakes
	if err != nil {
		if t.ctx.Err() != nil {
			return // aborted by Close, not the client's failure
		}
		reason := reasonOf(err)
		t.metrics.AuthFailure(reason)
		level := slog.LevelWarn
		switch reason {
		case "closed", "timeout":
			// Port scanners and TCP health checks connect and leave; that
			// is not worth a warning, but is worth a trace when debugging.
			level = slog.LevelDebug
		case "version":
			// Not an attack but a cluster that cannot work: loudly.
			level = slog.LevelError
		}
		t.log.Log(t.ctx, level, "transport rejected connection", "remote", remote, "reason", reason, "err", err)
		return
	}
	_ = conn.SetDeadline(time.Time{})

	s := &inStream{
		conn:  conn,
		tls:   tc,
		chain: chain,
		from:  Peer{Name: h.name, Addr: resolveAdvertised(h.addr, conn.RemoteAddr())},
		done:  make(chan struct{}),
	}
	log := t.log.With("peer", s.from.Name, "remote", remote)
	if old := t.swapIncoming(s); old != nil {
		// A peer has one outbound stream at a time, so a new one means the
		// old is dead to it (it redialed after a failure, or restarted).
		// Finishing the old reader before starting the new one keeps the
		// peer's frames from being handled concurrently or out of order.
		log.Info("transport peer redialed; closing its previous stream", "previous_remote", old.conn.RemoteAddr().String())
		_ = old.conn.Close()
		<-old.done
	}
	log.Info("transport accepted stream", "advertised", s.from.Addr, "peer_cert_serial", chain[0].SerialNumber.Text(16))
	err = t.readLoop(r, s)
	t.removeIncoming(s)
	close(s.done)

	switch {
	case errors.Is(err, errMalformed):
		log.Error("transport closing stream: malformed frame", "err", err)
	case isBadRecord(err):
		// Only the peer and we hold the keys: someone on the path changed
		// the bytes (or the network corrupted them past TCP's checksum).
		t.metrics.AuthFailure("integrity")
		log.Error("transport closing stream: a TLS record failed its integrity check (tampered with in transit?)", "err", err)
	case errors.Is(err, io.EOF):
		log.Info("transport stream closed by peer")
	case errors.Is(err, net.ErrClosed):
		log.Debug("transport stream closed")
	default:
		log.Warn("transport stream failed", "err", err)
	}
}

func (t *Transport) swapIncoming(s *inStream) *inStream {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.incoming[s.from.Name]
	t.incoming[s.from.Name] = s
	return old
}

func (t *Transport) removeIncoming(s *inStream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.incoming[s.from.Name] == s {
		delete(t.incoming, s.from.Name)
	}
}

// readLoop reads and dispatches the frames of an authenticated stream, one
// at a time, until an error. Metrics are reported once per read batch (when
// the buffer runs dry) rather than per frame, to keep them off the hot path.
func (t *Transport) readLoop(r *bufio.Reader, s *inStream) error {
	const reportEvery = 1024
	frames, bytes := 0, 0
	for {
		if frames > 0 && (r.Buffered() == 0 || frames >= reportEvery) {
			t.metrics.FramesReceived(s.from.Name, frames, bytes)
			frames, bytes = 0, 0
		}
		f, n, err := readFrame(r, t.cfg.MaxFrameBytes)
		if err != nil {
			if frames > 0 {
				t.metrics.FramesReceived(s.from.Name, frames, bytes)
			}
			return err
		}
		frames++
		bytes += n
		switch f.kind {
		case kindPush:
			t.h.HandlePush(s.from, f.payload)
		case kindRequest:
			t.h.HandleRequest(s.from, f.payload, Reply{t: t, to: s.from, id: f.id})
		case kindReplyOK, kindReplyErr:
			t.resolve(s.from.Name, f)
		}
	}
}

// resolve hands a reply to the callback of the request it answers. A reply
// to a request that already timed out or failed, or that was not sent to
// this peer, finds nothing and is dropped.
func (t *Transport) resolve(from string, f inFrame) {
	t.mu.RLock()
	p := t.peers[from]
	t.mu.RUnlock()
	if p == nil {
		return
	}
	c := p.takeCall(f.id)
	if c == nil {
		return
	}
	if f.kind == kindReplyErr {
		c.fn(nil, &RemoteError{Msg: string(f.payload)})
		return
	}
	c.fn(f.payload, nil)
}

// resolveAdvertised returns the address a peer advertised, with an
// unspecified host (it listens on all interfaces and set no AdvertiseAddr)
// replaced by the address its connection came from.
func resolveAdvertised(advertised string, remote net.Addr) string {
	host, port, err := net.SplitHostPort(advertised)
	if err != nil {
		return advertised
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return advertised
	}
	if ra, ok := remote.(*net.TCPAddr); ok {
		return net.JoinHostPort(ra.IP.String(), port)
	}
	return advertised
}
