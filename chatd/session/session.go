// Package session runs one client connection: the hello handshake, the read
// loop that decodes and dispatches client frames, and the write loop that
// batches queued server frames onto the socket. It enforces the
// per-connection limits (rate, rooms, text size, queue) and turns every
// failure into a protocol error frame or a documented close code.
package session

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/metrics"
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
	// WriteCoalesce is how long a busy connection's writer waits for more
	// frames before writing (0: never waits).
	WriteCoalesce time.Duration
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
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return "s-" + idEncoding.EncodeToString(b[:])
}

// New wraps an upgraded connection. Call Run to serve it.
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
// connect hook to see at the hello. Call it before Run.
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
// is already queued. It returns at once; Run returns when the close is done.
func (s *Session) Close(code int, reason string) {
	s.out.Close(code, reason, true)
}

// CloseWritten is closed once the session's writer is done for good: the
// close frame decided by Close (or another close) has been written, or the
// socket failed and nothing more can be written. The client may not have
// answered the close yet; Run returns when it has, or after the close grace.
func (s *Session) CloseWritten() <-chan struct{} { return s.writerDone }

// Abort drops the connection at once, without a close frame, as a crashed
// server would.
func (s *Session) Abort() {
	s.out.Close(websocket.CloseAbnormalClosure, "", false)
	_ = s.ws.Close()
}

// Run serves the connection until the client leaves or an error or a Close
// ends it. It owns the writer goroutine and waits for it before returning.
// (Shutdown is the server's business: it calls Close with 1012 on every live
// session, so a session holds no per-connection context plumbing.)
func (s *Session) Run() {
	s.deps.Metrics.Connections.Inc()
	defer s.deps.Metrics.Connections.Dec()

	s.pingTimer = time.AfterFunc(s.cfg.PingInterval, s.ping)
	err := s.readLoop()
	s.finish(err)
}

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
	_ = s.ws.Close()
	var ce *websocket.CloseError
	switch {
	case readErr == nil, errors.As(readErr, &ce):
		s.log.Debug("connection closed", s.logAttrs("err", readErr)...)
	default:
		s.log.Debug("connection ended", s.logAttrs("err", readErr)...)
	}
}

// fail closes the connection at once, discarding queued frames, with code
// and reason. Used for auth failures and abuse.
func (s *Session) fail(code int, reason string) {
	s.out.Close(code, reason, false)
}

func (s *Session) readLoop() error {
	s.ws.SetReadLimit(int64(s.cfg.MaxFrameBytes))
	pongWait := 2 * s.cfg.PingInterval
	_ = s.ws.SetReadDeadline(time.Now().Add(s.cfg.HelloTimeout))
	s.ws.SetPongHandler(func(string) error {
		// Before hello only the hello timeout counts: answering pings must
		// not keep an unauthenticated connection open. After a close has
		// been decided, the close grace deadline must stand.
		if s.authComplete {
			s.extendReadDeadline(pongWait)
		}
		return nil
	})
	for {
		mt, data, err := s.ws.ReadMessage()
		if err != nil {
			return s.readError(err)
		}
		if s.out.IsClosing() {
			// A close has been decided (auth failure, abuse, expiry,
			// overflow, shutdown): nothing the client sends from now on is
			// served. The read loop only waits for the close reply or the
			// grace deadline the writer set.
			continue
		}
		// The deep work runs on a pooled worker (chatd/offstack): this
		// goroutine, parked in the read above on every idle connection,
		// keeps a small stack, and the worker's stack stays grown between
		// frames.
		s.deps.Workers.Run(func() { s.handleMessage(mt, data, pongWait) })
	}
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
	_ = s.ws.SetReadDeadline(time.Now().Add(d))
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
