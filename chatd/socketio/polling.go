package socketio

import (
	"io"
	"net/http"
	"time"

	"github.com/gorilla/websocket"
)

// servePoll answers a long-polling GET with what is queued, waiting until
// something is (a ping comes every ping interval at the latest).
func (e *engineSession) servePoll(w http.ResponseWriter, r *http.Request) {
	if !e.getBusy.CompareAndSwap(false, true) {
		// Engine.IO allows one GET at a time; a second one means a broken
		// client, whose session is closed.
		engineError(w, http.StatusBadRequest, 3, "Bad request: overlapping GET requests")
		e.fail(websocket.ClosePolicyViolation, "overlapping long-polling requests")
		return
	}
	defer e.getBusy.Store(false)
	e.writeMu.Lock()
	// A long poll outlasts the HTTP server's write timeout; the deadline
	// is set again just before the response is written.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	held, woken := true, false
	defer func() {
		if held {
			e.writeMu.Unlock()
		}
	}()
	for {
		e.mu.Lock()
		mode, aborted := e.mode, e.aborted
		e.mu.Unlock()
		if aborted {
			panic(http.ErrAbortHandler) // a crash: the connection is dropped
		}
		if mode != modePolling {
			if woken {
				// The writer role came with the wake-up: it goes to a
				// WebSocket writer now.
				go e.wsWriteLoop()
			}
			e.pollRespond(w, rc, noopPacket)
			return
		}
		items, closing, _, _, park := e.out.Take()
		if !park {
			var scratch []byte
			var body []byte
			for _, it := range items {
				if len(it.frame) > 0 && it.frame[0] == 0 {
					continue // a WebSocket control frame: not for this transport
				}
				e.render(it, &scratch, func(p []byte) {
					if len(body) > 0 {
						body = append(body, recordSeparator)
					}
					body = append(body, p...)
				})
			}
			if closing {
				if len(body) > 0 {
					body = append(body, recordSeparator)
				}
				body = append(body, eioClose)
			}
			e.pollRespond(w, rc, body)
			if closing {
				e.writeMu.Unlock()
				held = false
				e.writerFinished()
				e.finish()
				return
			}
			if e.out.Release() {
				e.kick()
			}
			return
		}
		// Nothing queued: the writer role is free; wait for it, for an
		// upgrade's noop, or for the end.
		e.writeMu.Unlock()
		held, woken = false, false
		select {
		case <-e.pollWake:
			woken = true
		case <-e.noop:
			e.pollRespond(w, rc, noopPacket)
			return
		case <-e.done:
			e.mu.Lock()
			aborted := e.aborted
			e.mu.Unlock()
			if aborted {
				panic(http.ErrAbortHandler) // a crash: the connection is dropped
			}
			e.pollRespond(w, rc, closePacket) // the session ended: tell the client
			return
		case <-r.Context().Done():
			return
		}
		e.writeMu.Lock()
		held = true
	}
}

func (e *engineSession) pollRespond(w http.ResponseWriter, rc *http.ResponseController, body []byte) {
	_ = rc.SetWriteDeadline(time.Now().Add(e.srv.cfg.Session.WriteTimeout))
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
	e.srv.deps.Metrics.WritesOut.Inc()
}

// servePost handles a POST of packets.
func (e *engineSession) servePost(w http.ResponseWriter, r *http.Request) {
	if !e.postMu.TryLock() {
		engineError(w, http.StatusBadRequest, 3, "Bad request: overlapping POST requests")
		e.fail(websocket.ClosePolicyViolation, "overlapping long-polling requests")
		return
	}
	defer e.postMu.Unlock()
	limit := int64(e.srv.cfg.Session.MaxFrameBytes)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		engineError(w, http.StatusBadRequest, 3, "Bad request: reading the body failed")
		return
	}
	if int64(len(body)) > limit {
		engineError(w, http.StatusRequestEntityTooLarge, 3, "payload larger than maxPayload")
		e.fail(websocket.CloseMessageTooBig, "")
		return
	}
	e.readMu.Lock()
	for _, p := range splitPayload(body) {
		if e.out.IsClosing() {
			break
		}
		e.handlePacket(p, false)
	}
	e.readMu.Unlock()
	w.Header().Set("Content-Type", "text/html")
	_, _ = w.Write([]byte("ok"))
}
