// Package server is chatd's HTTP face on the client port: the WebSocket
// endpoint with admission control, the health and readiness probes, the
// embedded web page, and the graceful shutdown that closes every connection
// with 1012. The admin API and /metrics are not served here but on the
// admin listener (chatd/admin).
package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/netpoll"
	"github.com/ringchat/ringchat/chatd/offstack"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/session"
	"github.com/ringchat/ringchat/chatd/socketio"
	"github.com/ringchat/ringchat/chatd/web"
)

// Config is what the HTTP layer needs beyond the session and hub settings.
type Config struct {
	// MaxConnections caps open WebSocket connections on this node (0: no cap).
	MaxConnections int
	// MaxConnectionsPerIP caps them per client IP (0: no cap).
	MaxConnectionsPerIP int
	// TrustedProxies are the proxies whose ProxyHeader names the client,
	// for the per-IP cap and the logs; empty: the socket peer is the
	// client and forwarded headers are ignored.
	TrustedProxies []netip.Prefix
	// ProxyHeader is HeaderXForwardedFor (the default) or HeaderForwarded.
	ProxyHeader string
	// RetryAfter is the Retry-After advertised when refusing a connection.
	RetryAfter time.Duration
	// AllowedOrigins lists the browser origins allowed to connect; "*" allows
	// any; empty allows only same-host pages (and non-browser clients, which
	// send no Origin).
	AllowedOrigins []string
	// HandshakeTimeout bounds the WebSocket upgrade and ReadHeaderTimeout the
	// request headers, so slow handshakes cannot pin resources.
	// HandshakeTimeout also bounds how long a keep-alive HTTP connection may
	// sit idle between two requests, and Session.WriteTimeout how long one
	// HTTP response may take to write (neither applies to WebSockets).
	HandshakeTimeout  time.Duration
	ReadHeaderTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
	// DrainRate paces the 1012 closes at shutdown, in connections per
	// second, so clients do not all reconnect in the same instant (0: all
	// at once). The last part of ShutdownTimeout (finalPhase) is kept for
	// closing, at once, the sessions the pace has not reached.
	DrainRate int
	// Ready, when set, is asked by /readyz (e.g. "has this node joined its
	// cluster"); its reason is shown when not ready.
	Ready func() (bool, string)
	// Session holds the per-connection settings.
	Session session.Config
	// SocketIO configures the Socket.IO endpoint at /socket.io/ (its
	// Session is taken from Session); nil serves none.
	SocketIO *socketio.Config
	// Hooks are the backend hooks both protocols ask; nil: none.
	Hooks *hooks.Set
	// ParkIdleReaders makes an idle WebSocket connection (after its hello)
	// wait for its next frame with no goroutine: its socket is armed on a
	// readiness poller (chatd/netpoll) instead (--park-idle-readers). Where
	// no poller can be made, a warning is logged and readers block as
	// without it.
	ParkIdleReaders bool
}

// Server serves chatd's HTTP endpoints.
type Server struct {
	cfg Config
	// workers run the connections' frames off their read loops: a stack
	// grown to the depth of the publish path is kept between frames
	// (chatd/offstack).
	workers  *offstack.Pool
	hub      *hub.Hub
	auth     *auth.Authenticator
	metrics  *metrics.Metrics
	log      *slog.Logger
	admit    *admission
	clients  clientResolver
	upgrader websocket.Upgrader
	// parkUpgrader upgrades the connections whose readers may park: gorilla
	// reads through the bufio.Reader the hijack returns (ownReader), which
	// the session checks for buffered bytes.
	parkUpgrader websocket.Upgrader
	// poller is the readiness poller of parked readers, from Serve's start
	// to its end; nil: readers never park.
	poller *netpoll.Poller
	mux    *http.ServeMux
	probes *http.ServeMux // /healthz and /readyz alone

	// closingAll is set (under liveMu) once shutdown has asked every live
	// session to close with 1012; a session that registers later is closed
	// as it registers.
	closingAll bool
	sessions   sync.WaitGroup
	draining   atomic.Bool
	aborted    atomic.Bool
	ready      atomic.Bool
	// live holds the open connections of both protocols (native sessions
	// and Engine.IO sessions), so shutdown can close them at a pace.
	liveMu sync.Mutex
	live   map[liveConn]struct{}
	proto  *protocolMetrics
}

