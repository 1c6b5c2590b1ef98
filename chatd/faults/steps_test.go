//go:build faults

package faults

import (
	"fmt"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// The faults, as steps on a running scenario. Each one injects its fault,
// waits for the cluster to deal with it (events read from the admin API
// and the checker's acks, never a fixed pause), brings the cluster back to
// full size, and returns what it did, for the table's notes.

// killRestart SIGKILLs victim, waits until the others declare it dead and
// its rooms take messages again, then restarts it on its ports.
func (r *run) killRestart(victim *chatdtest.ProcessNode) string {
	r.t.Helper()
	held := r.heldBy(victim.Name, r.c.LiveNames())
	owned := r.ownedBy(victim)
	r.k.Fault("SIGKILL "+victim.Name, held)
	r.t.Logf("SIGKILL %s (owner of %d traffic rooms, holding %d)", victim.Name, len(owned), len(held))
	r.c.Kill(victim)
	r.staleViews(victim.Name)
	r.waitDropped(victim.Name)
	r.progress("after SIGKILL of "+victim.Name, held)
	r.restart(victim)
	return fmt.Sprintf("SIGKILL of %s (owner of %d of %d rooms, holding a copy of %d), restarted once declared dead", victim.Name, len(owned), len(r.rooms), len(held))
}

// restart starts stopped nodes again and waits until they are back in
// every view and the rooms take messages.
func (r *run) restart(victims ...*chatdtest.ProcessNode) {
	r.t.Helper()
	names := r.c.LiveNames()
	for _, v := range victims {
		names = append(names, v.Name)
	}
	var what []string
	for _, v := range victims {
		r.k.Fault("restart of "+v.Name, r.heldBy(v.Name, names))
		r.c.Restart(v)
		what = append(what, v.Name)
	}
	r.converge(fmt.Sprintf("restart of %v", what))
	r.progress(fmt.Sprintf("after the restart of %v", what), nil)
}

// drainRestart SIGTERMs victim (it hands its rooms off and closes its
// clients with 1012), then restarts it.
func (r *run) drainRestart(victim *chatdtest.ProcessNode) string {
	r.t.Helper()
	owned := r.ownedBy(victim)
	r.k.Fault("SIGTERM "+victim.Name, owned)
	r.t.Logf("SIGTERM %s (owner of %d traffic rooms)", victim.Name, len(owned))
	start := time.Now()
	r.c.Terminate(victim)
	r.t.Logf("%s drained and exited after %.1fs", victim.Name, time.Since(start).Seconds())
	r.progress("after the drain of "+victim.Name, owned)
	r.restart(victim)
	return fmt.Sprintf("SIGTERM of %s (owner of %d of %d rooms), restarted once it exited", victim.Name, len(owned), len(r.rooms))
}

// freeze SIGSTOPs victim while its clients stay connected to it, and
// SIGCONTs it after d (short: d is under the suspicion timeout, so it is
// never declared dead), or, when long, once every other node has declared
// it dead and the rooms it owned took messages from their new owners. After
// a long freeze the traffic is watched for a silence bound, long enough
// for a subscriber left silent to show.
func (r *run) freeze(victim *chatdtest.ProcessNode, long bool, d time.Duration) string {
	r.t.Helper()
	owned := r.ownedBy(victim)
	kind := "short"
	if long {
		kind = "long"
	}
	r.t.Logf("SIGSTOP %s (owner of %d traffic rooms, clients attached), %s freeze", victim.Name, len(owned), kind)
	r.k.Impair(victim.URL)
	r.k.Fault("SIGSTOP "+victim.Name, owned)
	start := time.Now()
	r.c.Freeze(victim)
	if long {
		r.staleViews(victim.Name)
		r.waitDropped(victim.Name)
		r.progress("rooms of the frozen "+victim.Name+" taken over", owned)
	} else {
		t := time.NewTimer(d) // the freeze's length is the fault itself
		<-t.C
	}
	frozen := time.Since(start)
	r.c.Thaw(victim)
	r.k.Restore(victim.URL)
	r.t.Logf("SIGCONT %s after %.1fs", victim.Name, frozen.Seconds())
	r.converge("thaw of " + victim.Name)
	if long {
		r.observe(r.k.Config().SilenceBound())
	}
	r.progress("after the thaw of "+victim.Name, nil)
	how := fmt.Sprintf("shorter than the suspicion timeout (%v): never declared dead", r.timing.SuspicionMin)
	if long {
		how = "until every other node had declared it dead and its rooms took messages from their new owners"
	}
	return fmt.Sprintf("SIGSTOP of %s (owner of %d of %d rooms, a publisher and a subscriber attached) for %.1fs, %s", victim.Name, len(owned), len(r.rooms), frozen.Seconds(), how)
}

// pairHolding picks, among the live nodes, the two that together hold a
// copy of the most traffic rooms (ties broken by the seed), and the rooms
// both hold.
func (r *run) pairHolding() (a, b string, both []string) {
	names := r.c.LiveNames()
	r.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for i, x := range names {
		for _, y := range names[i+1:] {
			var rooms []string
			for _, room := range r.rooms {
				if cp := rendezvous.Owners(room, names, r.s.factor); slices.Contains(cp, x) && slices.Contains(cp, y) {
					rooms = append(rooms, room)
				}
			}
			if len(rooms) > len(both) || a == "" {
				a, b, both = x, y, rooms
			}
		}
	}
	return a, b, both
}

// twoKills SIGKILLs two nodes that share copies of rooms: inside the
// failure-detection window (the second kill before the first can have been
// declared dead), or outside it (after the others declared the first dead
// and every room is back to its replication factor). Inside the window,
// rooms whose every copy was on the two are erased (a new epoch), which
// the protocol allows; nothing else may be lost. Both are restarted.
func (r *run) twoKills(inside bool) string {
	r.t.Helper()
	a, b, both := r.pairHolding()
	names := r.c.LiveNames()
	// Inside the window, a room whose every copy is on the two is erased;
	// outside it, its copies were made again before the second kill, and
	// nothing may be lost.
	var erasable []string
	if inside && r.s.factor <= 2 {
		erasable = both
		for _, room := range erasable {
			r.k.AllowRestart(room, fmt.Sprintf("every copy was on %s and %s", a, b))
		}
	}
	na, nb := r.c.ByName(a), r.c.ByName(b)
	r.k.Fault("SIGKILL "+a, r.heldBy(a, names))
	r.t.Logf("SIGKILL %s; %s and %s both hold %d rooms (%d of them only there)", a, a, b, len(both), len(erasable))
	r.c.Kill(na)
	r.staleViews(a)
	var gap time.Duration
	start := time.Now()
	if inside {
		// Strictly inside the window: no node can be declared dead before
		// a probe of it failed and its suspicion ran out.
		window := r.timing.ProbeTimeout + r.timing.SuspicionMin
		t := time.NewTimer(time.Duration(r.rng.Int64N(int64(window))))
		<-t.C
	} else {
		r.waitDropped(a)
		r.waitCopies()
	}
	gap = time.Since(start)
	r.k.Fault("SIGKILL "+b, r.heldBy(b, r.c.LiveNames()))
	r.t.Logf("SIGKILL %s, %.1fs after %s", b, gap.Seconds(), a)
	r.c.Kill(nb)
	r.staleViews(b)
	r.waitDropped(a, b)
	r.progress("after the two kills", nil)
	r.restart(na, nb)
	when := fmt.Sprintf("before %s could have been declared dead (under the probe timeout plus the suspicion timeout, %v)", a, r.timing.ProbeTimeout+r.timing.SuspicionMin)
	if !inside {
		when = fmt.Sprintf("once every node had declared %s dead and every room was back to %d copies", a, r.s.factor)
	}
	return fmt.Sprintf("SIGKILL of %s, then of %s %.1fs later, %s; they shared %d rooms, %d with no other copy; both restarted",
		a, b, gap.Seconds(), when, len(both), len(erasable))
}

// addNode starts one more node and waits until the rooms it now owns take
// messages there.
func (r *run) addNode() string {
	r.t.Helper()
	next := fmt.Sprint("proc-", len(r.c.All()))
	names := append(r.c.LiveNames(), next)
	var moving []string
	for _, room := range r.rooms {
		if rendezvous.Owner(room, names) == next {
			moving = append(moving, room)
		}
	}
	r.k.Fault("add "+next, moving)
	r.t.Logf("adding %s, the next owner of %d traffic rooms", next, len(moving))
	added := r.c.AddNode()
	r.progress("after adding "+added.Name, moving)
	r.progress("after adding "+added.Name, nil)
	return fmt.Sprintf("%s added; %d of %d rooms move to it", added.Name, len(moving), len(r.rooms))
}

// rollingRestart drains and restarts every node in turn, highest ordinal
// first, as a StatefulSet rolls.
func (r *run) rollingRestart() string {
	r.t.Helper()
	names := r.c.LiveNames()
	slices.Reverse(names)
	for _, name := range names {
		n := r.c.ByName(name)
		r.k.Fault("SIGTERM "+name+" (rolling)", r.heldBy(name, r.c.LiveNames()))
		r.c.Terminate(n)
		r.progress("after the drain of "+name, nil)
		r.restart(n)
	}
	return fmt.Sprintf("every node in turn (%v) drained with SIGTERM and restarted", names)
}
