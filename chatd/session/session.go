// Package session runs one client connection: the hello handshake, the read
// loop that decodes and dispatches client frames, and the write loop that
// batches queued server frames onto the socket. It enforces the
// per-connection limits (rate, rooms, text size, queue) and turns every
// failure into a protocol error frame or a documented close code.
//
// # Parked readers
//
// With a readiness poller (SetPoller, chatd/netpoll; --park-idle-readers),
// an idle authenticated connection has no goroutine at all. The reader
// reads messages while bytes are buffered; at a message boundary with
// nothing buffered in the connection's bufio.Reader (which the server owns
// and gives to gorilla/websocket at the upgrade, so its Buffered count is
// known) it arms its socket on the poller and its goroutine returns. When
// the socket becomes readable, or a close or the liveness check needs the
// reader (unpark), the read loop resumes on a new goroutine. One atomic
// state (running, parked) decides, by compare-and-swap, which of the
// poller's event and an unpark resumes it: exactly one does.
//
// Before the hello the reader never parks: the blocking read with the hello
// deadline stays. Once a close has been decided it never parks either: the
// reader waits for the client's close reply or the close grace.
//
// Control frames: gorilla answers pings and runs the pong handler inside
// NextReader, then keeps blocking for the next data frame, which would hold
// a goroutine after every pong of an idle client. So a woken reader first
// looks at the buffered bytes itself: while they begin with a complete
// client control frame of RFC 6455 §5.5 (FIN set, RSV bits clear, opcode
// ping 0x9 or pong 0xA, masked, payload at most 125 bytes, all of it
// buffered) it consumes the frame: a pong counts as liveness, as the pong
// handler does, and a ping is answered with a pong carrying its payload, as
// gorilla's default ping handler would. With nothing left buffered it parks
// again. Anything else (data frames, close frames, a control frame split
// across reads) goes through gorilla's ReadMessage as without a poller.
//
// Liveness: the read deadline (two ping intervals after the last frame) is
// set as without a poller, and its time recorded; a parked connection has
// no read in progress for it to end, so the ping timer unparks a session
// whose deadline has passed and its read fails at once with the timeout. A
// silent peer is therefore dropped between two and three ping intervals
// after its last frame instead of exactly two.
package session

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/coalesce"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/netpoll"
	"github.com/ringchat/ringchat/chatd/offstack"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Config holds the per-connection limits and timings.
type Config struct {
	// ServerID names this node in welcome frames.
	ServerID string
	// MaxFrameBytes is the largest client frame accepted; larger closes with 1009.
	MaxFrameBytes int
	// MaxTextBytes is the longest message text accepted.
	MaxTextBytes int
	// MaxRooms is the number of rooms one connection may join.
	MaxRooms int
	// RatePerSecond and RateBurst size the token bucket that meters client frames.
	RatePerSecond float64
	RateBurst     int
	// RateAbuseLimit is the number of rate-limited frames within
	// RateAbuseWindow after which the connection is closed with 1008.
	RateAbuseLimit  int
	RateAbuseWindow time.Duration
	// QueueFrames bounds the outgoing queue; overflow closes with 4008.
	QueueFrames int
	// HelloTimeout is how long a new connection has to authenticate.
	HelloTimeout time.Duration
	// PingInterval is the server heartbeat; a peer silent for two intervals is dropped.
	PingInterval time.Duration
	// WriteTimeout bounds one socket write.
	WriteTimeout time.Duration
	// Coalescer makes a busy connection's writer wait for more frames
	// before writing, while the node is busy writing (chatd/coalesce; one
	// per node, shared with the Socket.IO endpoint). nil: never waits.
	Coalescer *coalesce.Coalescer
	// BatchBytes caps the size of one WebSocket message carrying several frames.
	BatchBytes int
	// HistoryLimit is the page size when a history request gives none.
	HistoryLimit int
	// TokenLeeway is the clock skew allowed on token expiry; it must equal
	// the authenticator's leeway.
	TokenLeeway time.Duration
	// Limits is what the welcome frame advertises.
	Limits protocol.Limits
}