// liveConn is an open connection as the shutdown sees it.
type liveConn interface {
	Close(code int, reason string)
	CloseWritten() <-chan struct{}
	Abort()
}

// New assembles a server around a hub and an authenticator.
func New(cfg Config, h *hub.Hub, a *auth.Authenticator, m *metrics.Metrics, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, hub: h, auth: a, metrics: m, log: log, admit: newAdmission(cfg.MaxConnections, cfg.MaxConnectionsPerIP), live: make(map[liveConn]struct{}), proto: newProtocolMetrics(m),
		workers: offstack.NewPool(offstack.IdleTimeout),
		clients: clientResolver{trusted: cfg.TrustedProxies, header: cfg.ProxyHeader}}
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// Small read buffers and pooled write buffers keep an idle
		// connection cheap: the write buffer is only held while writing,
		// and client frames are small (a larger one takes a few reads).
		ReadBufferSize:  256,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     originChecker(cfg.AllowedOrigins),
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, "websocket upgrade failed: "+reason.Error(), status)
		},
	}
	s.parkUpgrader = s.upgrader
	// 0: gorilla reads through the hijacked bufio.Reader, the one
	// ownReader made (gorilla's condition: larger than 256 bytes).
	s.parkUpgrader.ReadBufferSize = 0
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /ws", s.serveWS)
	s.probes = http.NewServeMux()
	for _, m := range []*http.ServeMux{s.mux, s.probes} {
		m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		m.HandleFunc("GET /readyz", s.serveReady)
	}
	s.mux.Handle("GET /", web.Handler())
	if cfg.SocketIO != nil {
		sc := *cfg.SocketIO
		sc.Session = cfg.Session
		sio := socketio.New(sc, socketio.Deps{Hub: h, Auth: a, Metrics: m, Log: log, Hooks: cfg.Hooks, Workers: s.workers}, socketio.Hooks{
			Admit:       s.admitSocketIO,
			CheckOrigin: s.upgrader.CheckOrigin,
			Track:       s.trackSocketIO,
			ClientAddr:  s.socketIOClientAddr,
		})
		s.mux.Handle("GET "+socketio.Path, sio)
		s.mux.Handle("POST "+socketio.Path, sio)
	}
	s.ready.Store(true)
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Probes serves GET /healthz and /readyz, for the admin listener to answer
// them too.
func (s *Server) Probes() http.Handler { return s.probes }

