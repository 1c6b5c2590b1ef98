package deliverycheck

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// analyze works out the report from everything recorded. Called under
// MultiRoom.mu once the clients have stopped.
func (k *MultiRoom) analyze(scenario string) Report {
	led := k.led
	rep := Report{Scenario: scenario, Acked: led.ackedMessages(), SilenceBound: k.cfg.SilenceBound(), AnnouncedGaps: led.gaps,
		find: findings{count: maps.Clone(led.find.count), examples: map[Check][]string{}}}
	for c, ex := range led.find.examples {
		rep.find.examples[c] = slices.Clone(ex)
	}
	k.checkLost(&rep)
	for _, s := range led.slots {
		if len(s.others) > 0 {
			rep.ConflictingSeqs++
		}
	}
	k.checkRestarts(&rep)
	k.checkStalls(&rep)
	k.checkRecoveries(&rep)
	rep.Lost = rep.find.count[CheckLost]
	rep.Duplicated = rep.find.count[CheckDuplicated]
	rep.OutOfOrder = rep.find.count[CheckOutOfOrder]
	rep.AckBeforeMessage = rep.find.count[CheckAckBeforeMessage]
	return rep
}

// at names a time as an offset from the start, for examples.
func (k *MultiRoom) at(t time.Time) string {
	return fmt.Sprintf("t+%.1fs", t.Sub(k.started).Seconds())
}

// checkLost holds every acknowledged message to account at every client
// that was owed it.
func (k *MultiRoom) checkLost(rep *Report) {
	type msg struct {
		key slotKey
		c   content
	}
	done := map[msg]bool{}
	for _, r := range k.led.acks {
		m := msg{r.key, r.c}
		if done[m] {
			continue
		}
		done[m] = true
		var missing []string
		owed := 0
		for _, a := range k.actors {
			e := a.rooms[r.key.room].epochs[r.key.epoch]
			if e == nil || !e.owes(r.key.seq) {
				continue
			}
			owed++
			if got, ok := e.got[r.key.seq]; !ok {
				missing = append(missing, a.name+" never got it")
			} else if got != r.c {
				missing = append(missing, fmt.Sprintf("%s got %s there", a.name, got))
			}
		}
		if len(missing) > 0 && len(missing) == owed {
			rep.LostEverywhere++
		}
		if len(missing) > 0 {
			rep.find.example(CheckLost, fmt.Sprintf("%s acked to %s on %s at %s as %s: %s", r.key, r.actor, k.nodeName(r.url), k.at(r.at), r.c, strings.Join(missing[:min(3, len(missing))], "; ")))
		}
	}
}

// checkRestarts reports every room that started a new epoch, with the
// acknowledged messages its old epoch took with it, and fails those the
// test did not expect.
func (k *MultiRoom) checkRestarts(rep *Report) {
	for _, x := range k.led.restarts {
		seen := map[[2]string]bool{}
		rs := Restart{Room: x.room, From: x.from, To: x.to, Allowed: k.allowRestart[x.room]}
		for _, r := range k.led.acks {
			if r.key.room != x.room || r.key.epoch != x.from || seen[[2]string{r.c.From, r.c.CID}] {
				continue
			}
			seen[[2]string{r.c.From, r.c.CID}] = true
			rs.Erased++
			for _, a := range k.actors {
				if e := a.rooms[x.room].epochs[x.from]; e != nil && r.key.seq > e.from {
					if _, ok := e.got[r.key.seq]; !ok {
						rs.Undelivered++
						break
					}
				}
			}
		}
		rep.Restarts = append(rep.Restarts, rs)
		if rs.Allowed == "" && rs.Erased > 0 {
			rep.find.example(CheckRestart, fmt.Sprintf("room %s started epoch %s after epoch %s (told to %s at %s), erasing %d acknowledged messages (%d never delivered to every subscriber), though not every copy of it was lost",
				x.room, x.to, x.from, x.by, k.at(x.at), rs.Erased, rs.Undelivered))
		}
	}
}

// ackTimes indexes one epoch's acks by seq: sufMin[i] is the earliest time
// any seq ≥ seqs[i] was acknowledged.
type ackTimes struct {
	seqs   []uint64
	sufMin []time.Time
}

// earliestAbove is when the first seq above last was acknowledged (zero
// if none was).
func (a *ackTimes) earliestAbove(last uint64) time.Time {
	if a == nil {
		return time.Time{}
	}
	i := sort.Search(len(a.seqs), func(i int) bool { return a.seqs[i] > last })
	if i == len(a.seqs) {
		return time.Time{}
	}
	return a.sufMin[i]
}