// Deps are the node-wide services a session uses.
type Deps struct {
	Hub     *hub.Hub
	Auth    *auth.Authenticator
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Hooks are the backend hooks; nil or nil members: none.
	Hooks *hooks.Set
	// Workers run the session's frames off its read loop (chatd/offstack);
	// nil: a fresh goroutine per frame.
	Workers *offstack.Pool
}

// Session is one WebSocket connection. It implements hub.Conn.
type Session struct {
	cfg  *Config
	deps Deps
	ws   *websocket.Conn
	id   string
	log  *slog.Logger
	out  *Outbox[[]byte]

	// Set by the hello before the session is registered with the hub and
	// never changed after, so the hub may read them from any goroutine.
	identity auth.Identity

	// rooms holds the rooms joined, to enforce MaxRooms and to leave them
	// on disconnect; a failed join removes its room from another goroutine.
	// A slice, not a set: a connection joins a handful of rooms (at most
	// MaxRooms), and a map would cost every idle connection a few hundred
	// bytes more.
	roomsMu sync.Mutex
	rooms   []string

	// Used only by the read loop.
	meter       *FrameMeter
	expiryTimer *time.Timer
	pingTimer   *time.Timer
	// lastWrite is when the writer last wrote; only writer goroutines touch
	// it, and they never overlap.
	lastWrite time.Time
	// writerDone is closed when the writer that handled the close exits;
	// once closing is decided no other writer starts.
	writerDone     chan struct{}
	writerDoneOnce sync.Once
	remoteAddr     string
	authComplete   bool
	// connectFacts are the HTTP request's facts for the connect hook, kept
	// from the upgrade until the hello (nil without a connect hook, so
	// that idle connections do not keep their cookies).
	connectFacts *hooks.ConnectRequest

	// Parking (SetPoller); poll nil: the reader blocks in ReadMessage for
	// the life of the connection.
	poll *netpoll.Handle
	// br is the reader gorilla reads the connection through.
	br *bufio.Reader
	// state is running or parked; see the package comment.
	state atomic.Int32
	// readDeadline is the read deadline set last after the hello, in Unix
	// nanoseconds, for the ping timer's liveness check of a parked session.
	readDeadline atomic.Int64
	// onDone runs when the session has finished (Start).
	onDone func()
}

// Reader states.
const (
	running int32 = iota
	parked
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return "s-" + idEncoding.EncodeToString(b[:])
}

// New wraps an upgraded connection. Call Start to serve it.
func New(ws *websocket.Conn, cfg *Config, deps Deps, remoteAddr string) *Session {
	s := &Session{
		cfg:        cfg,
		deps:       deps,
		ws:         ws,
		id:         newID(),
		log:        deps.Log,
		meter:      NewFrameMeter(cfg.RatePerSecond, cfg.RateBurst, cfg.RateAbuseLimit, cfg.RateAbuseWindow),
		remoteAddr: remoteAddr,
		writerDone: make(chan struct{}),
	}
	s.out = NewOutbox[[]byte](cfg.QueueFrames, s.startWriter)
	return s
}

// logAttrs identifies the session in log lines. The attributes are built per
// line rather than kept in a derived logger, because a logger per connection
// costs memory on every idle connection for lines that are rarely written.
func (s *Session) logAttrs(args ...any) []any {
	return append([]any{"session", s.id, "remote", s.remoteAddr, "user", s.identity.UserID}, args...)
}

// SetConnectFacts gives the session its upgrade request's facts, for the
// connect hook to see at the hello. Call it before Start.
func (s *Session) SetConnectFacts(req *hooks.ConnectRequest) { s.connectFacts = req }

// SessionID implements hub.Conn.
func (s *Session) SessionID() string { return s.id }

