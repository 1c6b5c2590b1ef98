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

// IdleTimeout is how long a worker of the default pool waits for another
// frame before it exits.
const IdleTimeout = 10 * time.Second

// Pool is a set of workers. The zero value is not usable: NewPool.
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

// defaultPool serves Run.
var defaultPool = NewPool(IdleTimeout)

// Run runs f on a worker of the default pool and waits for it to return.
func Run(f func()) { defaultPool.Run(f) }

// Run runs f on a pooled worker and waits for it to return. Calls from
// different goroutines run concurrently; f must not call Run.
func (p *Pool) Run(f func()) {
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
