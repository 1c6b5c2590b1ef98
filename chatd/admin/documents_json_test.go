package admin_test

import (
	"encoding/json"
	"testing"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/owner"
)

// The admin API's documents are read by operators' scripts and by the
// tests of other packages: their JSON names are pinned here, every field
// set, and as a cluster of one and an unanswered member show them.
func TestAdminDocumentsJSON(t *testing.T) {
	one, two, three, yes := 1, 2, 3, true
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"cluster", admin.ClusterStatus{
			Self: "n1", Clustered: true, ViewVersion: 4,
			Members:           []admin.Member{{Name: "n1", State: "active", GossipAddr: "h:1", RPCAddr: "h:2", HTTPAddr: "h:3"}},
			Active:            []string{"n1"},
			ReplicationFactor: 2, ExpectedNodes: 3,
			OwnedRooms: []string{"a"}, ReplicaRooms: []string{"b"},
			LocalRooms: []admin.LocalRoom{{RoomStat: hub.RoomStat{Room: "a", Subscribers: 2, Users: 1, Head: 5}, Owner: "n1", Replicas: []string{"n2"}}},
		}, `{"self":"n1","clustered":true,"view_version":4,` +
			`"members":[{"name":"n1","state":"active","gossip_addr":"h:1","rpc_addr":"h:2","http_addr":"h:3"}],` +
			`"active":["n1"],"replication_factor":2,"expected_nodes":3,"owned_rooms":["a"],"replica_rooms":["b"],` +
			`"local_rooms":[{"room":"a","subscribers":2,"users":1,"head":5,"owner":"n1","replicas":["n2"]}]}`},
		{"cluster of one", admin.ClusterStatus{Self: "n1", Members: []admin.Member{{Name: "n1", State: "active"}}},
			`{"self":"n1","clustered":false,"view_version":0,"members":[{"name":"n1","state":"active"}],"active":null,` +
				`"replication_factor":0,"expected_nodes":0,"owned_rooms":null,"replica_rooms":null,"local_rooms":null}`},
		{"rooms", admin.Rooms{Self: "n1", Rooms: []owner.RoomStat{{Room: "a", Epoch: "ep", Head: 2, Committed: 1, Pending: 1, State: "serving", Replicas: []string{"n2"}, Term: 7, InSync: true, Nodes: 2, Users: 3}}},
			`{"self":"n1","rooms":[{"room":"a","epoch":"ep","head":2,"committed":1,"pending":1,"state":"serving","replicas":["n2"],"term":7,"in_sync":true,"nodes":2,"users":3}]}`},
		{"ring", admin.RingStatus{Self: "n1", ViewVersion: 5, Active: []string{"n1", "n2"}, RoomsOwned: 2, Unknown: 1,
			Members: []admin.RingMember{
				{Name: "n1", State: "active", RoomsOwned: &two, RoomsReplicated: &one, RoomsLocal: &three, SameView: &yes},
				{Name: "n2", State: "joining", Error: "no answer"},
			}},
			`{"self":"n1","view_version":5,"active":["n1","n2"],"members":[` +
				`{"name":"n1","state":"active","rooms_owned":2,"rooms_replicated":1,"rooms_local":3,"same_view":true},` +
				`{"name":"n2","state":"joining","rooms_owned":null,"rooms_replicated":null,"rooms_local":null,"same_view":null,"error":"no answer"}],` +
				`"rooms_owned":2,"unknown":1}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s encodes as\n%s (%v), want\n%s", tc.name, b, err, tc.want)
		}
	}
}
