package owner

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/backoff"
)

// Repairing replicas. A replicate or sync that fails (timeout, lost
// connection, full queue) leaves its message pending, and nothing else would
// send it again: the cluster re-points replication only when the replica set
// changes. So the room itself retries: it marks the replica for repair and,
// after a backoff, sends it a full copy of the log. A snapshot covers
// whatever the replica missed, however many messages that is, and a replica
// that already held some of them loses nothing. The cluster's transport
// keeps requests to one node in order, so a later replicate never overtakes
// the snapshot it follows (ResyncReplica relies on the same).
//
// The retry timer belongs to the room: it is stopped with the room's other
// timers when the room is handed off, swept or the service closes.

// replicationFailed marks replica for repair after op failed to store seq.
// Callers hold r.mu.
func (r *room) replicationFailed(replica, op string, seq uint64, err error) {
	if seq <= r.acked[replica] {
		return // a later answer already showed the replica holds seq
	}
	level := slog.LevelWarn
	if _, again := r.repair[replica]; again {
		level = slog.LevelDebug // said once per outage, not once per retry
	}
	r.svc.log.Log(context.Background(), level, "replication failed; will retry", "room", r.name, "replica", replica, "op", op, "seq", seq, "err", err)
	if r.repair == nil {
		r.repair = make(map[string]uint64)
	}
	r.repair[replica] = max(r.repair[replica], seq)
	r.scheduleRetryLocked()
}

// repairedUpTo forgets replica's repair once it holds what it failed to
// store, and resets the backoff when no replica needs one any more. Callers
// hold r.mu.
func (r *room) repairedUpTo(replica string) {
	failed, ok := r.repair[replica]
	if !ok || r.acked[replica] < failed {
		return
	}
	delete(r.repair, replica)
	r.stopRetryIfRepaired()
}

// forgetRepairsExcept drops the repairs of replicas that left the set.
// Callers hold r.mu.
func (r *room) forgetRepairsExcept(replicas []string) {
	for rep := range r.repair {
		if !slices.Contains(replicas, rep) {
			delete(r.repair, rep)
		}
	}
	r.stopRetryIfRepaired()
}

// stopRetryIfRepaired stops the retry timer and resets the backoff once no
// replica needs a repair. Callers hold r.mu.
func (r *room) stopRetryIfRepaired() {
	if len(r.repair) == 0 {
		r.stopRetry()
		r.retryFailures = 0
	}
}

// scheduleRetryLocked arms the retry timer unless it is armed already, the
// room is gone or the service is closing. Each arming doubles the pause,
// from ReplicationRetry up to ReplicationRetryMax; repairedUpTo resets it.
// Callers hold r.mu.
func (r *room) scheduleRetryLocked() {
	if r.retryTimer != nil || r.dead || r.svc.closed.Load() {
		return
	}
	cfg := r.svc.cfg
	r.retryFailures++
	pause := backoff.Backoff{Base: cfg.ReplicationRetry, Max: cfg.ReplicationRetryMax, Jitter: backoff.None}
	var t *time.Timer
	t = time.AfterFunc(pause.Delay(r.retryFailures), func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		// t is read under the lock its assignment was made under.
		if r.retryTimer != t {
			return // stopped (or replaced) while this callback waited
		}
		r.retryTimer = nil
		r.retryLocked()
	})
	r.retryTimer = t
}

// retryLocked sends a full copy of the log to every replica still marked for
// repair. A failure of that sync marks it again, with a longer pause. Callers
// hold r.mu.
func (r *room) retryLocked() {
	if r.dead || r.svc.closed.Load() || r.state == stateWaiting {
		return // a waiting room resumes its repairs in becomeReady
	}
	if !r.svc.view.HasQuorum() {
		// Cut off from the majority, a repair could only land on a replica
		// that the other side may have moved on from; keep waiting (the
		// pause grows to its maximum) until the quorum is back.
		r.scheduleRetryLocked()
		return
	}
	for _, rep := range r.replicas {
		if failed, ok := r.repair[rep]; ok && r.acked[rep] < failed {
			r.syncLocked(rep)
		}
	}
}

func (r *room) stopRetry() {
	if r.retryTimer != nil {
		r.retryTimer.Stop()
		r.retryTimer = nil
	}
}
