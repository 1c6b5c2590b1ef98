package cluster_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/cluster"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/ring"
)

var adminPaths = []string{"/admin/cluster", "/admin/ring", "/admin/rooms"}

func TestAdminBearerToken(t *testing.T) {
	const token = "s3cret-admin-token"
	srv := chatdtest.Start(t, "--admin-token", token)
	refused := map[string]string{
		"none":            "",
		"wrong token":     "Bearer not-the-token",
		"token prefix":    "Bearer " + token[:5],
		"token and more":  "Bearer " + token + "x",
		"another scheme":  "Basic " + token,
		"no scheme":       token,
		"scheme only":     "Bearer",
		"empty token":     "Bearer ",
		"token as scheme": token + " " + token,
	}
	for _, path := range append(adminPaths, "/admin/nope") {
		for name, auth := range refused {
			code, hdr, body := adminGet(t, srv.Addr, path, auth)
			if code != http.StatusUnauthorized {
				t.Errorf("%s with %s: status %d, want 401", path, name, code)
				continue
			}
			if got := hdr.Get("WWW-Authenticate"); got != `Bearer realm="chatd admin"` {
				t.Errorf("%s with %s: WWW-Authenticate %q", path, name, got)
			}
			if !strings.Contains(string(body), "missing or wrong bearer token") || strings.Contains(string(body), token) {
				t.Errorf("%s with %s: body %q", path, name, body)
			}
		}
		want := http.StatusOK
		if path == "/admin/nope" {
			want = http.StatusNotFound // only once authenticated
		}
		for _, auth := range []string{"Bearer " + token, "bearer " + token, "BEARER  " + token} {
			if code, hdr, body := adminGet(t, srv.Addr, path, auth); code != want {
				t.Errorf("%s with %q: status %d (%s), want %d", path, auth, code, body, want)
			} else if want == http.StatusOK && hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%s: Content-Type %q", path, hdr.Get("Content-Type"))
			}
		}
	}

	// Without a token the API is open; a header, right or wrong, is
	// ignored.
	open := chatdtest.Start(t)
	for _, path := range adminPaths {
		for _, auth := range []string{"", "Bearer anything"} {
			if code, _, body := adminGet(t, open.Addr, path, auth); code != http.StatusOK {
				t.Errorf("open %s with %q: status %d (%s)", path, auth, code, body)
			}
		}
	}
	if code, _, _ := adminGet(t, open.Addr, "/admin/nope", ""); code != http.StatusNotFound {
		t.Errorf("open /admin/nope: status %d, want 404", code)
	}
}

// A cluster of one reports itself alone in the ring.
func TestAdminRingClusterOfOne(t *testing.T) {
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")
	ann.Say("lobby", "c1", "hi")
	var rs cluster.RingStatus
	adminJSON(t, srv.Addr, "/admin/ring", &rs)
	if rs.Self != "test-node" || rs.Unknown != 0 || rs.RoomsOwned != 1 || len(rs.Members) != 1 {
		t.Fatalf("ring = %+v", rs)
	}
	m := rs.Members[0]
	if m.Name != "test-node" || m.State != "active" || ringCount(m.RoomsOwned) != 1 || ringCount(m.RoomsReplicated) != 0 ||
		ringCount(m.RoomsLocal) != 1 || m.SameView == nil || !*m.SameView || m.Error != "" {
		t.Fatalf("ring member = %+v", m)
	}
	var rooms cluster.AdminRooms
	adminJSON(t, srv.Addr, "/admin/rooms", &rooms)
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
		placed := ring.Owners(room, names, 2)
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
			var got cluster.AdminRooms
			adminJSON(t, n.Addr, "/admin/rooms", &got)
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

		var rs cluster.RingStatus
		adminJSON(t, n.Addr, "/admin/ring", &rs)
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

// adminGet sends GET path to a node, with auth as the Authorization header
// when it is not empty.
func adminGet(t *testing.T, addr, path, auth string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header, body
}

func adminJSON(t *testing.T, addr, path string, v any) {
	t.Helper()
	code, _, body := adminGet(t, addr, path, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}
