package socketio

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/wsframe"
)

// Engine.IO over WebSocket carries one packet per WebSocket message, where
// the native protocol packs a batch of frames into one. To keep one system
// call per batch all the same, the writer frames its messages itself (a
// server's frames are unmasked: a header and the payload) into one buffer
// and writes it at once; gorilla/websocket does the upgrade and the reading.
// Nothing else writes to the socket: the handlers gorilla would answer
// pings and closes with are replaced by ones that queue the answer.

// WebSocket opcodes the writer uses.
const (
	opText  = 0x1
	opClose = 0x8
	opPong  = 0xA
)

// prepareWS sets the read limit and replaces gorilla's ping and close
// handlers, which would write to the socket themselves.
func (e *engineSession) prepareWS(ws *websocket.Conn) {
	ws.SetReadLimit(int64(e.srv.cfg.Session.MaxFrameBytes))
	ws.SetPingHandler(func(data string) error {
		e.push(item{frame: append([]byte{0, opPong}, data...)})
		return nil
	})
	ws.SetCloseHandler(func(int, string) error {
		// The writer answers with a normal close; reading ends here.
		e.out.Close(websocket.CloseNormalClosure, "", false)
		return nil
	})
}

// runWebSocket serves the session's WebSocket until it ends, then finishes
// the session. It runs on its own goroutine; the HTTP handler has returned.
func (e *engineSession) runWebSocket(ws *websocket.Conn) {
	e.readLoop(ws)
	e.out.Close(websocket.CloseNormalClosure, "", false)
	select {
	case <-e.writerDone:
	case <-time.After(e.srv.cfg.Session.WriteTimeout + closeGrace):
	}
	e.finish()
}

// closeGrace is how long the server waits for the client's close reply.
const closeGrace = time.Second

// readLoop reads packets until the socket fails or closes. The work of each
// packet runs on a pooled worker (chatd/offstack) so that the parked reader
// keeps a small stack, as the native session does.
func (e *engineSession) readLoop(ws *websocket.Conn) {
	idle := e.srv.cfg.Session.PingInterval + e.srv.cfg.PingTimeout
	for {
		if !e.out.IsClosing() {
			_ = ws.SetReadDeadline(time.Now().Add(idle))
		}
		mt, data, err := ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				e.srv.deps.Metrics.Closes.WithLabelValues(strconv.Itoa(websocket.CloseMessageTooBig)).Inc()
			}
			return
		}
		if e.out.IsClosing() {
			continue
		}
		e.srv.deps.Workers.Run(func() {
			e.readMu.Lock()
			defer e.readMu.Unlock()
			e.handlePacket(data, mt == websocket.BinaryMessage)
		})
	}
}

// wsWriteLoop writes everything queued as WebSocket frames, one system
// call per batch, until the queue is empty; then it exits. When the session
// is closing it writes the close frame last.
func (e *engineSession) wsWriteLoop() {
	e.mu.Lock()
	ws := e.ws
	e.mu.Unlock()
	// Busy connections on a busy node share the node's flushes, as on /ws.
	e.srv.cfg.Session.Coalescer.Wait(e.lastWrite)
	conn := ws.NetConn()
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	for {
		items, closing, code, reason, park := e.out.Take()
		if park {
			return
		}
		if len(items) > 0 {
			bp := wsframe.Buffer()
			buf := *bp
			var scratch []byte
			packets := 0
			for _, it := range items {
				if len(it.frame) >= 2 && it.frame[0] == 0 {
					buf = wsframe.Append(buf, int(it.frame[1]), it.frame[2:])
					continue
				}
				e.render(it, &scratch, func(p []byte) {
					buf = wsframe.Append(buf, opText, p)
					packets++
				})
			}
			start := time.Now()
			_ = conn.SetWriteDeadline(start.Add(e.srv.cfg.Session.WriteTimeout))
			_, err := conn.Write(buf)
			e.lastWrite = time.Now()
			e.srv.cfg.Session.Coalescer.Record(start, e.lastWrite)
			wsframe.Release(bp, buf)
			e.srv.deps.Metrics.WritesOut.Inc()
			e.srv.metrics.packetsOut.Add(float64(packets))
			if err != nil {
				e.out.Close(websocket.CloseAbnormalClosure, "", false)
				_ = ws.SetReadDeadline(time.Now())
				e.writerFinished()
				return
			}
		}
		if closing {
			e.writeClose(ws, code, reason)
			e.writerFinished()
			return
		}
	}
}

