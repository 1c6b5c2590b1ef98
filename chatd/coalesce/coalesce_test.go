package coalesce

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestWindowFor: no wait up to LowBusy, the whole Max from HighBusy, linear
// between.
func TestWindowFor(t *testing.T) {
	const max = time.Millisecond
	for _, tc := range []struct {
		share float64
		want  time.Duration
	}{
		{0, 0},
		{LowBusy, 0},
		{(LowBusy + HighBusy) / 2, max / 2},
		{HighBusy, max},
		{1, max},
		{3, max}, // several writers overlapping on several cores
	} {
		if got := windowFor(tc.share, max); got != tc.want {
			t.Errorf("windowFor(%v) = %v, want %v", tc.share, got, tc.want)
		}
	}
}

// write records a write of d ending now.
func write(c *Coalescer, d time.Duration) {
	start := time.Now()
	time.Sleep(d)
	c.Record(start, time.Now())
}

// TestWaitFollowsTheNode: on an idle node a busy connection never waits;
// once the node spends a period writing, a busy connection waits the whole
// window and a quiet one does not; a node that stops writing for two
// periods stops making anyone wait.
func TestWaitFollowsTheNode(t *testing.T) {
	const max = time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		c := New(max)
		if d := c.Wait(time.Now()); d != 0 {
			t.Fatalf("idle node: waited %v, want 0", d)
		}
		write(c, Period) // a whole period writing: busy share 1
		if w := c.Window(); w != max {
			t.Fatalf("window after a busy period = %v, want %v", w, max)
		}
		if d := c.Wait(time.Now().Add(-Hot / 2)); d != max {
			t.Fatalf("busy connection on a busy node waited %v, want %v", d, max)
		}
		if d := c.Wait(time.Now().Add(-Hot)); d != 0 {
			t.Fatalf("quiet connection on a busy node waited %v, want 0", d)
		}
		time.Sleep(2 * Period)
		if w := c.Window(); w != 0 {
			t.Fatalf("window after two periods without a write = %v, want 0", w)
		}
		// A period with 30% of it writing: half the window.
		c = New(max)
		time.Sleep(Period * 7 / 10)
		write(c, Period*3/10)
		if w := c.Window(); w != max/2 {
			t.Fatalf("window after a 30%% busy period = %v, want %v", w, max/2)
		}
	})
}

// TestWaitersShareOneFlush: writers that start waiting within one window
// all wake when it ends, so a late one waits less than the window.
func TestWaitersShareOneFlush(t *testing.T) {
	const max = time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		c := New(max)
		write(c, Period)
		var wg sync.WaitGroup
		woke := make([]time.Time, 3)
		for i := range woke {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * max / 4)
				c.Wait(time.Now())
				woke[i] = time.Now()
			}()
		}
		wg.Wait()
		for i := range woke {
			if !woke[i].Equal(woke[0]) {
				t.Fatalf("waiter %d woke at %v, waiter 0 at %v: want one shared flush", i, woke[i], woke[0])
			}
		}
	})
}

// TestNilAndZeroNeverWait: a nil Coalescer and one with Max 0 record
// nothing and never wait.
func TestNilAndZeroNeverWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, c := range []*Coalescer{nil, New(0)} {
			write(c, Period)
			if d := c.Wait(time.Now()); d != 0 || c.Window() != 0 {
				t.Fatalf("%v: waited %v, window %v; want 0", c, d, c.Window())
			}
		}
	})
}
