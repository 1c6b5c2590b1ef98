package session

import (
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// startWriter runs a writer goroutine; the outbox calls it when frames arrive
// on an idle connection or a close is decided. Its owner is the session: the
// last writer, the one that handles the close, closes writerDone, which
// finish waits for.
func (s *Session) startWriter() {
	go s.writeLoop()
}

// writeLoop writes everything queued, as newline-separated batches (one
// WebSocket message per batch, up to BatchBytes), until the queue is empty;
// then it exits. When the session is closing it writes the close frame last.
func (s *Session) writeLoop() {
	if d := s.cfg.WriteCoalesce; d > 0 && time.Since(s.lastWrite) < hotConnection {
		// A busy connection: let a few more frames gather so that one
		// system call carries them all. Fan-out to many sockets is bound by
		// write calls, so this trades a bounded delay for a large cut in CPU;
		// a quiet connection (a chat at human pace) is written at once.
		time.Sleep(d)
	}
	for {
		frames, closing, code, reason, park := s.out.Take()
		if park {
			return
		}
		if len(frames) > 0 {
			s.lastWrite = time.Now()
			if err := s.writeBatches(frames); err != nil {
				s.abort()
				s.writerFinished()
				return
			}
		}
		if closing {
			s.writeClose(code, reason)
			s.writerFinished()
			return
		}
	}
}

// writerFinished records that the write side is done for good.
func (s *Session) writerFinished() {
	s.writerDoneOnce.Do(func() { close(s.writerDone) })
}

func (s *Session) writeBatches(frames [][]byte) error {
	_ = s.ws.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	for len(frames) > 0 {
		w, err := s.ws.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		size, n := 0, 0
		for n < len(frames) && (n == 0 || size+len(frames[n])+1 <= s.cfg.BatchBytes) {
			if n > 0 {
				if _, err := w.Write(newline); err != nil {
					return err
				}
			}
			if _, err := w.Write(frames[n]); err != nil {
				return err
			}
			size += len(frames[n]) + 1
			n++
		}
		if err := w.Close(); err != nil {
			return err
		}
		s.deps.Metrics.WritesOut.Inc()
		s.deps.Metrics.FramesOut.Add(float64(n))
		frames = frames[n:]
	}
	return nil
}

var newline = []byte{'\n'}

// writeClose sends the close frame and gives the client a moment to answer
// before the read loop is forced out by its deadline.
func (s *Session) writeClose(code int, reason string) {
	if code == websocket.CloseAbnormalClosure {
		// The socket already failed (abort); 1006 is never sent on the wire.
		return
	}
	if code != websocket.CloseNormalClosure || reason != "" {
		s.deps.Metrics.Closes.WithLabelValues(strconv.Itoa(code)).Inc()
	}
	deadline := time.Now().Add(s.cfg.WriteTimeout)
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
	_ = s.ws.SetReadDeadline(time.Now().Add(closeGrace))
	// A parked reader must wait for the close reply or the grace deadline.
	s.unpark()
}

// hotConnection is how recent the previous write must be for a connection to
// count as busy (and have its writes coalesced).
const hotConnection = 20 * time.Millisecond

// closeGrace is how long the server waits for the client's close reply.
const closeGrace = time.Second

// ping sends a heartbeat and re-arms itself. A timer instead of a ticking
// goroutine keeps idle connections cheap. A failed ping ends the session.
func (s *Session) ping() {
	if s.out.IsClosing() {
		return
	}
	if s.state.Load() == parked && time.Now().UnixNano() > s.readDeadline.Load() {
		// A parked reader has no read in progress for its deadline to
		// end: resume it, and its read fails at once with the timeout.
		s.unpark()
		return
	}
	if err := s.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.cfg.WriteTimeout)); err != nil {
		s.abort()
		return
	}
	s.pingTimer.Reset(s.cfg.PingInterval)
}

// abort ends a connection whose socket failed: nothing more is written, and
// the read loop is unblocked at once so the session finishes.
func (s *Session) abort() {
	s.out.Close(websocket.CloseAbnormalClosure, "", false)
	_ = s.ws.SetReadDeadline(time.Now())
	s.unpark()
}
