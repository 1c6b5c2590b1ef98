package hub

import (
	"slices"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Closer is a Conn the server can close on a backend's order (a WebSocket
// session, a Socket.IO socket). It is not part of Conn so that test fakes
// and future connection kinds need not implement it: a Conn that is not a
// Closer is not counted as disconnected.
type Closer interface {
	// Close closes the connection with a close code and reason (a
	// protocol.Close* code); it must not block. The hub calls it without
	// holding any of its locks, so it may leave rooms on the spot.
	Close(code int, reason string)
}

// DisconnectUser closes every connection of user on this node with code
// and reason, and returns how many it closed. The connections leave their
// rooms and unregister themselves as they end, as on any close, so
// presence is updated the usual way.
func (h *Hub) DisconnectUser(user string, code int, reason string) int {
	// A copy: Close may end a connection on another goroutine, which
	// unregisters it under usersMu.
	h.usersMu.RLock()
	conns := slices.Clone(h.users[user])
	h.usersMu.RUnlock()
	closed := 0
	for _, c := range conns {
		if cl, ok := c.(Closer); ok {
			cl.Close(code, reason)
			closed++
		}
	}
	return closed
}

// Evictable is a Conn that keeps its own list of joined rooms (to enforce
// its room limit and to leave them when it ends), which must forget a room
// the server made it leave. Like Closer, it is optional.
type Evictable interface {
	// Evicted forgets room; it must not block or call into the hub.
	Evicted(room string)
}

// Kick makes every connection of user on this node leave room, as if each
// had sent a leave: it stops getting the room's traffic, presence tells the
// others once the user's last connection here is gone, and the connection
// gets a left frame without id and with reason. It returns how many
// connections it made leave. Nothing stops them from joining again (a ban
// does that).
func (h *Hub) Kick(room, user, reason string) int {
	h.usersMu.RLock()
	conns := slices.Clone(h.users[user])
	h.usersMu.RUnlock()
	frame := protocol.Encode(protocol.Left{Type: protocol.TypeLeft, Room: room, Reason: reason})
	kicked := 0
	for _, c := range conns {
		if !h.Leave(c, room) {
			continue
		}
		if e, ok := c.(Evictable); ok {
			e.Evicted(room)
		}
		c.Enqueue(frame)
		kicked++
	}
	return kicked
}

// Gate decides whether a user may join (or resume) a room, or send to it:
// the node's bans and mutes (chatd/moderation).
type Gate interface {
	// Refuse returns the error frame that refuses user's join of room
	// (send false) or send to it (send true), or nil to let it through.
	// It must not block.
	Refuse(user, room string, send bool) *protocol.Error
}

// SetGate installs g before the hub serves connections (it is read
// without a lock).
func (h *Hub) SetGate(g Gate) { h.gate = g }

// refused queues the gate's refusal of a join or a send to c, if any, and
// reports whether there was one.
func (h *Hub) refused(c Conn, id, room string, send bool) bool {
	if h.gate == nil {
		return false
	}
	e := h.gate.Refuse(c.UserID(), room, send)
	if e == nil {
		return false
	}
	e.ID, e.Room = id, room
	h.metrics.ErrorFrames.WithLabelValues(e.Code).Inc()
	c.Enqueue(protocol.Encode(e))
	return true
}

// Enrollable is a Conn that keeps its own list of joined rooms (like
// Evictable) and can be joined to a room by the server. Like Closer it is
// optional: a Conn without it is never joined by the server.
type Enrollable interface {
	// Enroll adds room to the connection's rooms, unless it has joined
	// as many rooms as it may (ok false); already reports a room it had
	// joined (or was joining). It must not block or call into the hub.
	Enroll(room string) (ok, already bool)
	// Evicted forgets room again when the server's join fails.
	Evicted(room string)
}

// SubscribeUser joins every connection of user on this node to room, as
// if each had sent a join: each gets a joined frame without id, then the
// room's traffic, and the room counts the user present. Nothing happens
// when the node's gate refuses the user the room (a ban). A connection
// at its room limit, or already in the room, is left as it is. It returns
// how many connections it joined.
func (h *Hub) SubscribeUser(room, user string) int {
	if h.gate != nil && h.gate.Refuse(user, room, false) != nil {
		return 0
	}
	h.usersMu.RLock()
	conns := slices.Clone(h.users[user])
	h.usersMu.RUnlock()
	joined := 0
	for _, c := range conns {
		e, ok := c.(Enrollable)
		if !ok {
			continue
		}
		if ok, already := e.Enroll(room); !ok || already {
			continue
		}
		h.Join(c, JoinRequest{Room: room, OnFail: func() { e.Evicted(room) }})
		joined++
	}
	return joined
}
