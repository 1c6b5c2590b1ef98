package socketio

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/session"
)

// item is one entry of a session's outbox: a native frame queued by the hub
// to a namespace socket (rendered as a Socket.IO packet when written), or a
// complete Engine.IO packet (s nil, or a frame not starting with '{').
type item struct {
	s     *socket
	frame []byte
}

type transportMode uint8

const (
	modePolling transportMode = iota
	modeWebSocket
)

// engineSession is one Engine.IO session: its transport, its outbox and
// heartbeat, and the namespace sockets multiplexed on it.
type engineSession struct {
	srv            *Server
	sid            string
	remote         string
	release        func()
	untrack        func()
	transportLabel string
	out            *session.Outbox[item]
	// facts are the handshake request's, for the connect hook of each
	// namespace's CONNECT (nil without a connect hook).
	facts *hooks.ConnectRequest
	// meter and skipBinary belong to whoever handles incoming packets:
	// packets are handled one at a time (readMu), from a WebSocket read
	// loop or a POST.
	readMu     sync.Mutex
	meter      *session.FrameMeter
	skipBinary int

	mu           sync.Mutex
	mode         transportMode
	ws           *websocket.Conn
	probing      bool
	awaitingPong bool
	ended        bool
	aborted      bool
	sockets      []*socket
	heart        *time.Timer
	connectTimer *time.Timer

	// writeMu is held by whoever takes from the outbox and writes (a
	// WebSocket writer batch, a GET's response) and by the switch to
	// WebSocket, so two writers never interleave even around an upgrade.
	writeMu sync.Mutex
	// Long-polling: pollWake wakes the waiting GET (or the next one) when
	// the writer role is claimed; noop makes a waiting GET return at once
	// (upgrade); getBusy and postMu refuse overlapping requests.
	pollWake chan struct{}
	noop     chan struct{}
	getBusy  atomic.Bool
	postMu   sync.Mutex

	// lastWrite is touched by writers only, which never overlap.
	lastWrite time.Time

	writerDone     chan struct{}
	writerDoneOnce sync.Once
	endOnce        sync.Once
	done           chan struct{}
}

func newEngineSession(srv *Server, sid, remote string, release func()) *engineSession {
	cfg := &srv.cfg.Session
	e := &engineSession{
		srv:        srv,
		sid:        sid,
		remote:     remote,
		release:    release,
		meter:      session.NewFrameMeter(cfg.RatePerSecond, cfg.RateBurst, cfg.RateAbuseLimit, cfg.RateAbuseWindow),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	e.out = session.NewOutbox[item](cfg.QueueFrames, e.kick)
	return e
}

// openPacket is the Engine.IO open packet of this session.
func (e *engineSession) openPacket() []byte {
	cfg := &e.srv.cfg
	b := []byte(`0{"sid":"`)
	b = append(b, e.sid...)
	b = append(b, `","upgrades":[`...)
	e.mu.Lock()
	if e.mode == modePolling {
		b = append(b, `"websocket"`...)
	}
	e.mu.Unlock()
	b = append(b, `],"pingInterval":`...)
	b = strconv.AppendInt(b, cfg.Session.PingInterval.Milliseconds(), 10)
	b = append(b, `,"pingTimeout":`...)
	b = strconv.AppendInt(b, cfg.PingTimeout.Milliseconds(), 10)
	b = append(b, `,"maxPayload":`...)
	b = strconv.AppendInt(b, int64(cfg.Session.MaxFrameBytes), 10)
	return append(b, '}')
}

func (e *engineSession) startPolling() {
	e.mode = modePolling
	e.pollWake = make(chan struct{}, 1)
	e.noop = make(chan struct{}, 1)
	e.startTimers()
}

func (e *engineSession) startWebSocket(ws *websocket.Conn) {
	e.mode = modeWebSocket
	e.ws = ws
	e.prepareWS(ws)
	e.pushRaw(e.openPacket())
	e.startTimers()
	go e.runWebSocket(ws)
}

// startTimers arms the heartbeat and the connect timeout: a session that
// connects no namespace within the hello timeout is closed.
func (e *engineSession) startTimers() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.heart = time.AfterFunc(e.srv.cfg.Session.PingInterval, e.heartbeat)
	e.connectTimer = time.AfterFunc(e.srv.cfg.Session.HelloTimeout, func() {
		e.mu.Lock()
		none := len(e.sockets) == 0
		e.mu.Unlock()
		if none {
			e.Close(protocol.CloseHelloTimeout, "no namespace connected in time")
		}
	})
}

// heartbeat sends a ping every ping interval (counted from the last pong)
// and ends the session when a ping is not answered within the ping timeout.
func (e *engineSession) heartbeat() {
	e.mu.Lock()
	if e.ended {
		e.mu.Unlock()
		return
	}
	if e.awaitingPong {
		e.mu.Unlock()
		e.srv.deps.Log.Debug("socket.io ping timeout", "sid", e.sid, "remote", e.remote)
		e.Abort()
		return
	}
	e.awaitingPong = true
	e.heart.Reset(e.srv.cfg.PingTimeout)
	e.mu.Unlock()
	e.pushRaw(pingPacket)
}