func (k *MultiRoom) indexAcks() map[epochKey]*ackTimes {
	type sa struct {
		seq uint64
		at  time.Time
	}
	by := map[epochKey][]sa{}
	for _, r := range k.led.acks {
		if !r.duplicate {
			ek := epochKey{r.key.room, r.key.epoch}
			by[ek] = append(by[ek], sa{r.key.seq, r.at})
		}
	}
	out := map[epochKey]*ackTimes{}
	for ek, xs := range by {
		slices.SortFunc(xs, func(a, b sa) int { return cmp.Compare(a.seq, b.seq) })
		at := &ackTimes{seqs: make([]uint64, len(xs)), sufMin: make([]time.Time, len(xs))}
		for i := len(xs) - 1; i >= 0; i-- {
			at.seqs[i] = xs[i].seq
			at.sufMin[i] = xs[i].at
			if i+1 < len(xs) && at.sufMin[i+1].Before(at.sufMin[i]) {
				at.sufMin[i] = at.sufMin[i+1]
			}
		}
		out[ek] = at
	}
	return out
}

// behindSince is when a client at seq last of epoch first fell behind:
// the first ack of a later seq in that epoch, or of any seq in a later
// epoch of the room (zero if neither happened).
func (k *MultiRoom) behindSince(idx map[epochKey]*ackTimes, room, epoch string, last uint64) time.Time {
	t := idx[epochKey{room, epoch}].earliestAbove(last)
	later := false
	for _, e := range k.led.epochs[room] {
		if later {
			if u := idx[epochKey{room, e.epoch}].earliestAbove(0); !u.IsZero() && (t.IsZero() || u.Before(t)) {
				t = u
			}
		}
		later = later || e.epoch == epoch
	}
	return t
}

// impairedFor is how much of [from, to) the node at url was declared
// frozen or cut off.
func (k *MultiRoom) impairedFor(url string, from, to time.Time) time.Duration {
	var d time.Duration
	for _, w := range k.impaired[url] {
		wt := w.to
		if wt.IsZero() {
			wt = k.ended
		}
		a, b := later(from, w.from), earlier(to, wt)
		if a.Before(b) {
			d += b.Sub(a)
		}
	}
	return d
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// checkStalls measures, for every client and room, each stretch in which
// the client heard nothing from the room while a newer message had been
// acknowledged, and fails those longer than the silence bound.
func (k *MultiRoom) checkStalls(rep *Report) {
	idx := k.indexAcks()
	bound := k.cfg.SilenceBound()
	for _, a := range k.actors {
		for _, room := range k.cfg.Rooms {
			evs := a.rooms[room].events
			var worst time.Duration
			var worstWhy string
			for i, ev := range evs {
				stop := k.ended
				if i+1 < len(evs) {
					stop = evs[i+1].at
				}
				b := k.behindSince(idx, room, ev.epoch, ev.last)
				if b.IsZero() || !b.Before(stop) {
					continue
				}
				b = later(b, ev.at)
				d := stop.Sub(b) - k.impairedFor(ev.url, b, stop)
				rep.LongestStall = max(rep.LongestStall, d)
				if d > worst {
					worst = d
					worstWhy = fmt.Sprintf("%s heard nothing from room %s for %.1fs (%s to %s, not counting time its node was declared frozen or cut off), last on %s at seq %d of epoch %s, while %d was acknowledged by the end of it",
						a.name, room, d.Seconds(), k.at(b), k.at(stop), k.nodeName(ev.url), ev.last, ev.epoch, k.led.maxAcked(room, ev.epoch))
				}
			}
			if worst > bound {
				rep.SilentSubscribers++
				rep.find.example(CheckSilent, worstWhy)
			}
		}
	}
}

// checkRecoveries measures, for every fault the test announced, how long
// its rooms took to acknowledge a message again.
func (k *MultiRoom) checkRecoveries(rep *Report) {
	times := map[string][]time.Time{}
	for _, r := range k.led.acks {
		if !r.duplicate {
			times[r.key.room] = append(times[r.key.room], r.at)
		}
	}
	for _, ts := range times {
		slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	}
	for _, f := range k.faults {
		rec := Recovery{Fault: f.label}
		for _, room := range f.rooms {
			ts := times[room]
			i := sort.Search(len(ts), func(i int) bool { return ts[i].After(f.at) })
			if i == len(ts) {
				rec.Never = append(rec.Never, room)
				continue
			}
			if d := ts[i].Sub(f.at); d > rec.After {
				rec.After, rec.Room = d, room
			}
		}
		rep.Recoveries = append(rep.Recoveries, rec)
		if len(rec.Never) > 0 {
			rep.find.example(CheckNoRecovery, fmt.Sprintf("after %s (%s) rooms %v never acknowledged a message again", f.label, k.at(f.at), rec.Never))
		}
	}
}
