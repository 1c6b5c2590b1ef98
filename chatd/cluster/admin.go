package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rendezvous"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// The admin API's documents are built here: GET /admin/cluster (Status),
// /admin/ring (Ring) and /admin/rooms (Rooms). chatd/admin serves them on
// the admin listener, behind its token.

// AdminMember is one member as the admin API shows it.
type AdminMember struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	GossipAddr string `json:"gossip_addr,omitempty"`
	RPCAddr    string `json:"rpc_addr,omitempty"`
	HTTPAddr   string `json:"http_addr,omitempty"`
}

// AdminRoom is a room this node knows, with its placement.
type AdminRoom struct {
	hub.RoomStat
	Owner    string   `json:"owner"`
	Replicas []string `json:"replicas,omitempty"`
}

// AdminStatus is the body of GET /admin/cluster.
type AdminStatus struct {
	Self              string        `json:"self"`
	Clustered         bool          `json:"clustered"`
	ViewVersion       uint64        `json:"view_version"`
	Members           []AdminMember `json:"members"`
	Active            []string      `json:"active"`
	ReplicationFactor int           `json:"replication_factor"`
	// ExpectedNodes is the cluster size the quorum rule applies (0: none).
	ExpectedNodes int         `json:"expected_nodes"`
	OwnedRooms    []string    `json:"owned_rooms"`
	ReplicaRooms  []string    `json:"replica_rooms"`
	LocalRooms    []AdminRoom `json:"local_rooms"`
}

// Status reports this node's view of the cluster and its rooms.
func (n *Node) Status(m *membership.Membership) AdminStatus {
	v, _ := n.currentView()
	st := AdminStatus{
		Self:              n.cfg.Self,
		Clustered:         m != nil,
		ViewVersion:       v.version,
		Active:            slices.Clone(v.active),
		ReplicationFactor: n.cfg.ReplicationFactor,
		ExpectedNodes:     n.ExpectedNodes(),
		OwnedRooms:        n.owners.OwnedRooms(),
		ReplicaRooms:      n.owners.ReplicaRooms(),
	}
	if m != nil {
		for _, mem := range m.View().Members {
			st.Members = append(st.Members, AdminMember{Name: mem.Name, State: string(mem.Meta.State), GossipAddr: mem.GossipAddr, RPCAddr: mem.Meta.RPCAddr, HTTPAddr: mem.Meta.HTTPAddr})
		}
	} else {
		st.Members = []AdminMember{{Name: n.cfg.Self, State: "active"}}
	}
	for _, rs := range n.hub.Stats() {
		owners := rendezvous.Owners(rs.Room, v.active, max(n.cfg.ReplicationFactor, 1))
		ar := AdminRoom{RoomStat: rs}
		if len(owners) > 0 {
			ar.Owner, ar.Replicas = owners[0], owners[1:]
		}
		st.LocalRooms = append(st.LocalRooms, ar)
	}
	slices.Sort(st.OwnedRooms)
	slices.Sort(st.ReplicaRooms)
	slices.SortFunc(st.LocalRooms, func(a, b AdminRoom) int { return strings.Compare(a.Room, b.Room) })
	return st
}

// AdminRooms is the body of GET /admin/rooms: the rooms this node owns, as
// its owner service holds them.
type AdminRooms struct {
	Self  string           `json:"self"`
	Rooms []owner.RoomStat `json:"rooms"`
}

// Rooms reports the rooms this node owns, as its owner service holds them
// (no network involved).
func (n *Node) Rooms() AdminRooms {
	return AdminRooms{Self: n.cfg.Self, Rooms: n.owners.RoomStats()}
}

// RingTimeout bounds how long GET /admin/ring waits for each member's
// answer; members that have not answered by then are reported unknown.
const RingTimeout = 2 * time.Second

// RingMember is one member in GET /admin/ring, with the counts it reported
// about itself. The counts and SameView are nil when it did not answer in
// time (Error says why).
type RingMember struct {
	Name  string `json:"name"`
	State string `json:"state"`
	// RoomsOwned, RoomsReplicated and RoomsLocal count the rooms the member
	// owns, keeps a replica of, and has subscribers in.
	RoomsOwned      *int `json:"rooms_owned"`
	RoomsReplicated *int `json:"rooms_replicated"`
	RoomsLocal      *int `json:"rooms_local"`
	// SameView is whether the member's active members are this node's, so
	// that both compute the same owner for every room.
	SameView *bool  `json:"same_view"`
	Error    string `json:"error,omitempty"`
}

// RingStatus is the body of GET /admin/ring.
type RingStatus struct {
	Self        string       `json:"self"`
	ViewVersion uint64       `json:"view_version"`
	Active      []string     `json:"active"`
	Members     []RingMember `json:"members"`
	// RoomsOwned sums the rooms_owned of the members that answered;
	// Unknown counts the members that did not.
	RoomsOwned int `json:"rooms_owned"`
	Unknown    int `json:"unknown"`
}

// Ring asks every live member (this node included) how many rooms it owns,
// replicates and serves locally, over the inter-node transport and in
// parallel, waiting at most RingTimeout (or until ctx ends).
func (n *Node) Ring(ctx context.Context, m *membership.Membership) RingStatus {
	v, _ := n.currentView()
	st := RingStatus{Self: n.cfg.Self, ViewVersion: v.version, Active: slices.Clone(v.active)}
	type member struct {
		name, state, addr string
	}
	var members []member
	if m != nil {
		for _, mem := range m.View().Members {
			members = append(members, member{mem.Name, string(mem.Meta.State), mem.Meta.RPCAddr})
		}
	} else {
		members = []member{{name: n.cfg.Self, state: "active"}}
	}
	type answer struct {
		i    int
		resp rpc.RingStats
		err  error
	}
	answers := make(chan answer, len(members)) // callbacks never block
	st.Members = make([]RingMember, len(members))
	for i, mem := range members {
		st.Members[i] = RingMember{Name: mem.name, State: mem.state}
		switch {
		case mem.name == n.cfg.Self:
			answers <- answer{i: i, resp: n.ringStats()}
		case n.peers == nil:
			answers <- answer{i: i, err: errors.New("no inter-node transport")}
		case mem.addr == "":
			answers <- answer{i: i, err: errors.New("no inter-node address in its gossip metadata")}
		default:
			n.peers.Request(transport.Peer{Name: mem.name, Addr: mem.addr}, rpc.Bare(rpc.OpRingStats), RingTimeout, func(b []byte, err error) {
				a := answer{i: i, err: err}
				if err == nil {
					if err := json.Unmarshal(b, &a.resp); err != nil {
						a.err = fmt.Errorf("bad answer: %w", err)
					}
				}
				answers <- a
			})
		}
	}
	pending := make([]bool, len(members))
	for i := range pending {
		pending[i] = true
	}
	for range members {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			for i, p := range pending {
				if p {
					st.Members[i].Error = "no answer: " + ctx.Err().Error()
					st.Unknown++
				}
			}
			return st
		}
		pending[a.i] = false
		rm := &st.Members[a.i]
		if a.err != nil {
			rm.Error = a.err.Error()
			st.Unknown++
			continue
		}
		same := a.resp.View == v.id
		rm.RoomsOwned, rm.RoomsReplicated, rm.RoomsLocal, rm.SameView = &a.resp.Owned, &a.resp.Replicas, &a.resp.Local, &same
		st.RoomsOwned += a.resp.Owned
	}
	return st
}
