package hub

import (
	"cmp"
	"slices"
)

// Transports of ConnInfo: what kind of client a connection is.
const (
	TransportWebSocket = "websocket"
	TransportSocketIO  = "socketio"
	TransportSystem    = "system"
)

// Described is a Conn that says which transport it speaks (ConnInfo's
// Transport). Like Closer it is optional; a Conn without it is listed as
// a WebSocket connection.
type Described interface {
	Transport() string
}

// ConnInfo describes one of this node's connections, for the server API.
type ConnInfo struct {
	Session   string
	Transport string
	// Rooms are the rooms the connection has joined (or is joining),
	// sorted.
	Rooms []string
}

// UserConnections lists user's connections on this node, sorted by
// session, with the rooms each one is in.
func (h *Hub) UserConnections(user string) []ConnInfo {
	h.usersMu.RLock()
	conns := slices.Clone(h.users[user])
	h.usersMu.RUnlock()
	if len(conns) == 0 {
		return nil
	}
	out := make([]ConnInfo, len(conns))
	at := make(map[Conn]int, len(conns))
	for i, c := range conns {
		transport := TransportWebSocket
		if d, ok := c.(Described); ok {
			transport = d.Transport()
		}
		out[i] = ConnInfo{Session: c.SessionID(), Transport: transport, Rooms: []string{}}
		at[c] = i
	}
	h.mu.RLock()
	rooms := make([]*room, 0, len(h.rooms))
	for _, r := range h.rooms {
		rooms = append(rooms, r)
	}
	h.mu.RUnlock()
	for _, r := range rooms {
		r.mu.Lock()
		for c, i := range at {
			if _, in := r.index[c]; in || r.isWaiting(c) {
				out[i].Rooms = append(out[i].Rooms, r.name)
			}
		}
		r.mu.Unlock()
	}
	for i := range out {
		slices.Sort(out[i].Rooms)
	}
	slices.SortFunc(out, func(a, b ConnInfo) int { return cmp.Compare(a.Session, b.Session) })
	return out
}

// isWaiting reports whether c has a join of r still waiting. Callers hold
// r.mu.
func (r *room) isWaiting(c Conn) bool {
	for _, w := range r.waiting {
		if w.c == c {
			return true
		}
	}
	return false
}
