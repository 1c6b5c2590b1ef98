// Package coalesce decides how long a busy connection's writer waits for
// more frames before it writes, so that one system call carries several
// messages when many reach the same subscriber close together.
//
// Why: fan-out is bound by write system calls, not by the room logic. On
// loopback a write costs 7–20 µs (the kernel's whole receive path runs
// inside it), and a room of 1,000 subscribers with many senders costs one
// write per subscriber per message unless messages share writes
// (docs/benchmarks.md). A fixed wait would add delay to every quiet
// connection and to a quiet node; this one adapts:
//
//   - a connection that has not been written for a while (a chat at human
//     pace) never waits: its writer writes at once;
//   - a busy connection waits only while the node's writers are busy: the
//     window is the node's busy share of writing over the last period,
//     scaled between 0 (at most LowBusy of the time spent writing) and Max
//     (HighBusy or more). An idle node therefore adds no latency, and a
//     saturated one waits up to Max, which is when batching pays most.
//   - every writer waiting in the same window wakes at the same moment
//     (one timer per window, not one per writer), so the writes of one
//     burst leave together and the time between is free for reading and
//     fanning out the next messages.
//
// The Coalescer is node-wide: the /ws sessions and the Socket.IO endpoint
// share one, so their writes count towards the same busy share.
package coalesce

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Period is how often the busy share is recomputed.
	Period = 50 * time.Millisecond
	// LowBusy is the busy share at and below which writers never wait.
	LowBusy = 0.10
	// HighBusy is the busy share from which writers wait the whole Max.
	HighBusy = 0.50
	// Hot is how recent a connection's previous write must be for it to
	// count as busy: a connection written less often is written at once.
	Hot = 20 * time.Millisecond
)

// Coalescer measures how busy the node's writers are and makes busy
// writers wait for the next shared flush. The zero value and a nil
// Coalescer never wait. It is safe for concurrent use.
type Coalescer struct {
	max time.Duration
	now func() time.Time

	// busy is the write time recorded in the current period, in
	// nanoseconds; periodStart is when the period began (Unix nanoseconds).
	busy        atomic.Int64
	periodStart atomic.Int64
	// window is the current wait in nanoseconds, derived from the last
	// full period's busy share.
	window atomic.Int64

	mu   sync.Mutex
	tick chan struct{} // closed when the current shared window ends
}

// New returns a Coalescer that makes busy writers wait at most max (0: a
// Coalescer that never waits).
func New(max time.Duration) *Coalescer {
	c := &Coalescer{max: max, now: time.Now}
	c.periodStart.Store(c.now().UnixNano())
	return c
}

// Record adds one write's duration, from start to end, to the busy share.
func (c *Coalescer) Record(start, end time.Time) {
	if c == nil || c.max <= 0 {
		return
	}
	c.busy.Add(int64(end.Sub(start)))
	c.roll(end.UnixNano())
}

// roll closes the current period when it has lasted Period, and derives the
// next window from its busy share. Only the caller whose swap wins rolls.
func (c *Coalescer) roll(now int64) {
	start := c.periodStart.Load()
	elapsed := now - start
	if elapsed < int64(Period) || !c.periodStart.CompareAndSwap(start, now) {
		return
	}
	share := float64(c.busy.Swap(0)) / float64(elapsed)
	c.window.Store(int64(windowFor(share, c.max)))
}

// windowFor maps a busy share to a wait: 0 up to LowBusy, max from
// HighBusy, linear between.
func windowFor(share float64, max time.Duration) time.Duration {
	switch {
	case share <= LowBusy:
		return 0
	case share >= HighBusy:
		return max
	}
	return time.Duration(math.Round(float64(max) * (share - LowBusy) / (HighBusy - LowBusy)))
}

// Window is how long a busy connection's writer waits now: 0 when the node
// has not been busy writing lately.
func (c *Coalescer) Window() time.Duration {
	if c == nil || c.max <= 0 {
		return 0
	}
	return c.windowAt(c.now().UnixNano())
}

// windowAt is Window at now (Unix nanoseconds).
func (c *Coalescer) windowAt(now int64) time.Duration {
	if now-c.periodStart.Load() >= 2*int64(Period) {
		// Nothing was written for a whole period: the node is idle, and the
		// last busy figure is stale.
		c.roll(now)
		return 0
	}
	return time.Duration(c.window.Load())
}

// Wait delays a writer whose connection was last written at lastWrite: not
// at all when the connection is quiet (its previous write is older than
// Hot) or the node is not busy, otherwise until the current shared window
// ends (at most Window). It reports how long it waited.
func (c *Coalescer) Wait(lastWrite time.Time) time.Duration {
	if c == nil || c.max <= 0 {
		return 0
	}
	now := c.now()
	if now.Sub(lastWrite) >= Hot {
		return 0
	}
	d := c.windowAt(now.UnixNano())
	if d <= 0 {
		return 0
	}
	<-c.flush(d)
	return c.now().Sub(now)
}

// flush returns the channel of the current shared window, starting one of
// length d if none is open.
func (c *Coalescer) flush(d time.Duration) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tick == nil {
		ch := make(chan struct{})
		c.tick = ch
		time.AfterFunc(d, func() {
			c.mu.Lock()
			c.tick = nil
			c.mu.Unlock()
			close(ch)
		})
	}
	return c.tick
}
