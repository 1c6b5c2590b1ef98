package session

import "sync"

// outbox is a connection's bounded outgoing queue. The hub appends encoded
// frames from any goroutine without blocking; a writer goroutine takes
// everything queued at once and writes it as one batch.
//
// The writer runs only while there is something to write: the first frame
// queued on an idle connection starts it, and it exits when the queue is
// empty. An idle connection therefore costs no goroutine stack for writing,
// which is most of what a connection costs (docs/benchmarks.md).
//
// When the queue is full the connection is marked for closing instead of
// blocking the hub or dropping a frame silently: a client that misses
// messages must know it.
type outbox struct {
	mu     sync.Mutex
	frames [][]byte
	spare  [][]byte // the writer's last batch, reused to avoid allocation
	limit  int
	// writing is true while a writer goroutine owns the socket's write side.
	// Once the closing writer has run it stays true, so none starts again.
	writing bool
	// closing is set once a close is decided; later frames are discarded.
	closing     bool
	closeCode   int
	closeReason string
	// startWriter launches the writer goroutine; called without mu held.
	startWriter func()
}

func newOutbox(limit int, startWriter func()) *outbox {
	return &outbox{limit: limit, startWriter: startWriter}
}

// claimWriter marks the writer as running when none is and there is work;
// the caller must then call startWriter after unlocking. Callers hold mu.
func (q *outbox) claimWriter() bool {
	if q.writing || (len(q.frames) == 0 && !q.closing) {
		return false
	}
	q.writing = true
	return true
}

// push queues a frame. It reports true when the queue overflowed with this
// frame; the outbox is then closing with code overflowCode.
func (q *outbox) push(frame []byte, overflowCode int, overflowReason string) (overflowed bool) {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return false
	}
	if len(q.frames) >= q.limit {
		q.closing = true
		q.closeCode, q.closeReason = overflowCode, overflowReason
		clear(q.frames)
		q.frames = q.frames[:0]
		overflowed = true
	} else {
		q.frames = append(q.frames, frame)
	}
	start := q.claimWriter()
	q.mu.Unlock()
	if start {
		q.startWriter()
	}
	return overflowed
}

// close asks the writer to send a close frame after (flush) or instead of
// (!flush) what is queued. The first close decided wins.
func (q *outbox) close(code int, reason string, flush bool) {
	q.mu.Lock()
	if !q.closing {
		q.closing = true
		q.closeCode, q.closeReason = code, reason
		if !flush {
			clear(q.frames)
			q.frames = q.frames[:0]
		}
	}
	start := q.claimWriter()
	q.mu.Unlock()
	if start {
		q.startWriter()
	}
}

// take returns everything queued and the close decision. When there is
// nothing to write and no close, it releases the writer role (park=true) in
// the same critical section, so a frame pushed right after is guaranteed to
// start a new writer. The returned slice is valid until the next take.
func (q *outbox) take() (frames [][]byte, closing bool, code int, reason string, park bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.frames) == 0 && !q.closing {
		q.writing = false
		return nil, false, 0, "", true
	}
	frames = q.frames
	clear(q.spare) // drop references to frames already written
	q.frames = q.spare[:0]
	q.spare = frames
	return frames, q.closing, q.closeCode, q.closeReason, false
}

// isClosing reports whether a close has been decided.
func (q *outbox) isClosing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closing
}
