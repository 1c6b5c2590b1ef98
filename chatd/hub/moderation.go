package hub

import "slices"

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
