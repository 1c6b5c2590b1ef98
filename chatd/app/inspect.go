package app

import (
	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/cluster"
)

// inspector adapts the cluster node's answers about rooms, presence and
// connections to the server API's types (api.Inspector), so that neither
// package imports the other.
type inspector struct{ node *cluster.Node }

func (i inspector) Rooms(reply func([]api.RoomInfo, []string)) {
	i.node.Rooms(func(rooms []cluster.OwnedRoom, unreached []string) {
		out := make([]api.RoomInfo, len(rooms))
		for k, r := range rooms {
			out[k] = api.RoomInfo{Room: r.Room, Epoch: r.Epoch, Head: r.Head, Users: r.Users, Nodes: r.Nodes, Owner: r.Owner}
		}
		reply(out, unreached)
	})
}

func (i inspector) Presence(room string, limit int, reply func(string, int, []string, []string)) {
	i.node.RoomUsers(room, limit, reply)
}

func (i inspector) Connections(user string, reply func([]api.Connection, []string)) {
	i.node.UserConnections(user, func(conns []cluster.UserConnection, unreached []string) {
		out := make([]api.Connection, len(conns))
		for k, c := range conns {
			out[k] = api.Connection{Node: c.Node, Session: c.Session, Transport: c.Transport, Rooms: c.Rooms}
		}
		reply(out, unreached)
	})
}