var (
	pingPacket  = []byte{eioPing}
	noopPacket  = []byte{eioNoop}
	closePacket = []byte{eioClose}
)

func (e *engineSession) onPong() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.awaitingPong && !e.ended {
		e.awaitingPong = false
		e.heart.Reset(e.srv.cfg.Session.PingInterval)
	}
}

// push queues an item; an overflow closes the session as a slow consumer.
func (e *engineSession) push(it item) {
	if e.out.Push(it, protocol.CloseSlowConsumer, "slow consumer: outgoing queue overflowed") {
		e.srv.deps.Metrics.QueueOverflows.Inc()
	}
}

func (e *engineSession) pushRaw(packet []byte) { e.push(item{frame: packet}) }

// kick runs a writer: on WebSocket a goroutine, on long-polling the next
// (or the waiting) GET, which takes the role from pollWake.
func (e *engineSession) kick() {
	e.mu.Lock()
	if e.mode == modeWebSocket {
		e.mu.Unlock()
		go e.wsWriteLoop()
		return
	}
	select {
	case e.pollWake <- struct{}{}:
	default:
	}
	e.mu.Unlock()
}

// Close implements Conn: queued packets are written (for 1012), then the
// close.
func (e *engineSession) Close(code int, reason string) {
	e.out.Close(code, reason, code == protocol.CloseServiceRestart)
	e.endPollingSoon()
}

// fail closes at once, discarding what is queued.
func (e *engineSession) fail(code int, reason string) {
	e.out.Close(code, reason, false)
	e.endPollingSoon()
}

// pollCloseGrace is how long a closing long-polling session waits for a
// GET to carry its close packet: a live client always has one waiting or
// sends the next at once, so only a client already gone lets it pass.
const pollCloseGrace = 2 * closeGrace

// endPollingSoon ends a closing long-polling session that no GET comes
// for, so that a shutdown does not wait for its heartbeat to time out.
func (e *engineSession) endPollingSoon() {
	e.mu.Lock()
	polling := e.mode == modePolling && !e.ended
	e.mu.Unlock()
	if polling {
		time.AfterFunc(pollCloseGrace, func() {
			e.mu.Lock()
			still := e.mode == modePolling
			e.mu.Unlock()
			if still {
				e.finish()
			}
		})
	}
}

// CloseWritten implements Conn.
func (e *engineSession) CloseWritten() <-chan struct{} { return e.writerDone }

// Abort implements Conn: the transport is dropped without a close.
func (e *engineSession) Abort() {
	e.out.Close(websocket.CloseAbnormalClosure, "", false)
	e.mu.Lock()
	e.aborted = true
	ws, mode := e.ws, e.mode
	e.mu.Unlock()
	if mode == modeWebSocket && ws != nil {
		_ = ws.Close()
		return
	}
	e.finish()
}

func (e *engineSession) writerFinished() {
	e.writerDoneOnce.Do(func() { close(e.writerDone) })
}

// finish ends the session once: its sockets leave their rooms, the
// registries forget it, the admission slot is freed.
func (e *engineSession) finish() {
	e.endOnce.Do(func() {
		e.mu.Lock()
		e.ended = true
		sockets := e.sockets
		e.sockets = nil
		if e.heart != nil {
			e.heart.Stop()
		}
		if e.connectTimer != nil {
			e.connectTimer.Stop()
		}
		ws := e.ws
		e.mu.Unlock()
		for _, s := range sockets {
			s.teardown()
		}
		e.countClose()
		e.out.Close(websocket.CloseNormalClosure, "", false)
		if ws != nil {
			_ = ws.Close()
		}
		e.writerFinished()
		e.srv.unregister(e)
		if e.untrack != nil {
			e.untrack()
		}
		e.release()
		close(e.done)
	})
}

// countClose counts, once, in chatd_connection_closes_total the close the
// server decided for this session, whichever transport carried it (or
// none, when a long-polling client had gone): not a normal close without a
// reason, nor a dropped transport (1006, never sent).
func (e *engineSession) countClose() {
	closing, code, reason := e.out.CloseDecision()
	if !closing || code == websocket.CloseAbnormalClosure || (code == websocket.CloseNormalClosure && reason == "") {
		return
	}
	e.srv.deps.Metrics.Closes.WithLabelValues(strconv.Itoa(code)).Inc()
}

func (e *engineSession) label() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.transportLabel
}

// socketFor returns the connected socket of namespace ns, or nil.
func (e *engineSession) socketFor(ns string) *socket {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.sockets {
		if s.ns.Name == ns {
			return s
		}
	}
	return nil
}

func (e *engineSession) addSocket(s *socket) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return false
	}
	e.sockets = append(e.sockets, s)
	return true
}

func (e *engineSession) removeSocket(s *socket) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, o := range e.sockets {
		if o == s {
			e.sockets = append(e.sockets[:i], e.sockets[i+1:]...)
			return true
		}
	}
	return false
}

