package hub

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/dedupe"
	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// JoinRequest is a join as the hub sees it: names validated and access
// checked by the caller.
type JoinRequest struct {
	ID    string
	Room  string
	Epoch string
	// Since, when set, asks for every message after it.
	Since *uint64
	// OnFail, when set, is called (from any goroutine) if the join fails,
	// so the caller can free the room's slot.
	OnFail func()
}

// Join subscribes c to a room. The joined frame and, when the request
// resumes, the missed messages are queued under the room's lock together with
// the subscription, so no live message can slip in between. The first local
// join of a room subscribes this node at the room's owner first. A join
// that would add a room past Config.MaxRooms is refused with
// node_rooms_full.
func (h *Hub) Join(c Conn, req JoinRequest) {
	if h.refused(c, req.ID, req.Room, false) {
		if req.OnFail != nil {
			req.OnFail()
		}
		return
	}
	r, created := h.lookup(req.Room, true)
	if r == nil {
		e := protocol.NewError(protocol.CodeNodeRoomsFull, req.ID, "this node serves as many rooms as it may ("+strconv.Itoa(h.cfg.MaxRooms)+"); retry later, or on another node")
		e.Room = req.Room
		h.metrics.ErrorFrames.WithLabelValues(e.Code).Inc()
		c.Enqueue(protocol.Encode(e))
		if req.OnFail != nil {
			req.OnFail()
		}
		return
	}
	_, already := r.index[c]
	if !already {
		// A join pipelined behind one still waiting for the owner.
		already = slices.ContainsFunc(r.waiting, func(w waitingJoin) bool { return w.c == c })
	}
	newUser := false
	if !already {
		r.users[c.UserID()]++
		newUser = r.users[c.UserID()] == 1
	}
	if r.state == ready && r.behind(req) {
		// The client saw messages this node's copy has not delivered yet
		// (it comes from a node that was ahead): answering now would rewind
		// it, and the messages would reach it twice. Its answer waits for
		// the copy to reach its position (the owner is asked at once), at
		// most CatchUpMax.
		r.waiting = append(r.waiting, waitingJoin{c: c, req: req, since: h.now()})
		if r.catchUpTimer == nil {
			r.catchUpTimer = time.AfterFunc(h.cfg.CatchUpMax, r.catchUpDeadline)
		}
		r.resyncAt = time.Time{}
		r.resync()
		r.mu.Unlock()
		if newUser {
			h.router.PresenceChange(r.name, c.UserID(), true)
		}
		return
	}
	if r.state == ready {
		r.answerJoin(c, req)
		r.mu.Unlock()
		if newUser {
			h.router.PresenceChange(r.name, c.UserID(), true)
		}
		return
	}
	r.waiting = append(r.waiting, waitingJoin{c: c, req: req})
	users := r.localUsers()
	r.mu.Unlock()
	if created {
		h.subscribe(r, users)
	} else if newUser {
		h.router.PresenceChange(r.name, c.UserID(), true)
	}
}

// subscribe asks the owner for the room and, when it answers, serves the
// joins that waited. If the owner cannot be reached the waiting connections
// get an unavailable error and the room is dropped.
func (h *Hub) subscribe(r *room, users []string) {
	h.router.Subscribe(r.name, users, func(rep feed.State, err error) {
		r.mu.Lock()
		if r.dead {
			// Every join left while the owner was asked (Leave): the
			// subscription the owner just made is undone, after it, so an
			// unsubscription cannot overtake it.
			undo := err == nil && r.unsubscribeOnReply
			r.mu.Unlock()
			if undo {
				h.undoSubscription(r.name)
			}
			return
		}
		defer r.mu.Unlock()
		if err != nil {
			h.log.Warn("subscribe failed", "room", r.name, "err", err)
			for _, w := range r.waiting {
				e := unavailable(r.name, err)
				e.ID = w.req.ID
				w.c.Enqueue(protocol.Encode(e))
				if w.req.OnFail != nil {
					w.req.OnFail()
				}
			}
			r.waiting = nil
			h.drop(r)
			return
		}
		r.install(rep)
		r.state = ready
		for _, w := range r.waiting {
			r.answerJoin(w.c, w.req)
		}
		r.waiting = nil
	})
}