// Transport implements hub.Described.
func (s *Session) Transport() string { return hub.TransportWebSocket }

// UserID implements hub.Conn.
func (s *Session) UserID() string { return s.identity.UserID }

// Enqueue implements hub.Conn: it queues a frame without blocking, and closes
// the session with CloseSlowConsumer when the queue is full.
func (s *Session) Enqueue(frame []byte) {
	if s.out.Push(frame, protocol.CloseSlowConsumer, "slow consumer: outgoing queue overflowed") {
		s.deps.Metrics.QueueOverflows.Inc()
	}
}

// Close asks the session to close with code and reason after flushing what
// is already queued. It returns at once; the session finishes (Start's onDone) when the close is done.
func (s *Session) Close(code int, reason string) {
	s.out.Close(code, reason, true)
}

// CloseWritten is closed once the session's writer is done for good: the
// close frame decided by Close (or another close) has been written, or the
// socket failed and nothing more can be written. The client may not have
// answered the close yet; the session finishes when it has, or after the close grace.
func (s *Session) CloseWritten() <-chan struct{} { return s.writerDone }

// Abort drops the connection at once, without a close frame, as a crashed
// server would.
func (s *Session) Abort() {
	s.out.Close(websocket.CloseAbnormalClosure, "", false)
	_ = s.ws.Close()
	s.unpark()
}

// SetPoller lets the session park its reader while idle (see the package
// comment): h is the socket's registration on the server's poller, br the
// bufio.Reader gorilla reads the connection through (the one the upgrade's
// hijack returned). Call it before Start.
func (s *Session) SetPoller(h *netpoll.Handle, br *bufio.Reader) {
	s.poll, s.br = h, br
}

// Start serves the connection until the client leaves or an error or a
// Close ends it, and returns at once; onDone runs once the session has
// finished: its writer has stopped and its socket is closed. The reader
// runs on goroutines of its own (one at a time; none while parked).
// (Shutdown is the server's business: it calls Close with 1012 on every live
// session, so a session holds no per-connection context plumbing.)
func (s *Session) Start(onDone func()) {
	s.onDone = onDone
	s.deps.Metrics.Connections.Inc()
	s.ws.SetReadLimit(int64(s.cfg.MaxFrameBytes))
	_ = s.ws.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	s.ws.SetPongHandler(func(string) error {
		s.pong()
		return nil
	})
	// gorilla's default ping handler answers with a one-second write
	// deadline; answer as takeControlFrame does, with the write timeout.
	s.ws.SetPingHandler(func(payload string) error {
		return s.answerPing([]byte(payload))
	})
	s.pingTimer = time.AfterFunc(s.cfg.PingInterval, s.ping)
	go s.readLoop(false)
}

// pong is a client's pong arriving. Before hello only the hello timeout
// counts: answering pings must not keep an unauthenticated connection open.
// After a close has been decided, the close grace deadline must stand
// (extendReadDeadline).
func (s *Session) pong() {
	if s.authComplete {
		s.extendReadDeadline(s.pongWait())
	}
}

// pongWait is how long after its last frame a peer is dropped.
func (s *Session) pongWait() time.Duration { return 2 * s.cfg.PingInterval }

// finish tears the session down once the read loop has ended: leave rooms so
// presence is right, stop the writer, close the socket.
func (s *Session) finish(readErr error) {
	if s.expiryTimer != nil {
		s.expiryTimer.Stop()
	}
	s.pingTimer.Stop()
	if s.authComplete {
		s.roomsMu.Lock()
		rooms := slices.Clone(s.rooms)
		s.roomsMu.Unlock()
		for _, room := range rooms {
			s.deps.Hub.Leave(s, room)
		}
		s.deps.Hub.Unregister(s)
	}
	// If the read loop ended without a close decision (the client went
	// away), make the writer stop without writing anything more.
	s.out.Close(websocket.CloseNormalClosure, "", false)
	<-s.writerDone
	if s.poll != nil {
		s.poll.Forget() // before the close: the number may be reused at once
	}
	_ = s.ws.Close()
	var ce *websocket.CloseError
	switch {
	case readErr == nil, errors.As(readErr, &ce):
		s.log.Debug("connection closed", s.logAttrs("err", readErr)...)
	default:
		s.log.Debug("connection ended", s.logAttrs("err", readErr)...)
	}
	s.deps.Metrics.Connections.Dec()
	if s.onDone != nil {
		s.onDone()
	}
}