// MetricsHandler serves the node's metrics in the Prometheus text format,
// for the admin listener.
func MetricsHandler(m *metrics.Metrics) http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	if s.draining.Load() {
		http.Error(w, "not ready: draining\n", http.StatusServiceUnavailable)
		return
	}
	if s.cfg.Ready != nil {
		if ok, why := s.cfg.Ready(); !ok {
			http.Error(w, "not ready: "+why+"\n", http.StatusServiceUnavailable)
			return
		}
	}
	if !s.ready.Load() {
		http.Error(w, "not ready\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Abort stops the server as a crash would: the listener closes and every
// connection is dropped without a close frame. Serve then returns once its
// context is cancelled.
func (s *Server) Abort() {
	s.draining.Store(true)
	s.aborted.Store(true)
	for _, sess := range s.liveSessions() {
		sess.Abort()
	}
}

// SetDraining makes the node fail readiness and refuse new connections,
// while the ones it has stay open. A draining node's clients are moved later,
// by the shutdown.
func (s *Server) SetDraining() { s.draining.Store(true) }

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	retry := max(int(s.cfg.RetryAfter/time.Second), 1)
	if s.draining.Load() {
		s.metrics.ConnectionsRefused.WithLabelValues("draining").Inc()
		s.proto.refused.WithLabelValues(protoNative, "draining").Inc()
		refuse(w, &refusal{http.StatusServiceUnavailable, "draining"}, retry)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "this endpoint speaks WebSocket; see docs/protocol.md", http.StatusBadRequest)
		return
	}
	ip, proxied := s.clients.resolve(r)
	remote := r.RemoteAddr
	if proxied {
		remote = ip // what the trusted proxies name as the client
	}
	if ref := s.admit.acquire(ip); ref != nil {
		s.metrics.ConnectionsRefused.WithLabelValues(ref.reason).Inc()
		s.proto.refused.WithLabelValues(protoNative, ref.reason).Inc()
		refuse(w, ref, retry)
		return
	}
	upgrader, own := &s.upgrader, (*ownReader)(nil)
	if s.poller != nil {
		upgrader, own = &s.parkUpgrader, &ownReader{ResponseWriter: w}
		w = own
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		s.admit.release(ip)
		s.metrics.ConnectionsRefused.WithLabelValues("upgrade").Inc()
		s.proto.refused.WithLabelValues(protoNative, "upgrade").Inc()
		return // the upgrader has answered the request
	}
	s.metrics.ConnectionsAccepted.Inc()
	s.proto.accepted.WithLabelValues(protoNative).Inc()
	sess := session.New(ws, &s.cfg.Session, session.Deps{Hub: s.hub, Auth: s.auth, Metrics: s.metrics, Log: s.log, Hooks: s.cfg.Hooks, Workers: s.workers}, remote)
	if s.cfg.Hooks.Connector() != nil {
		sess.SetConnectFacts(hooks.Facts(r, hooks.TransportWS, remote))
	}
	if own != nil && own.br != nil {
		// Only a socket without buffering of its own (plain TCP, not
		// TLS) can be parked: bytes held above the socket would not wake
		// the poller.
		if sc, ok := ws.NetConn().(syscall.Conn); ok {
			if h, err := s.poller.Register(sc); err != nil {
				s.log.Debug("this connection's reader cannot park; it blocks", "remote", remote, "err", err)
			} else {
				sess.SetPoller(h, own.br)
			}
		}
	}
	// The session's reader runs on goroutines of its own (none while it is
	// parked) and the handler returns: net/http's connection goroutine
	// would otherwise stay parked under the session, keeping its deep stack
	// and its 4 KiB read and write buffers alive for the life of every
	// WebSocket. What the session holds (its per-IP slot, its place in the
	// shutdown's wait and list) is released when it finishes.
	s.sessions.Add(1)
	s.liveMu.Lock()
	s.live[sess] = struct{}{}
	closing := s.closingAll
	s.liveMu.Unlock()
	if closing {
		sess.Close(protocol.CloseServiceRestart, restartReason)
	}
	s.proto.open.WithLabelValues(protoNative).Inc()
	sess.Start(func() {
		s.proto.open.WithLabelValues(protoNative).Dec()
		s.liveMu.Lock()
		delete(s.live, sess)
		s.liveMu.Unlock()
		s.admit.release(ip)
		s.sessions.Done()
	})
}

// ownReader hijacks the connection for gorilla with a small bufio.Reader of
// the server's own, so that the session knows whether gorilla has bytes
// buffered (a parked reader must not leave any behind). When net/http's
// reader already holds bytes (a client that sent frames before the
// handshake's answer, which RFC 6455 does not allow but gorilla accepts),
// net/http's reader is handed on as it is and br stays nil: that
// connection's reader does not park.
type ownReader struct {
	http.ResponseWriter
	br *bufio.Reader
}

// parkReadBuffer is the size of a parkable connection's read buffer, held
// by every idle connection: larger than gorilla's 256-byte minimum for a
// hijacked reader, small because client frames are small (a larger one
// takes a few reads).
const parkReadBuffer = 512

// Hijack implements http.Hijacker.
func (o *ownReader) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(o.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		return conn, brw, nil
	}
	o.br = bufio.NewReaderSize(conn, parkReadBuffer)
	return conn, bufio.NewReadWriter(o.br, brw.Writer), nil
}

