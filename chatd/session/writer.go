package session

import (
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/wsframe"
)

// startWriter runs a writer goroutine; the outbox calls it when frames arrive
// on an idle connection or a close is decided. Its owner is the session: the
// last writer, the one that handles the close, closes writerDone, which
// finish waits for.
func (s *Session) startWriter() {
	go s.writeLoop()
}

// writeLoop writes everything queued, as newline-separated batches (one
// WebSocket message per batch, up to BatchBytes; all of them in one system
// call), until the queue is empty; then it exits. When the session is
// closing it writes the close frame last.
func (s *Session) writeLoop() {
	// A busy connection on a busy node waits for the node's next shared
	// flush (chatd/coalesce), so that messages arriving close together
	// leave in one write; a quiet one is written at once.
	s.cfg.Coalescer.Wait(s.lastWrite)
	for {
		frames, closing, code, reason, park := s.out.Take()
		if park {
			return
		}
		if len(frames) > 0 {
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

// writeBatches writes frames as WebSocket text messages of at most
// BatchBytes each (frames joined by newlines), framed here and written to
// the socket in one system call. gorilla's message writer would cost one
// system call per message; the socket's own write
// lock keeps this write whole next to gorilla's control frames (pings,
// pongs, the close), each of which is also a single write.
func (s *Session) writeBatches(frames [][]byte) error {
	bp := wsframe.Buffer()
	buf := *bp
	messages, total := 0, len(frames)
	for len(frames) > 0 {
		size, n := len(frames[0]), 1
		for n < len(frames) && size+1+len(frames[n]) <= s.cfg.BatchBytes {
			size += 1 + len(frames[n])
			n++
		}
		buf = wsframe.AppendHeader(buf, websocket.TextMessage, size)
		for i, f := range frames[:n] {
			if i > 0 {
				buf = append(buf, '\n')
			}
			buf = append(buf, f...)
		}
		messages++
		frames = frames[n:]
	}
	start := time.Now()
	// Every write gets the whole --write-timeout (the slow consumer's
	// promise, server.TestSlowConsumerDelaysNobody).
	_ = s.ws.NetConn().SetWriteDeadline(start.Add(s.cfg.WriteTimeout))
	_, err := s.ws.NetConn().Write(buf)
	end := time.Now()
	s.cfg.Coalescer.Record(start, end)
	s.lastWrite = end
	wsframe.Release(bp, buf)
	if err != nil {
		return err
	}
	s.deps.Metrics.WritesOut.Add(float64(messages))
	s.deps.Metrics.FramesOut.Add(float64(total))
	return nil
}

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
