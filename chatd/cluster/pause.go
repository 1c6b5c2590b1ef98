package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/membership"
)

// Pause detection. A process that is frozen (SIGSTOP, a long GC or memory
// stall, a throttled container, a VM paused for migration) wakes up with a
// view of the cluster that is as old as the freeze: the others may have
// declared it dead and taken its rooms over meanwhile. Fencing (terms, see
// chatd/owner) already keeps such a node from committing anything its
// replicas do not accept in its current term; this detector adds the other
// half of the rule — a node that notices it was paused stops acknowledging
// and claims its rooms again before it serves them, and re-subscribes the
// rooms its clients are in (the owners may have dropped its subscriptions
// when they declared it dead).
//
// A pause shows as a tick that comes much later than it was due (the
// monotonic clock kept running while the process did not), and as
// memberlist refuting a suspicion of this node (its incarnation grew
// without this node changing its own metadata).

// pauseTick is how often the detector's clock ticks.
const pauseTick = 100 * time.Millisecond

// pauseDetector tracks the last tick and whether the node has verified its
// rooms since it last noticed a pause.
type pauseDetector struct {
	mu sync.Mutex
	// last is when the detector last ran (monotonic).
	last time.Time
	// threshold is how late a tick must be to count as a pause.
	threshold time.Duration
	// pauses counts pauses noticed (also exported as a metric).
	pauses int
}

// stale reports whether the detector has not run for longer than the
// threshold: the process may have been paused and not noticed it yet.
func (p *pauseDetector) stale(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.last.IsZero() && p.threshold > 0 && now.Sub(p.last) > p.threshold
}

// verified implements owner.Config.Verified: false while the node's rooms
// are being put back into a claim, and from the moment a pause may have
// happened until the detector has noticed it (and claimed them again).
func (n *Node) verified() bool {
	return !n.suspending.Load() && !n.pause.stale(time.Now())
}

// PauseThreshold is the lateness of a tick that counts as a pause: a third
// of the time the others take to declare a silent node dead, so a node
// notices well before its rooms can have been taken over.
func PauseThreshold(failureDetection time.Duration) time.Duration {
	return max(failureDetection/3, 2*pauseTick)
}

// WatchPauses runs the pause detector until ctx ends: it ticks, and when a
// tick comes more than threshold late, or memberlist refuted a suspicion of
// this node, it suspends the rooms owned here (they are claimed again) and
// re-subscribes every local room. m may be nil (a node without gossip only
// checks its clock).
func (n *Node) WatchPauses(ctx context.Context, m *membership.Membership, threshold time.Duration) {
	n.pause.mu.Lock()
	n.pause.threshold = threshold
	n.pause.last = time.Now()
	n.pause.mu.Unlock()
	var refutes uint64
	if m != nil {
		refutes = m.Refutes()
	}
	t := time.NewTicker(pauseTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := time.Now()
			n.pause.mu.Lock()
			late := now.Sub(n.pause.last)
			n.pause.mu.Unlock()
			why := ""
			if late > threshold {
				why = "paused"
			}
			if m != nil {
				if r := m.Refutes(); r != refutes {
					refutes = r
					if why == "" {
						why = "suspected by the cluster"
					}
				}
			}
			if why != "" {
				// Suspended before the tick is recorded, so nothing
				// commits between the two (stale until the record).
				n.suspending.Store(true)
			}
			n.pause.mu.Lock()
			n.pause.last = now
			n.pause.mu.Unlock()
			if why != "" {
				n.afterPause(why, late)
			}
		}
	}
}

// afterPause is what a node does when it notices it was paused or
// suspected: claim its rooms again, commit what its replicas acknowledged
// meanwhile, and re-subscribe the rooms its clients are in. The caller
// set n.suspending.
func (n *Node) afterPause(why string, late time.Duration) {
	n.pause.mu.Lock()
	n.pause.pauses++
	n.pause.mu.Unlock()
	if n.metrics != nil {
		n.metrics.Pauses.Inc()
	}
	n.log.Warn("this node was paused or suspected; claiming its rooms again and re-subscribing its local rooms", "why", why, "tick_late_by", late.Round(time.Millisecond).String())
	n.claimAgain(why)
	n.endSuspension()
	n.hub.ResubscribeAll()
}