// undoSubscription unsubscribes this node from a room whose every local
// join left while its owner was being asked. Not on the caller's
// goroutine: a reply may come from an owner on this node, under that
// owner's own locks (its answer is made under the room's lock, for order),
// and an unsubscription made there would wait for those very locks. A new
// local room of that name waits until it is done (lookup), so the
// unsubscription still comes before the next subscription; a second undo
// of the same name queues behind the first.
func (h *Hub) undoSubscription(name string) {
	done := make(chan struct{})
	h.mu.Lock()
	prev := h.undoing[name]
	h.undoing[name] = done
	h.mu.Unlock()
	go func() {
		if prev != nil {
			<-prev
		}
		h.router.Unsubscribe(name)
		h.mu.Lock()
		if h.undoing[name] == done {
			delete(h.undoing, name)
		}
		h.mu.Unlock()
		close(done)
	}()
}

// unavailable is the error frame for a request the owner could not take.
// A router error that carries a protocol error (a storage refusal) keeps
// its code.
func unavailable(room string, err error) *protocol.Error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		e := protocol.NewError(pe.Code, "", pe.Message)
		e.Room = room
		return e
	}
	e := protocol.NewError(protocol.CodeUnavailable, "", "room unavailable, retry: "+err.Error())
	e.Room = room
	return e
}

// install replaces the local copy with what the owner sent. Callers hold mu.
func (r *room) install(rep feed.State) {
	r.epoch = rep.Epoch
	start := rep.Head
	if len(rep.Messages) > 0 {
		start = rep.Messages[0].Seq - 1
	}
	r.cache.Restart(start)
	for _, m := range rep.Messages {
		_ = r.cache.Append(m) // the owner sends a gapless run
	}
	r.oldest = rep.Oldest
	clear(r.present)
	for _, u := range rep.Present {
		r.present[u] = struct{}{}
	}
	r.count = rep.Count
	clear(r.early)
}

// answerJoin subscribes c and queues the joined frame (and the replay) to
// it. Callers hold mu.
func (r *room) answerJoin(c Conn, req JoinRequest) {
	if _, ok := r.index[c]; !ok {
		r.add(c)
	}
	present, count := r.presentUsers(), r.count
	if _, ok := r.present[c.UserID()]; !ok {
		// The owner has not echoed this user's arrival yet; the joiner is
		// present all the same.
		present = insertSorted(present, c.UserID())
		count++
	}
	joined := protocol.Joined{
		Type:   protocol.TypeJoined,
		ID:     req.ID,
		Room:   r.name,
		Epoch:  r.epoch,
		Head:   r.cache.Head(),
		Oldest: r.roomOldest(),
		Count:  count,
	}
	if count <= r.hub.cfg.PresenceListMax {
		joined.Present = present
	}
	var replay []protocol.Message
	if req.Since != nil {
		ok := req.Epoch == r.epoch
		if ok {
			replay, ok = r.cache.Since(*req.Since)
		}
		joined.Recovered = &ok
	}
	c.Enqueue(protocol.Encode(joined))
	for _, m := range replay {
		c.Enqueue(protocol.Encode(m))
	}
}

// behind reports whether a resume asks for messages after a position this
// node's copy of the room has not reached, in the same epoch. Callers hold
// mu.
func (r *room) behind(req JoinRequest) bool {
	return req.Since != nil && req.Epoch == r.epoch && *req.Since > r.cache.Head()
}

// answerCaughtUp answers the resumes that waited for this node's copy to
// reach their position (see Join): those it reached, or every one when all
// is set (the copy restarted in a new epoch).
// Callers hold mu; the room is ready.
func (r *room) answerCaughtUp(all bool) {
	if len(r.waiting) == 0 {
		return
	}
	kept := r.waiting[:0]
	for _, w := range r.waiting {
		if all || !r.behind(w.req) {
			r.answerJoin(w.c, w.req)
			continue
		}
		kept = append(kept, w)
	}
	clear(r.waiting[len(kept):])
	r.waiting = kept
	if len(r.waiting) == 0 && r.catchUpTimer != nil {
		r.catchUpTimer.Stop()
		r.catchUpTimer = nil
	}
}

