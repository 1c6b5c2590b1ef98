package hub

import (
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// resyncBackoff spaces out gap-filling resubscriptions of one room.
const resyncBackoff = 200 * time.Millisecond

// Deliver applies an event pushed by a room's owner: a message (in sequence
// order, duplicates dropped, gaps filled from the owner), a presence change
// or a typing frame. Events for rooms without local subscribers are dropped.
func (h *Hub) Deliver(ev feed.Event) {
	r, _ := h.lookup(ev.Room, false)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state != ready {
		return // the subscribe reply will carry the state
	}
	switch ev.Kind {
	case feed.KindMessage:
		r.deliverMessage(ev)
		r.releaseAcks()
	case feed.KindPresence:
		r.applyPresence(ev)
	case feed.KindTyping:
		r.broadcast(ev.Frame)
	case feed.KindTrimmed:
		if ev.Epoch == r.epoch {
			r.trimTo(ev.Seq)
		}
	}
}

// trimTo forgets the messages below oldest, which retention removed from
// the room's history: later joins, resumes and pages no longer show them.
// Callers hold mu.
func (r *room) trimTo(oldest uint64) {
	r.oldest = max(r.oldest, oldest)
	r.cache.DropBefore(oldest)
	for seq := range r.early {
		if seq < oldest {
			delete(r.early, seq)
		}
	}
}

func (r *room) deliverMessage(ev feed.Event) {
	m := *ev.Message
	if ev.Epoch != r.epoch {
		if m.Seq != 1 {
			r.resync()
			return
		}
		r.restartEpoch(ev.Epoch)
	}
	switch {
	case m.Seq <= r.cache.Head():
		// Already delivered: the same message from the old and the new
		// owner around an ownership move.
	case m.Seq == r.cache.Head()+1:
		r.apply(m, ev.Frame)
		r.drainEarly()
	default:
		if r.early == nil {
			r.early = make(map[uint64]protocol.Message)
		}
		r.early[m.Seq] = m
		r.resync()
	}
}

// apply stores and fans out the next message. Callers hold mu.
func (r *room) apply(m protocol.Message, frame []byte) {
	if err := r.cache.Append(m); err != nil {
		r.hub.log.Error("local history refused a message", "room", r.name, "err", err)
		return
	}
	if m.Target != 0 {
		// A deletion: later joins, resumes and pages served from this
		// copy show the target deleted, as the owner's copies do.
		r.cache.Redact(m.Target)
	}
	if frame == nil {
		frame = protocol.Encode(m)
	}
	r.broadcast(frame)
	r.hub.metrics.Deliveries.Add(float64(len(r.subs)))
	if r.state == ready {
		r.answerCaughtUp(false)
	}
}

func (r *room) drainEarly() {
	for len(r.early) > 0 {
		next, ok := r.early[r.cache.Head()+1]
		if !ok {
			return
		}
		delete(r.early, next.Seq)
		r.apply(next, nil)
	}
	// Anything left at or below the head was delivered meanwhile.
	for seq := range r.early {
		if seq <= r.cache.Head() {
			delete(r.early, seq)
		}
	}
}

// restartEpoch follows the owner into a new incarnation of the room (every
// copy of the old one was lost). Local subscribers get a fresh joined frame
// with recovered=false, so they drop what they had and reload.
func (r *room) restartEpoch(epoch string) {
	r.hub.log.Warn("room restarted in a new epoch", "room", r.name, "old", r.epoch, "new", epoch)
	r.epoch = epoch
	r.cache.Restart(0)
	r.oldest = 1
	clear(r.early)
	notRecovered := false
	frame := protocol.Encode(protocol.Joined{Type: protocol.TypeJoined, Room: r.name, Epoch: epoch, Head: 0, Oldest: 1, Count: r.count, Recovered: &notRecovered})
	r.broadcast(frame)
	if r.state == ready {
		r.answerCaughtUp(true) // of the old epoch: recovered=false
	}
}

// resync asks the owner again for the room's state, to fill a gap or to
// follow an ownership move. Callers hold mu; the request is made after the
// lock is released.
func (r *room) resync() {
	now := r.hub.now()
	if now.Before(r.resyncAt) {
		return
	}
	r.resyncAt = now.Add(resyncBackoff)
	users := r.localUsers()
	go r.hub.router.Subscribe(r.name, users, func(rep feed.State, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.dead {
			return
		}
		if err != nil {
			r.hub.log.Warn("resubscribe failed", "room", r.name, "err", err)
			if len(r.waiting) > 0 {
				// Resumes wait for the copy: ask again, after the backoff
				// (the owner may be changing).
				time.AfterFunc(resyncBackoff, r.retryResync)
			}
			return
		}
		r.merge(rep)
		r.answerCaughtUp(false)
		r.releaseAcks()
	})
}

// retryResync asks the owner again for the room's state while resumes
// wait for this node's copy (see Join); catchUpDeadline bounds the wait
// (CatchUpMax).
func (r *room) retryResync() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || r.state != ready || len(r.waiting) == 0 {
		return
	}
	r.resync()
}

