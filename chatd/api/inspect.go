package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Inspector answers the API's read-only questions about who is where. It
// asks every live node (each answers for the rooms it owns and its own
// connections); unreached names the nodes that did not answer, whose part
// is then missing from the answer. chatd's app adapts the cluster node to
// it.
type Inspector interface {
	// Rooms lists the rooms the live nodes own and serve, sorted by name.
	Rooms(reply func(rooms []RoomInfo, unreached []string))
	// Presence answers the users present in room, from its owner: owner
	// is "" when no answering node serves it (nobody is in it, or its
	// owner is among unreached). users holds the first limit by name.
	Presence(room string, limit int, reply func(owner string, count int, users []string, unreached []string))
	// Connections lists user's connections on every live node, sorted by
	// node, then session.
	Connections(user string, reply func(conns []Connection, unreached []string))
}

// RoomInfo is one room in GET /api/v1/rooms.
type RoomInfo struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	// Head is the newest sequence number acknowledged in the room.
	Head uint64 `json:"head"`
	// Users counts the distinct users present (on every node), Nodes the
	// nodes where they are connected.
	Users int `json:"users"`
	Nodes int `json:"nodes"`
	// Owner is the node that owns the room (orders, stores and fans out
	// its messages).
	Owner string `json:"owner"`
}

// RoomList answers GET /api/v1/rooms.
type RoomList struct {
	// Rooms are the rooms held in memory by their owners (rooms someone
	// is in, or was in within --room-idle-ttl), sorted by name; the
	// server's own rooms (#moderation) are left out.
	Rooms []RoomInfo `json:"rooms"`
	// Unreached names the nodes that did not answer: their rooms are
	// missing (empty when every node answered).
	Unreached []string `json:"unreached"`
}

// Presence answers GET /api/v1/rooms/{room}/presence.
type Presence struct {
	Room string `json:"room"`
	// Owner is the node that serves the room; absent when none of the
	// answering nodes does (nobody is in it).
	Owner string `json:"owner,omitempty"`
	// Count is the number of distinct users present.
	Count int `json:"count"`
	// Users are the first limit of them by name.
	Users []string `json:"users"`
	// Truncated is true when Count exceeds the users listed.
	Truncated bool `json:"truncated"`
	// Unreached names the nodes that did not answer (the room's owner may
	// be among them).
	Unreached []string `json:"unreached"`
}

// Connection is one connection of a user.
type Connection struct {
	// Node is the node the connection is on.
	Node string `json:"node"`
	// Session is its session id (as in that node's logs).
	Session string `json:"session"`
	// Transport is "websocket" (the native protocol) or "socketio".
	Transport string `json:"transport"`
	// Rooms are the rooms it has joined, sorted.
	Rooms []string `json:"rooms"`
}

// ConnectionList answers GET /api/v1/users/{user}/connections.
type ConnectionList struct {
	User        string       `json:"user"`
	Connections []Connection `json:"connections"`
	// Unreached names the nodes that did not answer: their connections
	// of the user are missing.
	Unreached []string `json:"unreached"`
}

// Presence limits: the users a presence answer lists by default and at
// most (a room may hold far more; Count is always whole).
const (
	DefaultPresenceLimit = 1000
	MaxPresenceLimit     = 10000
)

func (h *handler) listRooms(w http.ResponseWriter, r *http.Request) {
	if !onlyParams(w, r) {
		return
	}
	type answer struct {
		rooms     []RoomInfo
		unreached []string
	}
	ch := make(chan answer, 1)
	h.cfg.Inspector.Rooms(func(rooms []RoomInfo, unreached []string) { ch <- answer{rooms, unreached} })
	a, ok := wait(h, w, r, ch)
	if !ok {
		return
	}
	list := RoomList{Rooms: []RoomInfo{}, Unreached: nonNil(a.unreached)}
	for _, room := range a.rooms {
		// The server's own rooms (#moderation) have names no client can
		// use, and are not listed.
		if protocol.ValidateRoom(room.Room) == nil {
			list.Rooms = append(list.Rooms, room)
		}
	}
	writeJSON(w, http.StatusOK, list)
}

func (h *handler) presence(w http.ResponseWriter, r *http.Request) {
	room, ok := pathRoom(w, r)
	if !ok || !onlyParams(w, r, "limit") {
		return
	}
	limit := DefaultPresenceLimit
	if s := r.URL.Query().Get("limit"); s != "" || r.URL.Query().Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPresenceLimit {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: "limit", Message: fmt.Sprintf("limit: want a whole number from 1 to %d", MaxPresenceLimit)})
			return
		}
		limit = n
	}
	type answer struct {
		owner     string
		count     int
		users     []string
		unreached []string
	}
	ch := make(chan answer, 1)
	h.cfg.Inspector.Presence(room, limit, func(owner string, count int, users []string, unreached []string) {
		ch <- answer{owner, count, users, unreached}
	})
	a, ok := wait(h, w, r, ch)
	if !ok {
		return
	}
	p := Presence{Room: room, Owner: a.owner, Count: a.count, Users: a.users, Truncated: a.count > len(a.users), Unreached: nonNil(a.unreached)}
	if p.Users == nil {
		p.Users = []string{}
	}
	writeJSON(w, http.StatusOK, p)
}

func (h *handler) connections(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	if e := checkUser(user, "user"); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	if !onlyParams(w, r) {
		return
	}
	type answer struct {
		conns     []Connection
		unreached []string
	}
	ch := make(chan answer, 1)
	h.cfg.Inspector.Connections(user, func(conns []Connection, unreached []string) { ch <- answer{conns, unreached} })
	a, ok := wait(h, w, r, ch)
	if !ok {
		return
	}
	list := ConnectionList{User: user, Connections: a.conns, Unreached: nonNil(a.unreached)}
	if list.Connections == nil {
		list.Connections = []Connection{}
	}
	writeJSON(w, http.StatusOK, list)
}

// wait waits for an inspection's answer, at most the API's timeout (the
// nodes answer within the inter-node call timeout, so this bounds a
// broken node only), or until the caller goes away.
func wait[T any](h *handler, w http.ResponseWriter, r *http.Request, ch <-chan T) (T, bool) {
	var zero T
	select {
	case a := <-ch:
		return a, true
	case <-r.Context().Done():
		return zero, false
	case <-time.After(h.cfg.Timeout):
		e := &Error{Code: CodeUnavailable, Message: "the nodes did not answer in time; retry"}
		writeError(w, statusOf(e), e)
		return zero, false
	}
}

// nonNil makes a nil list an empty one, which JSON shows as [].
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
