package cluster

import (
	"cmp"
	"slices"

	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/rpc"
)

// The server API's read-only calls about who is where: every node answers
// for what it holds (the rooms it owns, its own connections), so each one
// is asked (gather), and the nodes that did not answer are named.

// Rooms lists the rooms every live node owns and serves, sorted by name,
// with the node that owns each; unreached names the nodes that did not
// answer (their rooms are missing from the list).
func (n *Node) Rooms(reply func(rooms []OwnedRoom, unreached []string)) {
	local := n.ownedRooms()
	gather(n, rpc.Encode(rpc.OpOwnedRooms, rpc.OwnedRoomsReq{}), func(answers map[string]*rpc.OwnedRoomsResp, unreached []string) {
		out := make([]OwnedRoom, 0, len(local.Rooms))
		add := func(node string, rooms []rpc.RoomSummary) {
			for _, r := range rooms {
				out = append(out, OwnedRoom{RoomSummary: r, Owner: node})
			}
		}
		add(n.cfg.Self, local.Rooms)
		for node, a := range answers {
			add(node, a.Rooms)
		}
		// During a move two nodes may both list a room for a moment; the
		// list keeps one entry per room, the one with the newest head.
		slices.SortFunc(out, func(a, b OwnedRoom) int {
			return cmp.Or(cmp.Compare(a.Room, b.Room), cmp.Compare(b.Head, a.Head))
		})
		out = slices.CompactFunc(out, func(a, b OwnedRoom) bool { return a.Room == b.Room })
		reply(out, unreached)
	})
}

// OwnedRoom is a room in Rooms' list, with the node that owns it.
type OwnedRoom struct {
	rpc.RoomSummary
	Owner string
}

// ownedRooms is this node's answer to OpOwnedRooms: the rooms it serves.
func (n *Node) ownedRooms() rpc.OwnedRoomsResp {
	resp := rpc.OwnedRoomsResp{Rooms: []rpc.RoomSummary{}}
	for _, st := range n.owners.RoomStats() {
		if st.State != "serving" {
			continue
		}
		resp.Rooms = append(resp.Rooms, rpc.RoomSummary{Room: st.Room, Epoch: st.Epoch, Head: st.Committed, Users: st.Users, Nodes: st.Nodes})
	}
	return resp
}

// RoomUsers asks every live node for the users present in room (only its
// owner knows them) and replies with the owner's answer: owner is "" when
// no answering node serves the room (nobody is in it, or its owner did
// not answer: then unreached is not empty).
func (n *Node) RoomUsers(room string, limit int, reply func(owner string, count int, users []string, unreached []string)) {
	if ok, count, users := n.owners.Present(room, limit); ok {
		reply(n.cfg.Self, count, users, nil)
		return
	}
	gather(n, rpc.Encode(rpc.OpRoomUsers, rpc.RoomUsersReq{Room: room, Limit: limit}), func(answers map[string]*rpc.RoomUsersResp, unreached []string) {
		for node, a := range answers {
			if a.Owner {
				reply(node, a.Count, a.Users, unreached)
				return
			}
		}
		reply("", 0, nil, unreached)
	})
}

// UserConnection is one connection of a user, on the node that holds it.
type UserConnection struct {
	Node string
	rpc.ConnSummary
}

// UserConnections lists user's connections on every live node, sorted by
// node then session.
func (n *Node) UserConnections(user string, reply func(conns []UserConnection, unreached []string)) {
	local := localConns(n.hub.UserConnections(user))
	gather(n, rpc.Encode(rpc.OpUserConns, rpc.UserConnsReq{User: user}), func(answers map[string]*rpc.UserConnsResp, unreached []string) {
		var out []UserConnection
		for _, c := range local.Connections {
			out = append(out, UserConnection{Node: n.cfg.Self, ConnSummary: c})
		}
		for node, a := range answers {
			for _, c := range a.Connections {
				out = append(out, UserConnection{Node: node, ConnSummary: c})
			}
		}
		slices.SortFunc(out, func(a, b UserConnection) int {
			return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Session, b.Session))
		})
		reply(out, unreached)
	})
}

// localConns is this node's answer to OpUserConns.
func localConns(conns []hub.ConnInfo) rpc.UserConnsResp {
	resp := rpc.UserConnsResp{Connections: make([]rpc.ConnSummary, 0, len(conns))}
	for _, c := range conns {
		resp.Connections = append(resp.Connections, rpc.ConnSummary{Session: c.Session, Transport: c.Transport, Rooms: c.Rooms})
	}
	return resp
}
