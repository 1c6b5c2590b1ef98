package session

import "sync"

// outbox is a connection's bounded outgoing queue. The hub appends encoded
// frames from any goroutine without blocking; the writer goroutine takes
// everything queued at once and writes it as one batch. When the queue is
// full the connection is marked for closing instead of blocking the hub or
// dropping a frame silently: a client that misses messages must know it.
type outbox struct {
	mu     sync.Mutex
	frames [][]byte
	spare  [][]byte // the writer's last batch, reused to avoid allocation
	limit  int
	// closing is set once a close is decided; later frames are discarded.
	closing     bool
	closeCode   int
	closeReason string
	// discard drops what is queued when closing (overflow), instead of
	// flushing it first (graceful shutdown).
	discard bool
	wake    chan struct{}
}

func newOutbox(limit int) *outbox {
	return &outbox{limit: limit, wake: make(chan struct{}, 1)}
}

func (q *outbox) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// push queues a frame. It reports false when the queue overflowed with this
// frame; the outbox is then closing with code overflowCode.
func (q *outbox) push(frame []byte, overflowCode int, overflowReason string) (overflowed bool) {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return false
	}
	if len(q.frames) >= q.limit {
		q.closing, q.discard = true, true
		q.closeCode, q.closeReason = overflowCode, overflowReason
		q.frames = nil
		q.mu.Unlock()
		q.signal()
		return true
	}
	q.frames = append(q.frames, frame)
	first := len(q.frames) == 1
	q.mu.Unlock()
	if first {
		// Only the first frame of a batch needs to wake the writer; the rest
		// ride along, which keeps a busy room from spinning the channel.
		q.signal()
	}
	return false
}

// close asks the writer to send a close frame after (flush) or instead of
// (!flush) what is queued. The first close decided wins.
func (q *outbox) close(code int, reason string, flush bool) {
	q.mu.Lock()
	if !q.closing {
		q.closing, q.discard = true, !flush
		q.closeCode, q.closeReason = code, reason
		if !flush {
			q.frames = nil
		}
	}
	q.mu.Unlock()
	q.signal()
}

// take returns everything queued, and the close decision when the queue is
// closing. The returned slice is valid until the next take.
func (q *outbox) take() (frames [][]byte, closing bool, code int, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	frames = q.frames
	clear(q.spare) // drop references to frames already written
	q.frames = q.spare[:0]
	q.spare = frames
	return frames, q.closing, q.closeCode, q.closeReason
}

// isClosing reports whether a close has been decided.
func (q *outbox) isClosing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closing
}