// Unwrap lets http.ResponseController reach the ResponseWriter underneath.
func (o *ownReader) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// Serve accepts connections on ln until ctx is cancelled, then shuts down
// gracefully: fail readiness and refuse new WebSocket connections, close
// every session with 1012 (paced by DrainRate) so clients reconnect
// elsewhere and resume, and stop, all within ShutdownTimeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		// IdleTimeout closes keep-alive connections left idle between
		// requests (without it, net/http waits for the next request
		// forever); WriteTimeout bounds writing one response. Neither
		// touches WebSockets: net/http clears a connection's deadlines
		// when the upgrader hijacks it, and sessions set their own.
		IdleTimeout:    s.cfg.HandshakeTimeout,
		WriteTimeout:   s.cfg.Session.WriteTimeout,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.noteDrainCapacity()
	if s.cfg.ParkIdleReaders {
		p, err := netpoll.New(s.log)
		if err != nil {
			s.log.Warn("idle WebSocket readers cannot park (--park-idle-readers): every connection keeps a goroutine", "err", err)
		} else {
			s.poller = p
			// Closed once the shutdown has waited for the sessions (or
			// its deadline): a reader still parked then is woken and
			// reads as without a poller.
			defer func() {
				if err := p.Close(); err != nil {
					s.log.Warn("closing the readiness poller", "err", err)
				}
			}()
		}
	}
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		s.hub.Run(hubCtx)
	}()
	defer func() {
		stopHub()
		<-hubDone
	}()

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	return s.shutdown(hs, errc)
}

// finalPhase is the part of a shutdown timeout kept, at its end, for closing
// every session still open at once and waiting for their close frames to be
// written: a tenth of it, at least half a second (half the timeout when that
// is shorter than a second) and at most 2 s.
func finalPhase(timeout time.Duration) time.Duration {
	return min(2*time.Second, max(timeout/10, min(500*time.Millisecond, timeout/2)))
}

// pacedCapacity is how many sessions a shutdown closes at DrainRate before
// its final phase closes the rest at once.
func (s *Server) pacedCapacity() int64 {
	window := s.cfg.ShutdownTimeout - finalPhase(s.cfg.ShutdownTimeout)
	return int64(s.cfg.DrainRate) * int64(window) / int64(time.Second)
}

// noteDrainCapacity logs when a full node could not be drained at DrainRate
// within ShutdownTimeout: the connections beyond what the paced part of the
// shutdown reaches are all closed together at its end. An info line, not a
// warning: the defaults trigger it, and nothing is wrong.
func (s *Server) noteDrainCapacity() {
	if s.cfg.DrainRate <= 0 || s.cfg.MaxConnections <= 0 {
		return
	}
	if paced := s.pacedCapacity(); paced < int64(s.cfg.MaxConnections) {
		s.log.Info("--drain-rate × --shutdown-timeout is below --max-connections: at shutdown, connections beyond the paced ones are closed all at once",
			"drain_rate", s.cfg.DrainRate, "shutdown_timeout", s.cfg.ShutdownTimeout.String(),
			"max_connections", s.cfg.MaxConnections, "paced_at_most", paced)
	}
}