func (e *engineSession) writeClose(ws *websocket.Conn, code int, reason string) {
	if code == websocket.CloseAbnormalClosure {
		return
	}
	conn := ws.NetConn()
	_ = conn.SetWriteDeadline(time.Now().Add(e.srv.cfg.Session.WriteTimeout))
	_, _ = conn.Write(wsframe.Append(nil, opClose, websocket.FormatCloseMessage(code, reason)))
	_ = ws.SetReadDeadline(time.Now().Add(closeGrace))
}

// serveUpgrade takes a WebSocket opened for a long-polling session: the
// client probes it ("2probe" → "3probe"), the waiting poll is released with
// a noop, and the client's "5" switches the session to it.
func (e *engineSession) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	if e.mode != modePolling || e.probing || e.ended {
		e.mu.Unlock()
		engineError(w, http.StatusBadRequest, 3, "Bad request: the session cannot be upgraded now")
		return
	}
	e.probing = true
	e.mu.Unlock()
	ws, err := e.srv.upgrader.Upgrade(w, r, nil)
	if err != nil {
		e.mu.Lock()
		e.probing = false
		e.mu.Unlock()
		return
	}
	go e.runProbe(ws)
}

func (e *engineSession) runProbe(ws *websocket.Conn) {
	fail := func() {
		_ = ws.Close()
		e.mu.Lock()
		e.probing = false
		e.mu.Unlock()
	}
	ws.SetReadLimit(int64(e.srv.cfg.Session.MaxFrameBytes))
	_ = ws.SetReadDeadline(time.Now().Add(e.srv.cfg.Session.HelloTimeout))
	for {
		mt, data, err := ws.ReadMessage()
		if err != nil {
			fail()
			return
		}
		switch {
		case mt == websocket.TextMessage && string(data) == "2probe":
			conn := ws.NetConn()
			_ = conn.SetWriteDeadline(time.Now().Add(e.srv.cfg.Session.WriteTimeout))
			if _, err := conn.Write(wsframe.Append(nil, opText, []byte("3probe"))); err != nil {
				fail()
				return
			}
			select {
			case e.noop <- struct{}{}:
			default:
			}
		case mt == websocket.TextMessage && string(data) == "5":
			e.switchToWebSocket(ws)
			e.readLoop(ws)
			e.out.Close(websocket.CloseNormalClosure, "", false)
			select {
			case <-e.writerDone:
			case <-time.After(e.srv.cfg.Session.WriteTimeout + closeGrace):
			}
			e.finish()
			return
		default:
			// Anything else on a probing socket is ignored, as Engine.IO does.
		}
	}
}

// switchToWebSocket makes ws the session's transport. A GET still waiting
// is released; a writer role held for the next GET goes to a WebSocket
// writer.
func (e *engineSession) switchToWebSocket(ws *websocket.Conn) {
	e.prepareWS(ws)
	e.writeMu.Lock()
	e.mu.Lock()
	e.mode = modeWebSocket
	e.ws = ws
	e.probing = false
	old := e.transportLabel
	e.transportLabel = "websocket"
	start := false
	select {
	case <-e.pollWake:
		start = true
	default:
	}
	select {
	case e.noop <- struct{}{}:
	default:
	}
	e.mu.Unlock()
	e.writeMu.Unlock()
	e.srv.metrics.sessions.WithLabelValues(old).Dec()
	e.srv.metrics.sessions.WithLabelValues("websocket").Inc()
	e.srv.metrics.upgrades.Inc()
	if start {
		go e.wsWriteLoop()
	}
}
