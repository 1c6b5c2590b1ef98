package hub

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/dedupe"
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
}

// Join subscribes c to a room, creating it on first use. It queues the joined
// frame and, when the request resumes, the missed messages, all under the
// room's lock, so no live message can slip in between the replay and the
// subscription. Joining a room c is already in answers again without
// counting c twice.
func (h *Hub) Join(c Conn, req JoinRequest) {
	r := h.lookup(req.Room, true)
	defer r.mu.Unlock()

	_, already := r.index[c]
	if !already && r.add(c) {
		// The new user is announced to the others before c is told the
		// snapshot; c's own joined frame already includes itself.
		r.presenceChangedExcept(c, c.UserID())
	}
	joined := protocol.Joined{
		Type:   protocol.TypeJoined,
		ID:     req.ID,
		Room:   r.name,
		Epoch:  r.log.Epoch(),
		Head:   r.log.Head(),
		Oldest: r.log.Oldest(),
		Count:  len(r.users),
	}
	if r.listMode() {
		joined.Present = r.presentUsers()
	}
	var replay []protocol.Message
	if req.Since != nil {
		msgs, ok := r.log.Since(req.Epoch, *req.Since)
		joined.Recovered = &ok
		replay = msgs
	}
	c.Enqueue(protocol.Encode(joined))
	for _, m := range replay {
		c.Enqueue(protocol.Encode(m))
	}
}

// presenceChangedExcept announces a join to everyone but the joiner, who
// learns of itself from its snapshot.
func (r *room) presenceChangedExcept(self Conn, user string) {
	if !r.listMode() || r.countMode {
		r.presenceChanged(user, true)
		return
	}
	frame := protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: r.name, Count: len(r.users), Joined: []string{user}})
	for _, c := range r.subs {
		if c != self {
			c.Enqueue(frame)
		}
	}
}

// Leave unsubscribes c from a room. It reports whether c was subscribed.
func (h *Hub) Leave(c Conn, room string) bool {
	r := h.lookup(room, false)
	if r == nil {
		return false
	}
	defer r.mu.Unlock()
	was, lastOfUser := r.remove(c)
	if lastOfUser {
		r.presenceChanged(c.UserID(), false)
	}
	return was
}

// Publish sequences, stores and fans out a message from c to a room c has
// joined. A resend of a cid that c's user already sent returns the original
// ack with Duplicate set and delivers nothing.
func (h *Hub) Publish(c Conn, id, roomName, cid, text string) (protocol.Ack, *protocol.Error) {
	r := h.lookup(roomName, false)
	if r == nil {
		return protocol.Ack{}, notJoined(id, roomName)
	}
	defer r.mu.Unlock()
	if _, ok := r.index[c]; !ok {
		return protocol.Ack{}, notJoined(id, roomName)
	}
	msg, dup := r.log.Append(c.UserID(), cid, text)
	if !dup {
		r.broadcast(protocol.Encode(msg))
		h.metrics.MessagesStored.Inc()
		h.metrics.Deliveries.Add(float64(len(r.subs)))
	}
	return protocol.Ack{
		Type: protocol.TypeAck, ID: id, Room: roomName, CID: cid,
		Seq: msg.Seq, MID: msg.MID, TS: msg.TS, Duplicate: dup,
	}, nil
}

func notJoined(id, room string) *protocol.Error {
	e := protocol.NewError(protocol.CodeNotJoined, id, "join the room before sending to it")
	e.Room = room
	return e
}

// History returns a page of a room's history. A room that does not exist
// answers with an empty page rather than being created.
func (h *Hub) History(id, roomName string, before uint64, limit int) protocol.HistoryPage {
	page := protocol.HistoryPage{Type: protocol.TypeHistory, ID: id, Room: roomName, Oldest: 1, Messages: []protocol.Message{}}
	r := h.lookup(roomName, false)
	if r == nil {
		return page
	}
	defer r.mu.Unlock()
	msgs, more := r.log.Before(before, limit)
	if msgs != nil {
		page.Messages = msgs
	}
	page.Epoch, page.Head, page.Oldest, page.More = r.log.Epoch(), r.log.Head(), r.log.Oldest(), more
	return page
}

// Typing records that c's user is typing in a room. Signals closer together
// than TypingInterval are dropped, and the rest are gathered for
// TypingCoalesce before one frame goes out: typing is lossy by design.
func (h *Hub) Typing(c Conn, roomName string) *protocol.Error {
	r := h.lookup(roomName, false)
	if r == nil {
		return notJoined("", roomName)
	}
	defer r.mu.Unlock()
	if _, ok := r.index[c]; !ok {
		return notJoined("", roomName)
	}
	now := h.now()
	u := c.UserID()
	if last, ok := r.typingLast[u]; ok && now.Sub(last) < h.cfg.TypingInterval {
		return nil
	}
	if r.typingLast == nil {
		r.typingLast = make(map[string]time.Time)
		r.typingPending = make(map[string]struct{})
	}
	r.typingLast[u] = now
	r.typingPending[u] = struct{}{}
	if r.typingTimer == nil {
		r.typingTimer = time.AfterFunc(h.cfg.TypingCoalesce, r.flushTyping)
	}
	return nil
}

var dmCounter atomic.Uint64

// DirectMessage delivers a message from c's user to every connection of the
// user to, and to the sender's other connections so all of a user's tabs show
// the conversation. Direct messages are not stored; the ack says how many
// connections received it (0 when the user is offline).
func (h *Hub) DirectMessage(c Conn, id, to, cid, text string) protocol.Ack {
	from := c.UserID()
	key := dedupe.Key{Sender: from, ID: cid}
	h.usersMu.Lock()
	if prev, ok := h.dmDedupe.Get(key); ok {
		h.usersMu.Unlock()
		prev.ID, prev.Duplicate = id, true
		return prev
	}
	now := h.now().UnixMilli()
	mid := "dm-" + strconv.FormatUint(dmCounter.Add(1), 36) + "-" + strconv.FormatInt(now, 36)
	frame := protocol.Encode(protocol.DirectMessage{Type: protocol.TypeDM, MID: mid, From: from, To: to, CID: cid, Text: text, TS: now})
	delivered := 0
	for rc := range h.users[to] {
		rc.Enqueue(frame)
		delivered++
	}
	if to != from {
		for sc := range h.users[from] {
			if sc != c {
				sc.Enqueue(frame)
			}
		}
	}
	ack := protocol.Ack{Type: protocol.TypeAck, ID: id, To: to, CID: cid, MID: mid, TS: now, Delivered: &delivered}
	h.dmDedupe.Put(key, ack)
	h.usersMu.Unlock()
	h.metrics.DirectMessages.Inc()
	h.metrics.Deliveries.Add(float64(delivered))
	return ack
}
