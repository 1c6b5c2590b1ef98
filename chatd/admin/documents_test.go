package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// A cluster of one reports itself alone in the ring.
func TestAdminRingClusterOfOne(t *testing.T) {
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")
	ann.Say("lobby", "c1", "hi")
	var rs admin.RingStatus
	adminJSON(t, srv.AdminAddr, "/admin/ring", &rs)
	if rs.Self != "test-node" || rs.Unknown != 0 || rs.RoomsOwned != 1 || len(rs.Members) != 1 {
		t.Fatalf("ring = %+v", rs)
	}
	m := rs.Members[0]
	if m.Name != "test-node" || m.State != "active" || ringCount(m.RoomsOwned) != 1 || ringCount(m.RoomsReplicated) != 0 ||
		ringCount(m.RoomsLocal) != 1 || m.SameView == nil || !*m.SameView || m.Error != "" {
		t.Fatalf("ring member = %+v", m)
	}
	var rooms admin.Rooms
	adminJSON(t, srv.AdminAddr, "/admin/rooms", &rooms)
	want := []owner.RoomStat{{Room: "lobby", Head: 1, Committed: 1, State: "serving", Nodes: 1, Users: 1}}
	if len(rooms.Rooms) == 1 {
		want[0].Epoch = rooms.Rooms[0].Epoch
	}
	if rooms.Self != "test-node" || !slices.EqualFunc(rooms.Rooms, want, roomStatEqual) || want[0].Epoch == "" {
		t.Fatalf("rooms = %+v, want %+v", rooms, want)
	}
}

// Every node's /admin/ring reports each member's own counts, which add up
// to the rooms that exist, and /admin/rooms reports, for the rooms a node
// owns, their replicas and how many nodes and users have subscribers.
func TestAdminRingAndRooms(t *testing.T) {
	c := chatdtest.StartCluster(t, 3)
	names := []string{"node-0", "node-1", "node-2"}
	const rooms = 18
	ann := chatdtest.Connect(t, c.Nodes[0].URL, "ann") // in every room
	bob := chatdtest.Connect(t, c.Nodes[1].URL, "bob") // in the even ones
	wantOwned := map[string]int{}
	wantReplicated := map[string]int{}
	wantRooms := map[string][]owner.RoomStat{}
	for i := range rooms {
		room := fmt.Sprint("r-", i)
		ann.Join(room)
		ann.Say(room, "c-"+room, "hello")
		ann.NextMessage()
		st := owner.RoomStat{Room: room, Head: 1, Committed: 1, State: "serving", Nodes: 1, Users: 1}
		if i%2 == 0 {
			bob.Join(room)
			st.Nodes, st.Users = 2, 2
		}
		placed := rendezvous.Owners(room, names, 2)
		st.Replicas = placed[1:]
		wantOwned[placed[0]]++
		wantReplicated[placed[1]]++
		wantRooms[placed[0]] = append(wantRooms[placed[0]], st)
	}
	for _, list := range wantRooms {
		slices.SortFunc(list, func(a, b owner.RoomStat) int { return strings.Compare(a.Room, b.Room) })
	}
	wantLocal := map[string]int{"node-0": rooms, "node-1": rooms / 2, "node-2": 0}

	for _, n := range c.Nodes {
		// Presence reaches the owners asynchronously: poll.
		chatdtest.Eventually(t, chatdtest.Timeout, n.Name+" /admin/rooms", func() (bool, string) {
			var got admin.Rooms
			adminJSON(t, n.AdminAddr, "/admin/rooms", &got)
			for i := range got.Rooms {
				if got.Rooms[i].Epoch == "" {
					return false, fmt.Sprintf("room without epoch: %+v", got.Rooms[i])
				}
				got.Rooms[i].Epoch = ""
			}
			if got.Self != n.Name || !slices.EqualFunc(got.Rooms, wantRooms[n.Name], roomStatEqual) {
				return false, fmt.Sprintf("got %+v, want %+v", got, wantRooms[n.Name])
			}
			return true, ""
		})

		var rs admin.RingStatus
		adminJSON(t, n.AdminAddr, "/admin/ring", &rs)
		if rs.Self != n.Name || rs.Unknown != 0 || rs.RoomsOwned != rooms || !slices.Equal(rs.Active, names) || len(rs.Members) != 3 {
			t.Fatalf("%s ring = %+v", n.Name, rs)
		}
		for i, m := range rs.Members {
			if m.Name != names[i] || m.State != "active" || m.Error != "" || m.SameView == nil || !*m.SameView ||
				ringCount(m.RoomsOwned) != wantOwned[m.Name] || ringCount(m.RoomsReplicated) != wantReplicated[m.Name] || ringCount(m.RoomsLocal) != wantLocal[m.Name] {
				t.Errorf("%s ring member %d = %s, want owned %d replicated %d local %d", n.Name, i, ringMemberJSON(m), wantOwned[m.Name], wantReplicated[m.Name], wantLocal[m.Name])
			}
		}
		// A member's own count agrees with its /admin/cluster.
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.OwnedRooms) != wantOwned[n.Name] || len(st.ReplicaRooms) != wantReplicated[n.Name] {
			t.Errorf("%s /admin/cluster owns %d and replicates %d rooms, want %d and %d", n.Name, len(st.OwnedRooms), len(st.ReplicaRooms), wantOwned[n.Name], wantReplicated[n.Name])
		}
	}
}

func roomStatEqual(a, b owner.RoomStat) bool {
	return a.Room == b.Room && a.Epoch == b.Epoch && a.Head == b.Head && a.Committed == b.Committed && a.Pending == b.Pending &&
		a.State == b.State && slices.Equal(a.Replicas, b.Replicas) && a.Nodes == b.Nodes && a.Users == b.Users
}

func ringCount(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}

func ringMemberJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// adminJSON decodes GET path from a node's admin listener at addr.
func adminJSON(t *testing.T, addr, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if code := resp.StatusCode; code != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}
