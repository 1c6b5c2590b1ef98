package admin

import (
	"slices"
	"strings"

	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// Member is one member as GET /admin/cluster shows it.
type Member struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	GossipAddr string `json:"gossip_addr,omitempty"`
	RPCAddr    string `json:"rpc_addr,omitempty"`
	HTTPAddr   string `json:"http_addr,omitempty"`
}

// LocalRoom is a room with subscribers on this node, with its placement in
// this node's view.
type LocalRoom struct {
	hub.RoomStat
	Owner    string   `json:"owner"`
	Replicas []string `json:"replicas,omitempty"`
}

// ClusterStatus is the body of GET /admin/cluster.
type ClusterStatus struct {
	Self              string   `json:"self"`
	Clustered         bool     `json:"clustered"`
	ViewVersion       uint64   `json:"view_version"`
	Members           []Member `json:"members"`
	Active            []string `json:"active"`
	ReplicationFactor int      `json:"replication_factor"`
	// ExpectedNodes is the cluster size the quorum rule applies (0: none).
	ExpectedNodes int         `json:"expected_nodes"`
	OwnedRooms    []string    `json:"owned_rooms"`
	ReplicaRooms  []string    `json:"replica_rooms"`
	LocalRooms    []LocalRoom `json:"local_rooms"`
}

// Cluster reports this node's view of the cluster and its rooms.
func (d Documents) Cluster() ClusterStatus {
	version, _, active := d.Node.RoutingView()
	factor := d.Node.ReplicationFactor()
	st := ClusterStatus{
		Self:              d.Node.Self(),
		Clustered:         d.Members != nil,
		ViewVersion:       version,
		Active:            slices.Clone(active),
		ReplicationFactor: factor,
		ExpectedNodes:     d.Node.ExpectedNodes(),
		OwnedRooms:        d.Owners.OwnedRooms(),
		ReplicaRooms:      d.Owners.ReplicaRooms(),
	}
	if d.Members != nil {
		for _, mem := range d.Members.View().Members {
			st.Members = append(st.Members, Member{Name: mem.Name, State: string(mem.Meta.State), GossipAddr: mem.GossipAddr, RPCAddr: mem.Meta.RPCAddr, HTTPAddr: mem.Meta.HTTPAddr})
		}
	} else {
		st.Members = []Member{{Name: st.Self, State: "active"}}
	}
	for _, rs := range d.Hub.Stats() {
		// The placement rendezvous hashing gives in this view, as
		// chatd/cluster routes: the owner, then the replicas.
		owners := rendezvous.Owners(rs.Room, active, max(factor, 1))
		lr := LocalRoom{RoomStat: rs}
		if len(owners) > 0 {
			lr.Owner, lr.Replicas = owners[0], owners[1:]
		}
		st.LocalRooms = append(st.LocalRooms, lr)
	}
	slices.Sort(st.OwnedRooms)
	slices.Sort(st.ReplicaRooms)
	slices.SortFunc(st.LocalRooms, func(a, b LocalRoom) int { return strings.Compare(a.Room, b.Room) })
	return st
}

// Rooms is the body of GET /admin/rooms: the rooms this node owns, as its
// owner service holds them.
type Rooms struct {
	Self  string           `json:"self"`
	Rooms []owner.RoomStat `json:"rooms"`
}

// Rooms reports the rooms this node owns (no network involved).
func (d Documents) Rooms() Rooms {
	return Rooms{Self: d.Node.Self(), Rooms: d.Owners.RoomStats()}
}