// catchUpDeadline answers the resumes that waited CatchUpMax for this
// node's copy to reach their position, from the copy as it is: the owner
// has not confirmed the messages they saw (a client's position may also be
// made up), and waiting longer would leave them silent.
func (r *room) catchUpDeadline() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.catchUpTimer = nil
	if r.dead || r.state != ready || len(r.waiting) == 0 {
		return
	}
	now := r.hub.now()
	late := 0
	kept := r.waiting[:0]
	for _, w := range r.waiting {
		if now.Sub(w.since) >= r.hub.cfg.CatchUpMax {
			r.answerJoin(w.c, w.req)
			late++
			continue
		}
		kept = append(kept, w)
	}
	clear(r.waiting[len(kept):])
	r.waiting = kept
	if late > 0 {
		r.hub.log.Warn("resumes answered before this node's copy reached their position", "room", r.name, "resumes", late, "local_head", r.cache.Head())
	}
	if len(r.waiting) > 0 {
		r.catchUpTimer = time.AfterFunc(r.waiting[0].since.Add(r.hub.cfg.CatchUpMax).Sub(now), r.catchUpDeadline)
	}
}

func insertSorted(list []string, s string) []string {
	i, _ := slices.BinarySearch(list, s)
	return slices.Insert(list, i, s)
}

// Leave unsubscribes c from a room. It reports whether c was subscribed.
func (h *Hub) Leave(c Conn, roomName string) bool {
	r, _ := h.lookup(roomName, false)
	if r == nil {
		return false
	}
	was, lastOfUser := r.remove(c)
	if !was {
		// A leave of a join still waiting for the owner cancels it.
		was, lastOfUser = r.removeWaiting(c)
	}
	empty := len(r.subs) == 0 && len(r.waiting) == 0
	subscribing := r.state != ready
	if empty && was {
		h.drop(r)
		// While the owner has not answered, the unsubscription waits for
		// its answer (see subscribe).
		r.unsubscribeOnReply = subscribing
	}
	r.mu.Unlock()
	if !was {
		return false
	}
	switch {
	case empty && !subscribing:
		h.router.Unsubscribe(roomName)
	case !empty && lastOfUser:
		// The user's arrival went with the subscription, or as a presence
		// change, on the same ordered stream to the owner: its departure
		// follows it there.
		h.router.PresenceChange(roomName, c.UserID(), false)
	}
	return true
}

// Publish sends a message from c to a room c has joined; the ack (or the
// error) is queued to c when the owner answers. start is when the frame was
// read, for the send-to-ack histogram.
func (h *Hub) Publish(c Conn, id, roomName, cid, text string, start time.Time) {
	if h.refused(c, id, roomName, true) {
		return
	}
	r, _ := h.lookup(roomName, false)
	joined := false
	if r != nil {
		_, joined = r.index[c]
		r.mu.Unlock()
	}
	if !joined {
		c.Enqueue(protocol.Encode(notJoined(id, roomName)))
		return
	}
	h.router.Publish(roomName, c.UserID(), cid, text, func(ack protocol.Ack, err error) {
		if err != nil {
			e := unavailable(roomName, err)
			e.ID = id
			c.Enqueue(protocol.Encode(e))
			return
		}
		ack.ID = id
		h.sendAck(c, roomName, ack)
		if !ack.Duplicate {
			h.metrics.MessagesStored.Inc()
		}
		h.metrics.SendToAck.Observe(time.Since(start).Seconds())
	})
}

// sendAck queues a send's acknowledgement to c once this node has
// delivered the message it acknowledges: the protocol promises the sender
// its own message before the ack (§5.5). The owner pushes a message before
// it answers its sender, and both travel on one ordered stream, so the
// message is normally here first; around an ownership move (a new owner, a
// resubscription filling a gap) it may not be, and the ack waits for it.
func (h *Hub) sendAck(c Conn, roomName string, ack protocol.Ack) {
	frame := protocol.Encode(ack)
	r, _ := h.lookup(roomName, false)
	if r == nil {
		c.Enqueue(frame)
		return
	}
	defer r.mu.Unlock()
	epoch := epochOfMID(ack.MID)
	if _, joined := r.index[c]; !joined || (r.state == ready && epoch == r.epoch && r.cache.Head() >= ack.Seq) {
		c.Enqueue(frame)
		return
	}
	r.acks = append(r.acks, heldAck{c: c, epoch: epoch, heldIn: r.epoch, seq: ack.Seq, frame: frame, since: h.now()})
	if r.ackTimer == nil {
		r.ackTimer = time.AfterFunc(h.cfg.AckHoldMax, r.ackDeadline)
	}
}

