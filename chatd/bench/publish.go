package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// control is what the publishers should do: the total publish rate (messages
// per second, over all publishers of a scheduler) and the step to stamp.
// keepPace: only the stamp changed, the schedule goes on (a new rate
// starts counting the messages due afresh).
type control struct {
	rate     float64
	step     int
	keepPace bool
}

// scheduler drives a set of publishing connections from one goroutine: at
// every tick it sends, back to back and round robin over its connections,
// the messages due since the start of the current control. A stall is not
// made up for with a burst larger than a few ticks' worth; what could not
// be sent on time is counted as skipped (the step then shows a publish rate
// below its target).
type scheduler struct {
	pubs     []*conn
	tick     time.Duration
	textSize int
	ctrl     atomic.Pointer[control]
	// window, when set, returns how many more messages may be in flight
	// (sent but not yet received by every subscriber).
	window func() int64
	// connWindow, when positive, is the most sends one connection may
	// have written and not yet seen answered: a connection at its window
	// is passed over, and when all are, the tick's remaining messages are
	// skipped (the step then publishes below its target).
	connWindow int64

	sent     atomic.Uint64
	skipped  atomic.Uint64
	windowed atomic.Uint64 // ticks on which the window held sends back
	sendErrs atomic.Uint64
}

// maxBurstTicks bounds the catch-up after a stall.
const maxBurstTicks = 4

func (s *scheduler) set(rate float64, step int) { s.ctrl.Store(&control{rate: rate, step: step}) }

// start runs the scheduler until ctx ends.
func (s *scheduler) start(ctx context.Context, run *runState, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.loop(ctx, run)
	}()
}

func (s *scheduler) loop(ctx context.Context, run *runState) {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	var (
		cur      *control
		base     time.Time
		accepted int64 // sent or skipped since base
		next     int
	)
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c := s.ctrl.Load()
			if c != cur {
				if cur == nil || c == nil || !c.keepPace {
					base, accepted = now, 0
				}
				cur = c
			}
			if cur == nil || cur.rate <= 0 || len(s.pubs) == 0 {
				continue
			}
			due := int64(now.Sub(base).Seconds()*cur.rate) - accepted
			if due <= 0 {
				continue
			}
			if limit := int64(cur.rate*s.tick.Seconds()*maxBurstTicks) + 1; due > limit {
				s.skipped.Add(uint64(due - limit))
				accepted += due - limit
				due = limit
			}
			if s.window != nil {
				if w := s.window(); w < due {
					s.windowed.Add(1)
					w = max(w, 0)
					s.skipped.Add(uint64(due - w))
					accepted += due - w
					due = w
				}
			}
			for i := int64(0); i < due; i++ {
				p := s.pick(&next)
				if p == nil {
					rest := due - i
					s.windowed.Add(1)
					s.skipped.Add(uint64(rest))
					accepted += rest
					break
				}
				accepted++
				if err := p.publish(cur.step, s.textSize); err != nil {
					s.sendErrs.Add(1)
					continue
				}
				s.sent.Add(1)
				run.published.Add(1)
			}
		}
	}
}

// pick returns the next publisher in round robin order that is under its
// window, or nil when none is.
func (s *scheduler) pick(next *int) *conn {
	for range s.pubs {
		p := s.pubs[*next]
		*next = (*next + 1) % len(s.pubs)
		if s.connWindow <= 0 || p.inflight() < s.connWindow {
			return p
		}
	}
	return nil
}

// schedulers splits pubs over n schedulers sharing a total rate.
type schedulers []*scheduler

func newSchedulers(pubs []*conn, n int, tick time.Duration, textSize int) schedulers {
	n = max(min(n, len(pubs)), 1)
	out := make(schedulers, n)
	for i := range out {
		out[i] = &scheduler{tick: tick, textSize: textSize}
	}
	for i, p := range pubs {
		out[i%n].pubs = append(out[i%n].pubs, p)
	}
	return out
}

// set gives each scheduler its share of the total rate.
func (ss schedulers) set(total float64, step int, pubs int) {
	for _, s := range ss {
		if pubs == 0 {
			s.set(0, step)
			continue
		}
		s.set(total*float64(len(s.pubs))/float64(pubs), step)
	}
}

// restamp changes the step stamped on the messages from now on, keeping
// the rate and the schedule: the second half of a step is stamped apart.
func (ss schedulers) restamp(step int) {
	for _, s := range ss {
		rate := 0.0
		if c := s.ctrl.Load(); c != nil {
			rate = c.rate
		}
		s.ctrl.Store(&control{rate: rate, step: step, keepPace: true})
	}
}

func (ss schedulers) start(ctx context.Context, run *runState, wg *sync.WaitGroup) {
	for _, s := range ss {
		s.start(ctx, run, wg)
	}
}
