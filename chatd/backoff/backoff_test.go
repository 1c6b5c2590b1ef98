package backoff

import (
	"testing"
	"time"
)

// top and bottom are Rand functions that draw the largest and the smallest
// value, so a delay's whole range is seen without chance.
func top(n int64) int64  { return n - 1 }
func bottom(int64) int64 { return 0 }
func seq(b Backoff, n int) []time.Duration {
	var out []time.Duration
	for range n {
		out = append(out, b.Next())
	}
	return out
}

func TestCeilingDoublesToMax(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second, Jitter: None}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	got := seq(b, len(want))
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", got, want)
		}
	}
}

func TestJitterRanges(t *testing.T) {
	const c = 1000 * time.Millisecond
	cases := []struct {
		jitter  Jitter
		lo, hi  time.Duration
		comment string
	}{
		{Full, 0, c - 1, "[0, c)"},
		{Equal, c / 2, c, "[c/2, c]"},
		{Spread, c - c/10, c + c/10, "c ± 10%"},
		{None, c, c, "c"},
	}
	for _, tc := range cases {
		b := Backoff{Base: c, Max: c, Jitter: tc.jitter, Rand: bottom}
		if d := b.Delay(1); d != tc.lo {
			t.Errorf("jitter %d (%s): smallest delay %v, want %v", tc.jitter, tc.comment, d, tc.lo)
		}
		b.Rand = top
		if d := b.Delay(1); d != tc.hi {
			t.Errorf("jitter %d (%s): largest delay %v, want %v", tc.jitter, tc.comment, d, tc.hi)
		}
	}
}

func TestAttemptsAndReset(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond, Rand: top}
	if c := b.Ceiling(); c != 10*time.Millisecond {
		t.Fatalf("first ceiling %v", c)
	}
	for range 3 {
		b.Next()
	}
	if b.Attempt() != 3 || b.Ceiling() != 80*time.Millisecond {
		t.Fatalf("after 3: attempt %d, ceiling %v; want 3 and 80ms", b.Attempt(), b.Ceiling())
	}
	b.Reset()
	if b.Attempt() != 0 || b.Next() != 10*time.Millisecond-1 {
		t.Fatalf("after reset: attempt %d", b.Attempt())
	}
}

// A zero Base waits nothing rather than dividing by zero or looping.
func TestZero(t *testing.T) {
	for _, j := range []Jitter{Full, Equal, Spread, None} {
		b := Backoff{Jitter: j}
		if d := b.Next(); d != 0 {
			t.Fatalf("jitter %d: zero backoff waits %v", j, d)
		}
	}
}

// Without a Rand hook the delays still fall in range (math/rand/v2).
func TestDefaultRand(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Second, Jitter: Equal}
	for range 1000 {
		if d := b.Delay(1); d < time.Second/2 || d > time.Second {
			t.Fatalf("equal jitter drew %v", d)
		}
	}
}
