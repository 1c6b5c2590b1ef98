// Package offstack runs a connection's deep work (decoding a frame, routing
// it, storing a message down to the disk) off the goroutine that parks in
// the connection's read, on a few shared goroutines whose stacks have
// already grown to that depth.
//
// A connection's read loop spends its life parked in a socket read. If it
// also did the deep work, its stack would grow and stay grown on every idle
// connection, which is most of an idle connection's memory. Running each
// frame on a fresh goroutine kept the parked stack small, but every frame
// then grew a new stack again (runtime.copystack): 15% of a durable node's
// CPU at 10k msgs/s (docs/benchmarks.md). Here the frames go to pooled
// workers instead: a worker keeps its grown stack between frames, and exits
// after IdleTimeout without one, so the pool shrinks back after a burst
// and nothing outlives a quiet server for long.
package offstack

import (
	"sync"
	"time"
)

// IdleTimeout is how long a server's workers wait for another frame before
// they exit.
const IdleTimeout = 10 * time.Second

// Pool is a set of workers; a server has one for its connections. The zero
// value is not usable: NewPool (or a nil *Pool, which runs every f on a
// fresh goroutine).
type Pool struct {
	idleTimeout time.Duration
	// tasks hands a task to a worker that is waiting for one. Unbuffered:
	// a send succeeds only when a worker takes the task at that moment, so
	// a worker that timed out can never be handed one.
	tasks chan task
	// doneChans reuses the channels callers wait on (one send, one receive
	// per Run, so a channel is empty again when it is put back).
	doneChans sync.Pool
}

// task is one call of Run: f, and where its caller waits.
type task struct {
	f    func()
	done chan struct{}
}

// NewPool returns a pool whose workers exit after idleTimeout without a
// task.
func NewPool(idleTimeout time.Duration) *Pool {
	p := &Pool{idleTimeout: idleTimeout, tasks: make(chan task)}
	p.doneChans.New = func() any { return make(chan struct{}, 1) }
	return p
}

// Run runs f on a pooled worker and waits for it to return. Calls from
// different goroutines run concurrently; f must not call Run. A nil pool
// runs f on a fresh goroutine: connections built without a server's pool
// (unit tests, some inside synctest bubbles, which a shared pool's workers
// must not cross) keep the old behaviour.
func (p *Pool) Run(f func()) {
	if p == nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		<-done
		return
	}
	t := task{f: f, done: p.doneChans.Get().(chan struct{})}
	select {
	case p.tasks <- t:
	default:
		go p.work(t)
	}
	<-t.done
	p.doneChans.Put(t.done)
}

// work runs t, then the tasks handed to it, until it has waited the idle
// timeout for one.
func (p *Pool) work(t task) {
	idle := time.NewTimer(p.idleTimeout)
	defer idle.Stop()
	for {
		t.f()
		t.done <- struct{}{}
		idle.Reset(p.idleTimeout)
		select {
		case t = <-p.tasks:
		case <-idle.C:
			return
		}
	}
}