// fail closes the connection at once, discarding queued frames, with code
// and reason. Used for auth failures and abuse.
func (s *Session) fail(code int, reason string) {
	s.out.Close(code, reason, false)
}

// readLoop reads and handles client messages until the connection ends,
// then finishes the session; with a poller it returns early, parked, when
// the connection is idle (see the package comment). woken is true when it
// resumes a parked session.
func (s *Session) readLoop(woken bool) {
	for {
		if woken {
			// Whatever woke the reader (bytes, a hang-up, an error, an
			// unpark) is for ReadMessage once the pings and pongs at the
			// head of the bytes are served: no parking before it.
			woken = false
			again, err := s.takeControlFrames()
			if err != nil {
				s.finish(err)
				return
			}
			if again {
				return
			}
		} else if s.mayPark() && s.br.Buffered() == 0 && s.park() {
			return
		}
		mt, data, err := s.ws.ReadMessage()
		if err != nil {
			s.finish(s.readError(err))
			return
		}
		if s.out.IsClosing() {
			// A close has been decided (auth failure, abuse, expiry,
			// overflow, shutdown): nothing the client sends from now on is
			// served. The read loop only waits for the close reply or the
			// grace deadline the writer set.
			continue
		}
		// The deep work runs on a pooled worker (chatd/offstack): this
		// goroutine, parked in the read above on every idle connection
		// without a poller, keeps a small stack, and the worker's stack
		// stays grown between frames.
		s.deps.Workers.Run(func() { s.handleMessage(mt, data, s.pongWait()) })
	}
}

// mayPark reports whether the reader may park now: with a poller, after the
// hello, and with no close decided (then the reader waits for the client's
// close reply or the grace deadline).
func (s *Session) mayPark() bool {
	return s.poll != nil && s.authComplete && !s.out.IsClosing()
}

// park arms the socket and reports true if the reader must now return: a
// poller event or an unpark resumes it on a new goroutine. It reports false
// when the reader must go on reading (the socket could not be armed, or a
// close was decided meanwhile and this reader won the resume itself).
func (s *Session) park() bool {
	s.deps.Metrics.SessionsParked.Inc()
	s.state.Store(parked)
	// A close decided before the store saw the reader running and did not
	// unpark it: take it back. (One decided after the store unparks it.)
	if s.out.IsClosing() {
		return !s.resumeHere()
	}
	if err := s.poll.Arm(s.onReadable); err != nil {
		if !s.resumeHere() {
			return true // resumed meanwhile on another goroutine
		}
		s.log.Debug("cannot park the reader; it stays", s.logAttrs("err", err)...)
		s.poll.Forget()
		s.poll = nil
		return false
	}
	return true
}

// resumeHere takes a parked session back for the calling goroutine; false:
// an event or an unpark has resumed it elsewhere.
func (s *Session) resumeHere() bool {
	if !s.state.CompareAndSwap(parked, running) {
		return false
	}
	s.deps.Metrics.SessionsParked.Dec()
	return true
}

// onReadable is the poller's callback: the socket has bytes, a hang-up or an
// error. It runs on a goroutine of its own, which becomes the reader.
func (s *Session) onReadable() {
	if s.resumeHere() {
		s.readLoop(true)
	}
}

// unpark resumes a parked session's reader on a new goroutine, for a read
// that must happen though the client sent nothing: the close reply or close
// grace after a close is decided, or the timeout of a silent peer. It does
// nothing to a running reader.
func (s *Session) unpark() {
	if s.resumeHere() {
		go s.readLoop(true)
	}
}

