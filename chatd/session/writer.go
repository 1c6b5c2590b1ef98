package session

import (
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// writeLoop is the only goroutine that writes data frames to the socket. It
// wakes when frames are queued, writes all of them as newline-separated
// batches (one WebSocket message per batch, up to BatchBytes), sends pings,
// and writes the close frame when the session is closing.
func (s *Session) writeLoop() {
	defer close(s.writerDone)
	ping := time.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-s.out.wake:
		case <-ping.C:
			if err := s.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(s.cfg.WriteTimeout)); err != nil {
				s.abort()
				return
			}
			continue
		}
		frames, closing, code, reason := s.out.take()
		if len(frames) > 0 {
			if err := s.writeBatches(frames); err != nil {
				s.abort()
				return
			}
		}
		if closing {
			s.writeClose(code, reason)
			return
		}
	}
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
	if code != websocket.CloseNormalClosure || reason != "" {
		s.deps.Metrics.Closes.WithLabelValues(strconv.Itoa(code)).Inc()
	}
	deadline := time.Now().Add(s.cfg.WriteTimeout)
	_ = s.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), deadline)
	_ = s.ws.SetReadDeadline(time.Now().Add(closeGrace))
}

// closeGrace is how long the server waits for the client's close reply.
const closeGrace = time.Second

// abort ends a connection whose socket failed: the read loop is unblocked at
// once and the session finishes.
func (s *Session) abort() {
	_ = s.ws.SetReadDeadline(time.Now())
}
