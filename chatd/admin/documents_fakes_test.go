package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rendezvous"
	"github.com/ringchat/ringchat/chatd/rpc"
)

// fakeNode is an admin.Node whose members answer from a table: a missing
// member never answers.
type fakeNode struct {
	answers map[string]rpc.RingStats
	errs    map[string]error
}

func (fakeNode) Self() string { return "n1" }
func (fakeNode) RoutingView() (uint64, string, []string) {
	return 7, "view-a", []string{"n1", "n2", "n3"}
}
func (fakeNode) ReplicationFactor() int { return 2 }
func (fakeNode) ExpectedNodes() int     { return 3 }
func (f fakeNode) RingStats(name, _ string, _ time.Duration, done func(rpc.RingStats, error)) {
	if err := f.errs[name]; err != nil {
		done(rpc.RingStats{}, err)
	} else if rs, ok := f.answers[name]; ok {
		go done(rs, nil)
	}
}

type fakeOwners struct{}

func (fakeOwners) OwnedRooms() []string        { return []string{"b", "a"} }
func (fakeOwners) ReplicaRooms() []string      { return []string{"d", "c"} }
func (fakeOwners) RoomStats() []owner.RoomStat { return []owner.RoomStat{{Room: "a"}} }

type fakeHub []hub.RoomStat

func (h fakeHub) Stats() []hub.RoomStat { return h }

type fakeMembers []string

func (m fakeMembers) View() membership.View {
	v := membership.View{Self: "n1", Version: 9}
	for _, name := range m {
		v.Members = append(v.Members, membership.Member{Name: name, GossipAddr: name + ":1", Meta: membership.Meta{RPCAddr: name + ":2", State: membership.StateActive}})
	}
	return v
}

// Each member is reported as it answered: counts from the ones that did,
// an error for the ones that failed or did not answer before the request
// ended, and whether each routes by the same view.
func TestRingReportsEveryMember(t *testing.T) {
	node := fakeNode{
		answers: map[string]rpc.RingStats{"n1": {Owned: 2, Replicas: 1, Local: 3, View: "view-a"}, "n2": {Owned: 1, View: "view-b"}},
		errs:    map[string]error{"n3": errors.New("unreachable")},
	}
	docs := admin.Documents{Node: node, Owners: fakeOwners{}, Hub: fakeHub{}, Members: fakeMembers{"n1", "n2", "n3", "n4"}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond) // n4 never answers
	defer cancel()
	got, _ := json.Marshal(docs.Ring(ctx))
	want := `{"self":"n1","view_version":7,"active":["n1","n2","n3"],"members":[` +
		`{"name":"n1","state":"active","rooms_owned":2,"rooms_replicated":1,"rooms_local":3,"same_view":true},` +
		`{"name":"n2","state":"active","rooms_owned":1,"rooms_replicated":0,"rooms_local":0,"same_view":false},` +
		`{"name":"n3","state":"active","rooms_owned":null,"rooms_replicated":null,"rooms_local":null,"same_view":null,"error":"unreachable"},` +
		`{"name":"n4","state":"active","rooms_owned":null,"rooms_replicated":null,"rooms_local":null,"same_view":null,"error":"no answer: context deadline exceeded"}],` +
		`"rooms_owned":3,"unknown":2}`
	if string(got) != want {
		t.Errorf("ring\n%s, want\n%s", got, want)
	}
}

// /admin/cluster sorts what it lists and places each local room by the
// node's view; without membership the node is a cluster of one.
func TestClusterPlacesLocalRooms(t *testing.T) {
	docs := admin.Documents{Node: fakeNode{}, Owners: fakeOwners{}, Hub: fakeHub{{Room: "y"}, {Room: "x"}}, Members: fakeMembers{"n1", "n2"}}
	st := docs.Cluster()
	if !st.Clustered || st.ViewVersion != 7 || st.ExpectedNodes != 3 || len(st.Members) != 2 || st.Members[1].RPCAddr != "n2:2" ||
		st.OwnedRooms[0] != "a" || st.ReplicaRooms[0] != "c" || len(st.LocalRooms) != 2 || st.LocalRooms[0].Room != "x" {
		t.Fatalf("cluster = %+v", st)
	}
	for _, lr := range st.LocalRooms {
		placed := rendezvous.Owners(lr.Room, []string{"n1", "n2", "n3"}, 2)
		if lr.Owner != placed[0] || len(lr.Replicas) != 1 || lr.Replicas[0] != placed[1] {
			t.Errorf("room %s placed on %s %v, want %v", lr.Room, lr.Owner, lr.Replicas, placed)
		}
	}
	docs.Members = nil
	if st := docs.Cluster(); st.Clustered || len(st.Members) != 1 || st.Members[0] != (admin.Member{Name: "n1", State: "active"}) {
		t.Fatalf("cluster of one = %+v", st)
	}
	if rooms := docs.Rooms(); rooms.Self != "n1" || len(rooms.Rooms) != 1 {
		t.Fatalf("rooms = %+v", rooms)
	}
}
