package admin

import (
	"context"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/rpc"
)

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
func (d Documents) Ring(ctx context.Context) RingStatus {
	version, id, active := d.Node.RoutingView()
	self := d.Node.Self()
	st := RingStatus{Self: self, ViewVersion: version, Active: slices.Clone(active)}
	type member struct {
		name, state, addr string
	}
	var members []member
	if d.Members != nil {
		for _, mem := range d.Members.View().Members {
			members = append(members, member{mem.Name, string(mem.Meta.State), mem.Meta.RPCAddr})
		}
	} else {
		members = []member{{name: self, state: "active"}}
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
		d.Node.RingStats(mem.name, mem.addr, RingTimeout, func(resp rpc.RingStats, err error) {
			answers <- answer{i: i, resp: resp, err: err}
		})
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
		same := a.resp.View == id
		rm.RoomsOwned, rm.RoomsReplicated, rm.RoomsLocal, rm.SameView = &a.resp.Owned, &a.resp.Replicas, &a.resp.Local, &same
		st.RoomsOwned += a.resp.Owned
	}
	return st
}