// takeControlFrames runs when a parked reader resumes: it serves the
// complete ping and pong frames at the head of what the socket has, and
// parks again (again=true) if nothing else is there. Anything else is left
// for ReadMessage, a read error included.
func (s *Session) takeControlFrames() (again bool, err error) {
	for {
		if _, err := s.br.Peek(1); err != nil {
			return false, nil // ReadMessage reads again and reports it
		}
		took, err := s.takeControlFrame()
		if err != nil || !took {
			return false, err
		}
		if s.br.Buffered() == 0 {
			return s.mayPark() && s.park(), nil
		}
	}
}

// Control frame bytes of RFC 6455 §5.2 that takeControlFrame consumes.
const (
	finPing     = 0x80 | websocket.PingMessage // FIN, RSV clear, opcode 0x9
	finPong     = 0x80 | websocket.PongMessage // FIN, RSV clear, opcode 0xA
	maskBit     = 0x80
	maxCtrlSize = 125
)

// takeControlFrame consumes the buffered frame at the head of br if it is a
// complete, well-formed client ping or pong (see the package comment), and
// handles it.
func (s *Session) takeControlFrame() (took bool, err error) {
	n := s.br.Buffered()
	if n < 6 {
		return false, nil
	}
	h, _ := s.br.Peek(2)
	op := h[0]
	if (op != finPing && op != finPong) || h[1]&maskBit == 0 || int(h[1]&^maskBit) > maxCtrlSize {
		return false, nil
	}
	size := int(h[1] &^ maskBit)
	if n < 6+size {
		return false, nil
	}
	frame, _ := s.br.Peek(6 + size)
	var payload []byte
	if op == finPing && size > 0 {
		payload = make([]byte, size)
		key := frame[2:6]
		for i, b := range frame[6:] {
			payload[i] = b ^ key[i&3]
		}
	}
	_, _ = s.br.Discard(6 + size)
	if op == finPong {
		s.pong()
		return true, nil
	}
	return true, s.answerPing(payload)
}

// answerPing writes the pong to a client's ping, as gorilla's default ping
// handler does but with the session's write timeout. A failed write is
// left for the writer and the reader to notice, as gorilla leaves it.
func (s *Session) answerPing(payload []byte) error {
	err := s.ws.WriteControl(websocket.PongMessage, payload, time.Now().Add(s.cfg.WriteTimeout))
	var ne net.Error
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) && !errors.As(err, &ne) {
		return err
	}
	return nil
}

// handleMessage handles one WebSocket message read from the client.
func (s *Session) handleMessage(mt int, data []byte, pongWait time.Duration) {
	if s.authComplete {
		s.extendReadDeadline(pongWait)
	}
	if mt != websocket.TextMessage {
		s.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		if s.allow(nil) {
			s.sendError(protocol.NewError(protocol.CodeBadFrame, "", "frames must be WebSocket text messages"))
		}
		return
	}
	// Every frame, valid or not, draws from the token bucket: garbage that
	// earns an error frame must cost the sender as much as a send. Decoding
	// comes first only so that a refusal can name the request.
	f, perr := protocol.DecodeClientFrame(data)
	meter := &f
	if perr != nil {
		meter = nil // do not echo the id and room of an invalid frame
	}
	if !s.allow(meter) {
		return
	}
	if perr != nil {
		s.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		s.sendError(perr)
		return
	}
	s.deps.Metrics.FramesIn.WithLabelValues(f.Type).Inc()
	if !s.authComplete {
		if s.handleHello(&f) {
			s.extendReadDeadline(pongWait)
		}
		return
	}
	s.dispatch(&f)
}