// shutdown runs the graceful shutdown. The HTTP server keeps answering
// while the sessions are closed, so that readiness probes see 503 and new
// WebSocket clients are refused with 503 (draining) rather than with a
// refused TCP connection; it stops once every close frame is written.
//
// The timeline, within ShutdownTimeout: first the sessions are closed with
// 1012 at DrainRate; its final phase (finalPhase) closes every session still
// open at once and waits until their close frames are written, so that no
// client loses its connection without a 1012 when the process exits.
func (s *Server) shutdown(hs *http.Server, errc <-chan error) error {
	start := time.Now()
	s.draining.Store(true)
	if s.aborted.Load() {
		_ = hs.Close()
		<-errc
		s.sessions.Wait()
		return nil
	}
	s.log.Info("shutting down: closing connections with 1012")
	end := start.Add(s.cfg.ShutdownTimeout)
	s.closePaced(end.Add(-finalPhase(s.cfg.ShutdownTimeout)))
	s.closeAll()
	if left := s.waitCloseFrames(end); left > 0 {
		s.log.Warn("shutdown deadline passed before every close frame was written", "sessions", left)
	}
	// Every client has its 1012: stop HTTP. Shutdown closes the listener and
	// the idle connections at once and waits for requests in flight until
	// the deadline; hijacked (WebSocket) connections are not its business.
	// Close then drops whatever request is left.
	httpCtx, cancel := context.WithDeadline(context.Background(), end)
	shutdownErr := hs.Shutdown(httpCtx)
	cancel()
	if shutdownErr != nil {
		_ = hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	// Give the clients until the deadline to answer their close frames
	// (each session waits at most its close grace).
	done := make(chan struct{})
	go func() {
		s.sessions.Wait()
		close(done)
	}()
	timer := time.NewTimer(time.Until(end))
	select {
	case <-done:
	case <-timer.C:
		s.log.Warn("shutdown deadline passed with sessions still open")
	}
	timer.Stop()
	s.log.Info("shut down", "took", time.Since(start).String())
	if shutdownErr != nil && !errors.Is(shutdownErr, context.DeadlineExceeded) {
		return fmt.Errorf("http shutdown: %w", shutdownErr)
	}
	return nil
}

// closePaced closes the open sessions with 1012 at DrainRate per second
// (the i-th one i/DrainRate seconds after the start), until every one is
// closed or until comes; what is left is closed at once by the caller.
// Sessions are closed in batches, at most one wake-up per drainTick.
func (s *Server) closePaced(until time.Time) {
	rate := int64(s.cfg.DrainRate)
	if rate <= 0 {
		return
	}
	list := s.liveSessions()
	start := time.Now()
	// slot is when the i-th session's turn comes.
	slot := func(i int) time.Time {
		return start.Add(time.Duration(int64(i) * int64(time.Second) / rate))
	}
	closed := 0
	for closed < len(list) {
		now := time.Now()
		for closed < len(list) && !slot(closed).After(now) {
			list[closed].Close(protocol.CloseServiceRestart, restartReason)
			closed++
		}
		if closed == len(list) {
			return
		}
		next := slot(closed)
		if next.After(until) {
			// The rest is for the final phase, which starts at until:
			// closing them now would end the pace early.
			time.Sleep(time.Until(until))
			return
		}
		time.Sleep(min(max(time.Until(next), drainTick), time.Until(until)))
	}
}

// drainTick is the shortest pause between two batches of paced closes.
const drainTick = 20 * time.Millisecond

// waitCloseFrames waits until every live session has written its close
// frame (or found its socket broken), or until the deadline; it returns how
// many had not.
func (s *Server) waitCloseFrames(deadline time.Time) int {
	list := s.liveSessions()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for i, sess := range list {
		select {
		case <-sess.CloseWritten():
		case <-timer.C:
			left := 0
			for _, other := range list[i:] {
				select {
				case <-other.CloseWritten():
				default:
					left++
				}
			}
			return left
		}
	}
	return 0
}

// liveSessions lists the open sessions, so that closing them (which takes
// their own locks) happens outside liveMu.
func (s *Server) liveSessions() []liveConn {
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	return slices.Collect(maps.Keys(s.live))
}

// restartReason is the close reason of the 1012 a shutdown sends.
const restartReason = "server restarting, reconnect and resume"

// closeAll asks every live session to close with 1012 (those closePaced
// reached already are closing; Close is idempotent), and makes sessions that
// register from now on close at once.
func (s *Server) closeAll() {
	s.liveMu.Lock()
	s.closingAll = true
	s.liveMu.Unlock()
	// A session registering from here on sees closingAll and closes itself;
	// one also listed below is closed twice, which Close allows.
	for _, sess := range s.liveSessions() {
		sess.Close(protocol.CloseServiceRestart, restartReason)
	}
}

// originChecker allows browser origins from the list. Requests without an
// Origin header come from non-browser clients and are allowed: the origin
// check protects browsers' cookies, not the server.
func originChecker(allowed []string) func(*http.Request) bool {
	allowAny := false
	set := make(map[string]bool, len(allowed))
	for _, o := range allowed {
		if o == "*" {
			allowAny = true
		}
		set[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		if origin == "" || allowAny {
			return true
		}
		if set[strings.ToLower(origin)] {
			return true
		}
		// Same host as the request: the embedded page talking to its own server.
		return strings.EqualFold(strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://"), r.Host)
	}
}