// handlePacket handles one Engine.IO packet from the client. Callers hold
// readMu.
func (e *engineSession) handlePacket(data []byte, binary bool) {
	if binary || (len(data) > 0 && data[0] == 'b') {
		e.onBinary()
		return
	}
	if len(data) == 0 {
		return
	}
	switch data[0] {
	case eioPong:
		e.onPong()
	case eioMessage:
		e.onMessage(data[1:])
	case eioClose:
		e.finishFromClient()
	case eioPing, eioUpgrade, eioNoop:
		// A client ping (Engine.IO v3) or a stray upgrade packet: nothing to do.
	default:
		e.srv.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
	}
}

// finishFromClient ends a session the client closed.
func (e *engineSession) finishFromClient() {
	e.mu.Lock()
	ws := e.ws
	e.mu.Unlock()
	e.out.Close(websocket.CloseNormalClosure, "", false)
	if ws != nil {
		_ = ws.SetReadDeadline(time.Now())
		return
	}
	e.finish()
}

// onBinary handles a binary message: an attachment of a binary packet
// (refused when it was announced), or a stray one.
func (e *engineSession) onBinary() {
	if !e.allow() {
		return
	}
	if e.skipBinary > 0 {
		e.skipBinary--
		return
	}
	e.srv.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
	e.errorTo("/", -1, protocol.NewError(protocol.CodeBadFrame, "", errBinary.Error()))
}

// allow meters one packet; an abusive client is closed with 1008.
func (e *engineSession) allow() bool {
	ok, abusive := e.meter.Allow()
	if ok {
		return true
	}
	e.srv.deps.Metrics.RateLimited.Inc()
	if abusive {
		e.srv.deps.Log.Warn("closing socket.io session for sustained rate limit abuse", "sid", e.sid, "remote", e.remote)
		e.fail(protocol.ClosePolicyViolation, "rate limit exceeded repeatedly")
	}
	return false
}

// onMessage handles a Socket.IO packet. Every packet takes a token first;
// it is decoded beforehand only so that a refusal can name it (its ack).
func (e *engineSession) onMessage(data []byte) {
	p, err := DecodePacket(data)
	if !e.allow() {
		if e.out.IsClosing() {
			return
		}
		if p.Type == sioBinaryEvent || p.Type == sioBinaryAck {
			e.skipBinary = p.Attachments
		}
		pe := protocol.NewError(protocol.CodeRateLimited, "", "too many packets; slow down and retry")
		if err == nil && p.Type == sioConnect {
			e.pushRaw(connectError(p.Namespace, pe))
			return
		}
		e.errorTo(p.Namespace, p.AckID, pe)
		return
	}
	if err != nil {
		e.srv.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		if err == errBinary {
			e.skipBinary = p.Attachments
		}
		e.errorTo(p.Namespace, p.AckID, protocol.NewError(protocol.CodeBadFrame, "", err.Error()))
		return
	}
	switch p.Type {
	case sioConnect:
		e.connect(&p)
	case sioDisconnect:
		if s := e.socketFor(p.Namespace); s != nil {
			e.removeSocket(s)
			s.teardown()
		}
	case sioEvent:
		s := e.socketFor(p.Namespace)
		if s == nil {
			e.pushRaw(connectError(p.Namespace, protocol.NewError(protocol.CodeHelloRequired, "", "connect to the namespace first")))
			return
		}
		s.onEvent(&p)
	case sioAck:
		// The server asks for no acknowledgements; a stray one is ignored.
	}
}

// errorTo reports an error about a packet: in its acknowledgement when it
// asked for one, else as an "error" event, on the packet's namespace when it
// is connected (else the main one, else as a CONNECT_ERROR).
func (e *engineSession) errorTo(ns string, ackID int64, pe *protocol.Error) {
	s := e.socketFor(ns)
	if s == nil {
		s = e.socketFor("/")
	}
	if s == nil {
		e.pushRaw(connectError(ns, pe))
		return
	}
	if ackID >= 0 && s.ns.Name == ns {
		pe.ID = strconv.FormatInt(ackID, 10)
	}
	s.sendError(pe)
}

// connectError is a CONNECT_ERROR packet carrying a native error.
func connectError(ns string, pe *protocol.Error) []byte {
	b := appendPacketHead([]byte{eioMessage}, sioConnectError, ns, -1)
	data, _ := jsonMarshal(struct {
		Message string `json:"message"`
		Data    struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"data"`
	}{Message: pe.Message, Data: struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{pe.Code, pe.Message}})
	return append(b, data...)
}

// render turns an outbox item into the Engine.IO packets it stands for,
// passing each to emit (the bytes are only valid during the call).
func (e *engineSession) render(it item, scratch *[]byte, emit func([]byte)) {
	if it.s == nil || len(it.frame) == 0 || it.frame[0] != '{' {
		emit(it.frame)
		return
	}
	it.s.render(it.frame, scratch, emit)
}

var _ http.Handler = (*Server)(nil)
