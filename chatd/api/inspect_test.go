package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

func rooms(t *testing.T, s *chatdtest.Server) api.RoomList {
	t.Helper()
	r := call(t, http.MethodGet, adminBase(s), "/api/v1/rooms", keyA, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/rooms: %d %s", r.status, r.body)
	}
	var list api.RoomList
	r.decode(t, &list)
	return list
}

func presence(t *testing.T, s *chatdtest.Server, room, query string) api.Presence {
	t.Helper()
	r := call(t, http.MethodGet, adminBase(s), "/api/v1/rooms/"+url.PathEscape(room)+"/presence"+query, keyA, nil)
	if r.status != http.StatusOK {
		t.Fatalf("presence of %s: %d %s", room, r.status, r.body)
	}
	var p api.Presence
	r.decode(t, &p)
	return p
}

func connections(t *testing.T, s *chatdtest.Server, user string) api.ConnectionList {
	t.Helper()
	r := call(t, http.MethodGet, adminBase(s), "/api/v1/users/"+url.PathEscape(user)+"/connections", keyA, nil)
	if r.status != http.StatusOK {
		t.Fatalf("connections of %s: %d %s", user, r.status, r.body)
	}
	var l api.ConnectionList
	r.decode(t, &l)
	return l
}

func roomNamed(list api.RoomList, name string) (api.RoomInfo, bool) {
	for _, r := range list.Rooms {
		if r.Room == name {
			return r, true
		}
	}
	return api.RoomInfo{}, false
}

