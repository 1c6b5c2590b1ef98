package session

import "sync"

// Outbox is a connection's bounded outgoing queue. The hub appends items
// (encoded frames) from any goroutine without blocking; a writer takes
// everything queued at once and writes it as one batch. Sessions queue
// frames ([]byte); the Socket.IO endpoint (chatd/socketio) queues frames
// tagged with their namespace, hence the type parameter.
//
// The writer runs only while there is something to write: the first item
// queued on an idle connection starts it, and it exits when the queue is
// empty. An idle connection therefore costs no goroutine stack for writing,
// which is most of what a connection costs (docs/benchmarks.md).
//
// When the queue is full the connection is marked for closing instead of
// blocking the hub or dropping a frame silently: a client that misses
// messages must know it.
type Outbox[T any] struct {
	mu    sync.Mutex
	items []T
	spare []T // the writer's last batch, reused to avoid allocation
	limit int
	// writing is true while a writer owns the connection's write side.
	// Once the closing writer has run it stays true, so none starts again.
	writing bool
	// closing is set once a close is decided; later items are discarded.
	closing     bool
	closeCode   int
	closeReason string
	// startWriter launches the writer; called without mu held.
	startWriter func()
}

// NewOutbox returns an empty outbox holding at most limit items; startWriter
// is called (without locks held) whenever a writer must run.
func NewOutbox[T any](limit int, startWriter func()) *Outbox[T] {
	return &Outbox[T]{limit: limit, startWriter: startWriter}
}

// claimWriter marks the writer as running when none is and there is work;
// the caller must then call startWriter after unlocking. Callers hold mu.
func (q *Outbox[T]) claimWriter() bool {
	if q.writing || (len(q.items) == 0 && !q.closing) {
		return false
	}
	q.writing = true
	return true
}

// Push queues an item. It reports true when the queue overflowed with this
// item; the outbox is then closing with code overflowCode.
func (q *Outbox[T]) Push(item T, overflowCode int, overflowReason string) (overflowed bool) {
	q.mu.Lock()
	if q.closing {
		q.mu.Unlock()
		return false
	}
	if len(q.items) >= q.limit {
		q.closing = true
		q.closeCode, q.closeReason = overflowCode, overflowReason
		clear(q.items)
		q.items = q.items[:0]
		overflowed = true
	} else {
		q.items = append(q.items, item)
	}
	start := q.claimWriter()
	q.mu.Unlock()
	if start {
		q.startWriter()
	}
	return overflowed
}

// Close asks the writer to send a close after (flush) or instead of
// (!flush) what is queued. The first close decided wins.
func (q *Outbox[T]) Close(code int, reason string, flush bool) {
	q.mu.Lock()
	if !q.closing {
		q.closing = true
		q.closeCode, q.closeReason = code, reason
		if !flush {
			clear(q.items)
			q.items = q.items[:0]
		}
	}
	start := q.claimWriter()
	q.mu.Unlock()
	if start {
		q.startWriter()
	}
}

// Take returns everything queued and the close decision. When there is
// nothing to write and no close, it releases the writer role (park=true) in
// the same critical section, so an item pushed right after is guaranteed to
// start a new writer. The returned slice is valid until the next Take.
func (q *Outbox[T]) Take() (items []T, closing bool, code int, reason string, park bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 && !q.closing {
		q.writing = false
		return nil, false, 0, "", true
	}
	items = q.items
	clear(q.spare) // drop references to items already written
	q.items = q.spare[:0]
	q.spare = items
	return items, q.closing, q.closeCode, q.closeReason, false
}

// Release gives up the writer role of a writer that stops without parking
// (one that serves a single HTTP response, say). It reports whether work is
// waiting: then the role is claimed again and the caller must start a
// writer. Once a close is decided the role is kept, as after the closing
// writer.
func (q *Outbox[T]) Release() (restart bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return false
	}
	q.writing = false
	return q.claimWriter()
}

// IsClosing reports whether a close has been decided.
func (q *Outbox[T]) IsClosing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closing
}

// CloseDecision returns the close decided, if any.
func (q *Outbox[T]) CloseDecision() (closing bool, code int, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closing, q.closeCode, q.closeReason
}