// Resubscribe re-registers this node's interest in a room with its (new)
// owner and fills any gap from its answer. The cluster calls it when a
// room's owner changes.
func (h *Hub) Resubscribe(roomName string) {
	r, _ := h.lookup(roomName, false)
	if r == nil {
		return
	}
	defer r.mu.Unlock()
	if r.state != ready {
		return // the pending subscribe is retried by the router
	}
	r.resyncAt = time.Time{}
	r.resync()
}

// ResubscribeAll re-subscribes every local room. The cluster calls it when
// this node was paused or suspected: owners that declared it dead dropped
// its subscriptions, and its clients would otherwise hear nothing more.
// The answers fill every gap (or tell the clients to reload).
func (h *Hub) ResubscribeAll() { h.ResubscribeOwnedBy(func(string) bool { return true }) }

// ResubscribeOwnedBy re-subscribes the local rooms for which owned says
// true: the cluster calls it for the rooms of an owner that dropped this
// node and now counts it as a member again.
func (h *Hub) ResubscribeOwnedBy(owned func(room string) bool) {
	for _, name := range h.LocalRooms() {
		if owned(name) {
			h.Resubscribe(name)
		}
	}
}

// merge folds a subscribe reply into a live local copy. Callers hold mu.
func (r *room) merge(rep feed.State) {
	if rep.Epoch != r.epoch {
		r.restartEpoch(rep.Epoch)
	}
	for _, m := range rep.Messages {
		if m.Seq == r.cache.Head()+1 {
			r.apply(m, nil)
		}
	}
	if rep.Head > r.cache.Head() {
		// The owner no longer keeps what this node missed: take the owner's
		// copy and tell local subscribers they have a gap to reload.
		r.hub.log.Warn("gap older than the owner's history", "room", r.name, "local", r.cache.Head(), "owner", rep.Head)
		r.install(rep)
		notRecovered := false
		r.broadcast(protocol.Encode(protocol.Joined{Type: protocol.TypeJoined, Room: r.name, Epoch: r.epoch, Head: r.cache.Head(), Oldest: r.roomOldest(), Count: rep.Count, Recovered: &notRecovered}))
		return
	}
	r.drainEarly()
	r.mergePresence(rep)
}

// mergePresence takes the owner's presence from a subscribe reply and tells
// local subscribers what differs from the copy they were given: a room
// moved between owners, or a node re-subscribed after a pause, may have
// missed arrivals and departures (a new owner does not replay a batch its
// predecessor had not announced). Nothing is sent when nothing differs.
// Callers hold mu.
func (r *room) mergePresence(rep feed.State) {
	limit := r.hub.cfg.PresenceListMax
	ev := feed.Event{Kind: feed.KindPresence, Room: r.name, Count: rep.Count}
	switch {
	case rep.Count > limit: // count mode: a count only
		clear(r.present)
		if rep.Count == r.count {
			return
		}
	case r.count > limit: // back to list mode: the whole list
		ev.Present = append([]string{}, rep.Present...)
	default:
		now := make(map[string]struct{}, len(rep.Present))
		for _, u := range rep.Present {
			now[u] = struct{}{}
			if _, ok := r.present[u]; !ok {
				ev.Joined = append(ev.Joined, u)
			}
		}
		for u := range r.present {
			if _, ok := now[u]; !ok {
				ev.Left = append(ev.Left, u)
			}
		}
		if ev.Joined == nil && ev.Left == nil && rep.Count == r.count {
			return
		}
		slices.Sort(ev.Joined)
		slices.Sort(ev.Left)
	}
	ev.Frame = protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: r.name, Count: ev.Count, Joined: ev.Joined, Left: ev.Left, Present: ev.Present})
	r.applyPresence(ev)
}

// applyPresence updates the local presence copy and fans the frame out. A
// user is not told of its own arrival: its joined frame already listed it.
func (r *room) applyPresence(ev feed.Event) {
	r.count = ev.Count
	if ev.Present != nil {
		clear(r.present)
		for _, u := range ev.Present {
			r.present[u] = struct{}{}
		}
	}
	for _, u := range ev.Joined {
		r.present[u] = struct{}{}
	}
	for _, u := range ev.Left {
		delete(r.present, u)
	}
	if len(ev.Joined) == 0 {
		r.broadcast(ev.Frame)
		return
	}
	// A batch can name several arrivals: each of those users gets the
	// frame without its own name (nothing, if it was the only change).
	// Joined is sorted (the owner sorts it).
	var own map[string][]byte
	for _, c := range r.subs {
		user := c.UserID()
		if _, self := slices.BinarySearch(ev.Joined, user); !self {
			c.Enqueue(ev.Frame)
			continue
		}
		frame, ok := own[user]
		if !ok {
			frame = withoutArrival(ev, user)
			if own == nil {
				own = make(map[string][]byte)
			}
			own[user] = frame
		}
		if frame != nil {
			c.Enqueue(frame)
		}
	}
}

// withoutArrival is ev's presence frame as user sees it: without user in
// joined, or nil when nothing else changed.
func withoutArrival(ev feed.Event, user string) []byte {
	others := make([]string, 0, len(ev.Joined)-1)
	for _, u := range ev.Joined {
		if u != user {
			others = append(others, u)
		}
	}
	if len(others) == 0 && len(ev.Left) == 0 {
		return nil
	}
	if len(others) == 0 {
		others = nil
	}
	return protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: ev.Room, Count: ev.Count, Joined: others, Left: ev.Left})
}
