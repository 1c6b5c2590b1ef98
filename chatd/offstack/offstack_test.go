package offstack

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// Run waits for f, with a pool and without one (nil: a fresh goroutine).
func TestRunWaitsForF(t *testing.T) {
	for _, p := range []*Pool{NewPool(IdleTimeout), nil} {
		var ran atomic.Bool
		p.Run(func() {
			time.Sleep(time.Millisecond) // a slow f: Run must still wait
			ran.Store(true)
		})
		if !ran.Load() {
			t.Fatalf("pool %v: Run returned before f did", p)
		}
	}
}

// Calls from many goroutines at once all run, each exactly once, and a
// worker is reused by later calls instead of a new goroutine per call.
func TestConcurrentCallsAndReuse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPool(IdleTimeout)
		var n atomic.Int64
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				for range 10 {
					p.Run(func() { n.Add(1) })
				}
			})
		}
		wg.Wait()
		if got := n.Load(); got != 1000 {
			t.Fatalf("%d runs, want 1000", got)
		}
		// Sequential calls reuse one waiting worker: no goroutine is
		// started for them.
		synctest.Wait()
		started := 0
		for range 50 {
			select {
			case p.tasks <- task{f: func() {}, done: make(chan struct{}, 1)}:
			default:
				started++
			}
		}
		if started == 50 {
			t.Fatal("no worker was waiting for a task after the burst")
		}
		// Idle workers exit after IdleTimeout: the bubble ends only when
		// every goroutine it started has.
		time.Sleep(IdleTimeout + time.Second)
		synctest.Wait()
		select {
		case p.tasks <- task{f: func() {}, done: make(chan struct{}, 1)}:
			t.Fatal("a worker still waits after IdleTimeout")
		default:
		}
	})
}

// BenchmarkRun: a pooled Run against a fresh goroutine per call (nil).
func BenchmarkRun(b *testing.B) {
	f := func() {}
	for _, bc := range []struct {
		name string
		p    *Pool
	}{{"pool", NewPool(IdleTimeout)}, {"fresh goroutine", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				bc.p.Run(f)
			}
		})
	}
}