// epochOfMID reads the epoch from a message id ("<epoch>-<seq>").
func epochOfMID(mid string) string {
	if i := strings.LastIndexByte(mid, '-'); i >= 0 {
		return mid[:i]
	}
	return ""
}

// releaseAcks sends the held acknowledgements whose message this node has
// now delivered, those of connections that left, and those of an epoch the
// local copy has left behind (the room restarted; its subscribers were
// told to reload). Callers hold r.mu.
func (r *room) releaseAcks() {
	if len(r.acks) == 0 {
		return
	}
	kept := r.acks[:0]
	for _, a := range r.acks {
		_, joined := r.index[a.c]
		delivered := a.epoch == r.epoch && r.cache.Head() >= a.seq
		stale := a.epoch != r.epoch && a.heldIn != r.epoch
		if !joined || delivered || stale {
			a.c.Enqueue(a.frame)
			continue
		}
		kept = append(kept, a)
	}
	clear(r.acks[len(kept):])
	r.acks = kept
	if len(r.acks) == 0 && r.ackTimer != nil {
		r.ackTimer.Stop()
		r.ackTimer = nil
	}
}

// ackDeadline sends the acknowledgements held for AckHoldMax without their
// message arriving. That breaks the message-first promise, which is logged;
// never sending them would be worse (the client would resend for ever).
func (r *room) ackDeadline() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ackTimer = nil
	now := r.hub.now()
	kept := r.acks[:0]
	late := 0
	for _, a := range r.acks {
		if now.Sub(a.since) >= r.hub.cfg.AckHoldMax {
			a.c.Enqueue(a.frame)
			late++
			continue
		}
		kept = append(kept, a)
	}
	clear(r.acks[len(kept):])
	r.acks = kept
	if late > 0 {
		r.hub.log.Warn("acknowledgements sent before their message reached this node", "room", r.name, "acks", late, "local_head", r.cache.Head())
	}
	if len(r.acks) > 0 {
		// The oldest ack kept is the first: acks are held in arrival order.
		r.ackTimer = time.AfterFunc(r.acks[0].since.Add(r.hub.cfg.AckHoldMax).Sub(now), r.ackDeadline)
	}
}

func notJoined(id, room string) *protocol.Error {
	e := protocol.NewError(protocol.CodeNotJoined, id, "join the room before sending to it")
	e.Room = room
	return e
}

// History queues a page of a room's history to c: from the local copy when
// this node has the room and the page is in memory here, from the owner
// otherwise (older pages of a stored room are read from its disk).
func (h *Hub) History(c Conn, id, roomName string, before uint64, limit int) {
	if r, _ := h.lookup(roomName, false); r != nil {
		if r.state == ready {
			if before == 0 || before > r.cache.Head()+1 {
				before = r.cache.Head() + 1
			}
			oldest := r.roomOldest()
			from := oldest
			if before > oldest && before-oldest > uint64(limit) {
				from = before - uint64(limit)
			}
			if from >= r.cache.Oldest() || before <= oldest {
				msgs, _ := r.cache.Before(before, limit)
				if msgs == nil {
					msgs = []protocol.Message{}
				}
				more := len(msgs) > 0 && msgs[0].Seq > oldest
				page := protocol.HistoryPage{Type: protocol.TypeHistory, ID: id, Room: roomName, Epoch: r.epoch, Head: r.cache.Head(), Oldest: oldest, More: more, Messages: msgs}
				r.mu.Unlock()
				c.Enqueue(protocol.Encode(page))
				return
			}
		}
		r.mu.Unlock()
	}
	h.router.History(roomName, before, limit, func(page protocol.HistoryPage, err error) {
		if err != nil {
			e := unavailable(roomName, err)
			e.ID = id
			c.Enqueue(protocol.Encode(e))
			return
		}
		page.ID = id
		c.Enqueue(protocol.Encode(page))
	})
}