// One node: the rooms with their counts, a room's users (the limit cuts
// the list, never the count) and a user's connections with their rooms.
func TestInspectOneNode(t *testing.T) {
	srv := startAPI(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")
	ann.Join("side")
	bob1 := chatdtest.Connect(t, srv.URL, "bob")
	bob1.Join("lobby")
	bob2 := chatdtest.Connect(t, srv.URL, "bob")
	bob2.Join("lobby")
	chatdtest.Connect(t, srv.URL, "cat").Join("lobby")

	// A join is answered before the room's owner has counted it (the
	// node tells the owner of each arrival after the first one's
	// subscription): wait for the owner's count.
	var list api.RoomList
	var lobby api.RoomInfo
	chatdtest.Eventually(t, chatdtest.Timeout, "the owner counting lobby's three users", func() (bool, string) {
		list = rooms(t, srv)
		lobby, _ = roomNamed(list, "lobby")
		return lobby.Users == 3, fmt.Sprintf("%+v", list)
	})
	if len(list.Unreached) != 0 || len(list.Rooms) != 2 {
		t.Fatalf("rooms %+v, want lobby and side (the server's own rooms left out)", list)
	}
	if lobby.Users != 3 || lobby.Nodes != 1 || lobby.Owner == "" || lobby.Epoch == "" {
		t.Fatalf("lobby %+v, want 3 users on 1 node", lobby)
	}
	p := presence(t, srv, "lobby", "")
	if p.Count != 3 || !slices.Equal(p.Users, []string{"ann", "bob", "cat"}) || p.Truncated || p.Owner != lobby.Owner {
		t.Fatalf("presence %+v", p)
	}
	if p := presence(t, srv, "lobby", "?limit=2"); p.Count != 3 || !slices.Equal(p.Users, []string{"ann", "bob"}) || !p.Truncated {
		t.Fatalf("presence with limit 2: %+v", p)
	}
	if p := presence(t, srv, "nobody-here", ""); p.Count != 0 || p.Owner != "" || len(p.Users) != 0 {
		t.Fatalf("presence of an empty room: %+v", p)
	}
	if list := rooms(t, srv); len(list.Rooms) != 2 {
		t.Fatalf("asking for an empty room's presence made it a room: %+v", list)
	}

	c := connections(t, srv, "bob")
	if len(c.Connections) != 2 {
		t.Fatalf("bob's connections %+v, want 2", c)
	}
	for _, conn := range c.Connections {
		if conn.Transport != "websocket" || !slices.Equal(conn.Rooms, []string{"lobby"}) || conn.Session == "" || conn.Node == "" {
			t.Fatalf("bob's connection %+v", conn)
		}
	}
	if c := connections(t, srv, "ann"); len(c.Connections) != 1 || !slices.Equal(c.Connections[0].Rooms, []string{"lobby", "side"}) {
		t.Fatalf("ann's connections %+v", c)
	}
	if c := connections(t, srv, "nobody"); len(c.Connections) != 0 {
		t.Fatalf("an unknown user's connections %+v", c)
	}
	leave(bob1, "lobby")
	if c := connections(t, srv, "bob"); len(c.Connections) != 2 || len(c.Connections[0].Rooms)+len(c.Connections[1].Rooms) != 1 {
		t.Fatalf("bob's connections after one left lobby: %+v", c)
	}
}

// Three nodes: any node answers for all of them; a room's users come from
// its owner, wherever the users are connected.
func TestInspectCluster(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, "--api-key-file", keyFile(t, keyA))
	names := c.LiveNames()
	room := roomOwnedBy(names, c.Nodes[2].Name)
	for i, user := range []string{"ann", "bob", "cat"} {
		chatdtest.Connect(t, c.Nodes[i].URL, user).Join(room)
	}
	chatdtest.Connect(t, c.Nodes[1].URL, "ann").Join("elsewhere")
	for _, n := range c.Nodes {
		p := presence(t, n.Server, room, "")
		if p.Owner != c.Nodes[2].Name || p.Count != 3 || !slices.Equal(p.Users, []string{"ann", "bob", "cat"}) || len(p.Unreached) != 0 {
			t.Fatalf("presence through %s: %+v", n.Name, p)
		}
		list := rooms(t, n.Server)
		r, ok := roomNamed(list, room)
		if !ok || r.Owner != c.Nodes[2].Name || r.Users != 3 || r.Nodes != 3 {
			t.Fatalf("rooms through %s: %+v", n.Name, list)
		}
		if _, ok := roomNamed(list, "elsewhere"); !ok {
			t.Fatalf("rooms through %s lack elsewhere: %+v", n.Name, list)
		}
		conns := connections(t, n.Server, "ann")
		if len(conns.Connections) != 2 || conns.Connections[0].Node != c.Nodes[0].Name || conns.Connections[1].Node != c.Nodes[1].Name ||
			!slices.Equal(conns.Connections[1].Rooms, []string{"elsewhere"}) {
			t.Fatalf("ann's connections through %s: %+v", n.Name, conns)
		}
	}
}

// Bad input is refused with the API's error shape.
func TestInspectBadInput(t *testing.T) {
	srv := startAPI(t)
	for _, tc := range []struct{ name, path, code, field string }{
		{"bad room", "/api/v1/rooms/a%20b/presence", api.CodeInvalidRoom, "room"},
		{"system room", "/api/v1/rooms/%23moderation/presence", api.CodeInvalidRoom, "room"},
		{"limit zero", "/api/v1/rooms/lobby/presence?limit=0", api.CodeBadRequest, "limit"},
		{"limit too big", "/api/v1/rooms/lobby/presence?limit=10001", api.CodeBadRequest, "limit"},
		{"limit not a number", "/api/v1/rooms/lobby/presence?limit=all", api.CodeBadRequest, "limit"},
		{"unknown parameter", "/api/v1/rooms?owner=x", api.CodeBadRequest, "owner"},
		{"bad user", "/api/v1/users/%00/connections", api.CodeBadRequest, "user"},
	} {
		r := call(t, http.MethodGet, adminBase(srv), tc.path, keyA, nil)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.name, r.status, r.body)
			continue
		}
		if e := r.apiError(t); e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s: %+v, want code %s field %s", tc.name, e, tc.code, tc.field)
		}
	}
	if r := call(t, http.MethodGet, adminBase(srv), "/api/v1/rooms", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("without a key: %d", r.status)
	}
}
