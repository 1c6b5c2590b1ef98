// Package backoff is the one exponential backoff of chatd and its clients:
// the transport's redials, the membership's initial join, the link check,
// an owner's replica repairs, and the reconnects of chatctl, chatbench and
// the delivery checker all space their retries with it.
//
// A delay's ceiling doubles from Base with every consecutive failure, up to
// Max; Jitter says how the delay is drawn below that ceiling. Why a package
// of our own rather than a library: docs/architecture.md, "Dependencies".
package backoff

import (
	"math/rand/v2"
	"time"
)

// Jitter is how a delay is drawn from its ceiling c.
type Jitter int

const (
	// Full draws uniformly from [0, c): the clients' reconnects
	// (docs/protocol.md §8), where spreading a crowd matters most.
	Full Jitter = iota
	// Equal draws uniformly from [c/2, c]: never much shorter than the
	// ceiling, yet peers that lost the same node do not redial in lockstep.
	Equal
	// Spread draws uniformly from c ± 10%: nodes started together do not
	// retry in lockstep, and the delay stays close to the one configured.
	Spread
	// None waits exactly c: a timer per room, where lockstep is harmless.
	None
)

// Backoff hands out the delays of one retry loop. Its fields are the
// policy; the zero value of Jitter is Full. A Backoff is not safe for
// concurrent use.
type Backoff struct {
	// Base is the ceiling after the first failure.
	Base time.Duration
	// Max caps every ceiling.
	Max time.Duration
	// Jitter draws a delay from its ceiling.
	Jitter Jitter
	// Rand returns a uniformly random value in [0, n); nil uses
	// math/rand/v2. Tests set it to make delays deterministic.
	Rand func(n int64) int64

	attempt int
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	b.attempt++
	return b.Delay(b.attempt)
}

// Ceiling returns the upper bound of the next delay without counting an
// attempt.
func (b *Backoff) Ceiling() time.Duration { return b.ceiling(b.attempt + 1) }

// Attempt returns the number of delays handed out since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset starts over from Base.
func (b *Backoff) Reset() { b.attempt = 0 }

// Delay returns a delay after failures consecutive failures (1 for the
// first) without counting anything: for callers that keep the count
// themselves.
func (b *Backoff) Delay(failures int) time.Duration {
	c := b.ceiling(failures)
	if c <= 0 {
		return 0
	}
	switch b.Jitter {
	case Equal:
		half := c / 2
		return c - half + time.Duration(b.rand(int64(half)+1))
	case Spread:
		return c - c/10 + time.Duration(b.rand(int64(c/5)+1))
	case None:
		return c
	default:
		return time.Duration(b.rand(int64(c)))
	}
}

// ceiling is Base doubled for each failure after the first, capped at Max.
func (b *Backoff) ceiling(failures int) time.Duration {
	c := b.Base
	for i := 1; i < failures && c < b.Max; i++ {
		c *= 2
	}
	if b.Max > 0 {
		c = min(c, b.Max)
	}
	return c
}

func (b *Backoff) rand(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if b.Rand != nil {
		return b.Rand(n)
	}
	return rand.Int64N(n)
}