// Typing records that c's user is typing in a room. Signals closer together
// than TypingInterval are dropped here; the owner coalesces the rest.
func (h *Hub) Typing(c Conn, roomName string) *protocol.Error {
	r, _ := h.lookup(roomName, false)
	if r == nil {
		return notJoined("", roomName)
	}
	if _, ok := r.index[c]; !ok {
		r.mu.Unlock()
		return notJoined("", roomName)
	}
	now := h.now()
	u := c.UserID()
	if last, ok := r.typingLast[u]; ok && now.Sub(last) < h.cfg.TypingInterval {
		r.mu.Unlock()
		return nil
	}
	if r.typingLast == nil {
		r.typingLast = make(map[string]time.Time)
	}
	r.typingLast[u] = now
	r.mu.Unlock()
	h.router.Typing(roomName, u)
	return nil
}

var dmCounter atomic.Uint64

// dmResult is what the dedupe window remembers of a direct message: its ack
// once the delivery is done, and meanwhile the resends waiting for it.
// Guarded by the hub's dmMu.
type dmResult struct {
	done bool
	ack  protocol.Ack
	// waiting holds the resends that arrived before the ack: each gets the
	// ack, as a duplicate, when it is known.
	waiting []dmWaiter
}

type dmWaiter struct {
	c  Conn
	id string
}

// enqueueDuplicate queues to c the ack of an earlier direct message as the
// answer to its resend id.
func enqueueDuplicate(c Conn, id string, ack protocol.Ack) {
	ack.ID, ack.Duplicate = id, true
	c.Enqueue(protocol.Encode(ack))
}

// DirectMessage sends a message from c's user to every connection of user
// to, on every node, and to the sender's other connections so all of a
// user's tabs show the conversation (a message to oneself reaches the sending
// connection too). Direct messages are not stored; the ack says how many
// connections of the recipient received it (0: offline).
//
// The (sender, cid) key is reserved in the dedupe window before the message
// is delivered, so a resend is never delivered again: one that arrives while
// the first is still being delivered (the cluster's calls take a while)
// waits for its ack and gets it, as a duplicate, with the first one's.
func (h *Hub) DirectMessage(c Conn, id, to, cid, text string) {
	from := c.UserID()
	key := dedupe.Key{Sender: from, ID: cid}
	h.dmMu.Lock()
	if prev, ok := h.dmDedupe.Get(key); ok {
		if !prev.done {
			prev.waiting = append(prev.waiting, dmWaiter{c, id})
			h.dmMu.Unlock()
			return
		}
		ack := prev.ack
		h.dmMu.Unlock()
		enqueueDuplicate(c, id, ack)
		return
	}
	res := &dmResult{}
	h.dmDedupe.Put(key, res)
	h.dmMu.Unlock()
	now := h.now().UnixMilli()
	mid := "dm-" + strconv.FormatUint(dmCounter.Add(1), 36) + "-" + strconv.FormatInt(now, 36)
	frame := protocol.Encode(protocol.DirectMessage{Type: protocol.TypeDM, MID: mid, From: from, To: to, CID: cid, Text: text, TS: now})
	h.router.DirectMessage(to, from, c.SessionID(), frame, func(delivered int) {
		ack := protocol.Ack{Type: protocol.TypeAck, To: to, CID: cid, MID: mid, TS: now, Delivered: &delivered}
		first := ack
		first.ID = id
		firstFrame := protocol.Encode(first)
		// The acks are queued under dmMu (Enqueue never blocks nor calls
		// back), so the first one precedes the duplicates on a connection.
		h.dmMu.Lock()
		res.done, res.ack = true, ack
		waiting := res.waiting
		res.waiting = nil
		c.Enqueue(firstFrame)
		for _, w := range waiting {
			enqueueDuplicate(w.c, w.id, ack)
		}
		h.dmMu.Unlock()
		h.metrics.DirectMessages.Inc()
	})
}

// DeliverDirect queues a direct message frame to this node's connections of
// to, all of them, and of from, except the sending session. A message to
// oneself reaches the sending session too, as one of the recipient's
// connections (docs/protocol.md, "dm"). It returns how many connections of
// to got it.
func (h *Hub) DeliverDirect(to, from, exceptSession string, frame []byte) int {
	h.usersMu.RLock()
	defer h.usersMu.RUnlock()
	delivered := 0
	for _, c := range h.users[to] {
		c.Enqueue(frame)
		delivered++
	}
	if to != from {
		for _, c := range h.users[from] {
			if c.SessionID() != exceptSession {
				c.Enqueue(frame)
			}
		}
	}
	h.metrics.Deliveries.Add(float64(delivered))
	return delivered
}