// extendReadDeadline pushes the read deadline d into the future, unless a
// close has been decided: then the close grace stands. The re-check after
// setting closes the race with a close decided on another goroutine (token
// expiry, overflow, shutdown) between the check and the update.
func (s *Session) extendReadDeadline(d time.Duration) {
	if s.out.IsClosing() {
		return
	}
	deadline := time.Now().Add(d)
	s.readDeadline.Store(deadline.UnixNano())
	_ = s.ws.SetReadDeadline(deadline)
	if s.out.IsClosing() {
		_ = s.ws.SetReadDeadline(time.Now().Add(closeGrace))
	}
}

// readError classifies why reading stopped and records a close code when the
// server decided it.
func (s *Session) readError(err error) error {
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent the 1009 close frame.
		s.deps.Metrics.Closes.WithLabelValues(strconv.Itoa(protocol.CloseMessageTooBig)).Inc()
	case !s.authComplete && isTimeout(err) && !s.out.IsClosing():
		s.deps.Metrics.Closes.WithLabelValues(strconv.Itoa(protocol.CloseHelloTimeout)).Inc()
		_ = s.ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(protocol.CloseHelloTimeout, "no hello received in time"),
			time.Now().Add(s.cfg.WriteTimeout))
	}
	return err
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// handleHello authenticates the connection. It reports whether the session
// is now authenticated.
func (s *Session) handleHello(f *protocol.ClientFrame) bool {
	if f.Type != protocol.TypeHello {
		s.sendError(protocol.NewError(protocol.CodeHelloRequired, f.ID, "send hello first"))
		return false
	}
	if f.Protocol != 0 && f.Protocol != protocol.Version {
		s.fail(protocol.CloseUnsupportedVersion, "unsupported protocol version; this server speaks "+strconv.Itoa(protocol.Version))
		return false
	}
	req := hooks.ConnectRequest{Transport: hooks.TransportWS, RemoteAddr: s.remoteAddr}
	if s.connectFacts != nil {
		req = *s.connectFacts
		s.connectFacts = nil
	}
	req.Token, req.Name = f.Token, f.Name
	id, err := hooks.Authenticate(context.Background(), s.deps.Hooks.Connector(), s.deps.Auth, req)
	if err != nil {
		var ae *auth.Error
		code, reason := "internal", "authentication failed"
		if errors.As(err, &ae) {
			code, reason = ae.Code, ae.Reason
		}
		s.deps.Metrics.AuthFailures.WithLabelValues(code).Inc()
		s.log.Info("hello refused", s.logAttrs("code", code)...)
		closeCode := protocol.CloseAuthFailed
		if code == hooks.CodeHookUnavailable {
			// Not the client's fault: it should come back later, as
			// after any 1013 (docs/protocol.md §10).
			closeCode = protocol.CloseTryAgainLater
		}
		s.fail(closeCode, reason)
		return false
	}
	s.identity = id
	s.authComplete = true
	// The hub queues the welcome and registers the session in one step, so
	// no direct message can overtake the welcome and none sent after the
	// client has read it can miss the session.
	s.deps.Hub.Register(s, protocol.Encode(protocol.Welcome{
		Type: protocol.TypeWelcome, ID: f.ID, Protocol: protocol.Version,
		Session: s.id, User: id.UserID, Anonymous: id.Anonymous,
		Server: s.cfg.ServerID, Limits: s.cfg.Limits,
	}))
	if !id.ExpiresAt.IsZero() {
		// The token was accepted with the clock-skew leeway, so the same
		// leeway applies to when it stops being good enough.
		s.expiryTimer = time.AfterFunc(time.Until(id.ExpiresAt)+s.cfg.TokenLeeway, func() {
			s.fail(protocol.CloseTokenExpired, "token expired")
		})
	}
	return true
}

// send queues a frame for this connection only.
func (s *Session) send(frame []byte) { s.Enqueue(frame) }

func (s *Session) sendError(e *protocol.Error) {
	s.deps.Metrics.ErrorFrames.WithLabelValues(e.Code).Inc()
	s.send(protocol.Encode(e))
}
