package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

func disconnectPath(user string) string {
	return "/api/v1/users/" + url.PathEscape(user) + "/disconnect"
}

// disconnect asks s to disconnect user and expects 200.
func disconnect(t *testing.T, s *chatdtest.Server, user string, req api.DisconnectRequest) api.DisconnectResponse {
	t.Helper()
	r := call(t, http.MethodPost, adminBase(s), disconnectPath(user), keyA, mustJSON(t, req))
	if r.status != http.StatusOK {
		t.Fatalf("disconnect %s: %d %s", user, r.status, r.body)
	}
	var d api.DisconnectResponse
	r.decode(t, &d)
	return d
}

// expectClosed waits for c's close and checks its code and reason, and
// what a reconnecting client makes of it.
func expectClosed(t *testing.T, c *chatdtest.Client, code int, reason string, then client.Disposition) {
	t.Helper()
	gotCode, gotReason := c.ExpectClose()
	if gotCode != code || gotReason != reason {
		t.Fatalf("closed with %d %q, want %d %q", gotCode, gotReason, code, reason)
	}
	_, err := c.Read()
	if d := client.Classify(err); d != then {
		t.Fatalf("after %d a client should %s, Classify says %s (%v)", code, then, d, err)
	}
}

// Every connection of the user closes with 4010 and the reason; the
// others stay; a disconnect without reconnect closes with 4011.
func TestDisconnectUser(t *testing.T) {
	srv := startAPI(t)
	bob1 := chatdtest.Connect(t, srv.URL, "bob")
	bob1.Join("lobby")
	bob2 := chatdtest.Connect(t, srv.URL, "bob")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")

	yes := true
	d := disconnect(t, srv, "bob", api.DisconnectRequest{Reason: "spamming", Reconnect: &yes})
	if d.User != "bob" || d.Closed != 2 || d.Code != protocol.CloseDisconnected || len(d.Unreached) != 0 {
		t.Fatalf("disconnect answered %+v, want 2 closed with 4010", d)
	}
	expectClosed(t, bob1, protocol.CloseDisconnected, "spamming", client.Reconnect)
	expectClosed(t, bob2, protocol.CloseDisconnected, "spamming", client.Reconnect)
	// Ann is untouched.
	if ack := ann.Say("lobby", "c1", "still here"); ack.Seq == 0 {
		t.Fatalf("ann's send after bob's disconnect: %+v", ack)
	}

	// A closed connection leaves the server once its session ends, a
	// moment after the close frame: wait for that, or the next disconnect
	// would count the closing ones too.
	chatdtest.Eventually(t, chatdtest.Timeout, "bob's closed connections gone from the server", func() (bool, string) {
		c := connections(t, srv, "bob")
		return len(c.Connections) == 0, fmt.Sprint(c.Connections)
	})

	// A disconnect is not a ban: bob comes back, and is told not to.
	bob3 := chatdtest.Connect(t, srv.URL, "bob")
	no := false
	if d := disconnect(t, srv, "bob", api.DisconnectRequest{Reconnect: &no}); d.Closed != 1 || d.Code != protocol.CloseDisconnectedNoReconnect {
		t.Fatalf("disconnect without reconnect answered %+v", d)
	}
	expectClosed(t, bob3, protocol.CloseDisconnectedNoReconnect, api.DefaultDisconnectNoReconnectReason, client.GiveUp)

	// Nobody to disconnect: 0, not an error.
	if d := disconnect(t, srv, "zoe", api.DisconnectRequest{}); d.Closed != 0 || d.Code != protocol.CloseDisconnected {
		t.Fatalf("disconnect of an absent user answered %+v", d)
	}
}

// A disconnect through one node closes the user's connections on every
// node of a three-node cluster.
func TestDisconnectUserCluster(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, "--api-key-file", keyFile(t, keyA))
	var bobs []*chatdtest.Client
	for _, n := range c.Nodes {
		bobs = append(bobs, chatdtest.Connect(t, n.URL, "bob"))
	}
	ann := chatdtest.Connect(t, c.Nodes[2].URL, "ann")
	d := disconnect(t, c.Nodes[0].Server, "bob", api.DisconnectRequest{Reason: "moved to another plan"})
	if d.Closed != 3 || len(d.Unreached) != 0 {
		t.Fatalf("disconnect through %s answered %+v, want 3 closed on 3 nodes", c.Nodes[0].Name, d)
	}
	for i, b := range bobs {
		t.Logf("bob on %s", c.Nodes[i].Name)
		expectClosed(t, b, protocol.CloseDisconnected, "moved to another plan", client.Reconnect)
	}
	ann.Join("lobby")
}

// Hostile input is refused before anything is closed.
func TestDisconnectBadInput(t *testing.T) {
	srv := startAPI(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	for _, tc := range []struct {
		name, user, body, code, field string
		status                        int
	}{
		{"long user", strings.Repeat("b", 65), `{}`, api.CodeBadRequest, "user", 400},
		{"control character", "bo\x01b", `{}`, api.CodeBadRequest, "user", 400},
		{"not UTF-8", "bo\xffb", `{}`, api.CodeBadRequest, "user", 400},
		{"unknown member", "bob", `{"reason":"x","ban":true}`, api.CodeBadJSON, "ban", 400},
		{"wrong type", "bob", `{"reconnect":"no"}`, api.CodeBadJSON, "reconnect", 400},
		{"long reason", "bob", `{"reason":"` + strings.Repeat("r", api.MaxReasonLen+1) + `"}`, api.CodeBadRequest, "reason", 400},
		{"control in reason", "bob", `{"reason":"a\u0007b"}`, api.CodeBadRequest, "reason", 400},
		{"two objects", "bob", `{}{}`, api.CodeBadJSON, "", 400},
		{"no body", "bob", ``, api.CodeBadJSON, "", 400},
		{"huge body", "bob", `{"reason":"` + strings.Repeat("r", 10000) + `"}`, api.CodeBodyTooLarge, "", 413},
	} {
		r := call(t, http.MethodPost, adminBase(srv), disconnectPath(tc.user), keyA, []byte(tc.body))
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
			continue
		}
		if e := r.apiError(t); e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s: error %+v, want code %s field %q", tc.name, e, tc.code, tc.field)
		}
	}
	// Bob was never disconnected by any of them.
	bob.Join("lobby")
}

func kickPath(room string) string { return "/api/v1/rooms/" + url.PathEscape(room) + "/kick" }

// kick asks s to kick user from room and expects 200.
func kick(t *testing.T, s *chatdtest.Server, room string, req api.KickRequest) api.KickResponse {
	t.Helper()
	r := call(t, http.MethodPost, adminBase(s), kickPath(room), keyA, mustJSON(t, req))
	if r.status != http.StatusOK {
		t.Fatalf("kick %s from %s: %d %s", req.User, room, r.status, r.body)
	}
	var k api.KickResponse
	r.decode(t, &k)
	return k
}

// expectKicked waits for c's left frame of room and checks it is the
// server's (no id) with reason.
func expectKicked(t *testing.T, c *chatdtest.Client, room, reason string) {
	t.Helper()
	var l protocol.Left
	c.ExpectDecode(protocol.TypeLeft, &l)
	if l.Room != room || l.ID != "" || l.Reason != reason {
		t.Fatalf("left frame %+v, want room %s without id, reason %q", l, room, reason)
	}
}

// expectPresenceLeft reads c's frames until a presence frame of room names
// user as gone.
func expectPresenceLeft(t *testing.T, c *chatdtest.Client, room, user string) {
	t.Helper()
	for {
		f := c.Next()
		if f.Type != protocol.TypePresence {
			continue
		}
		var p protocol.Presence
		if err := f.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Room == room && slices.Contains(p.Left, user) {
			return
		}
	}
}

// A kicked user's connections in the room get left with the reason, stop
// getting the room's messages, may not send to it, and others see the
// user leave; connections not in the room are untouched; the user may
// join again (a kick is not a ban).
func TestKick(t *testing.T) {
	srv := startAPI(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")
	bob.Join("other")
	bobElsewhere := chatdtest.Connect(t, srv.URL, "bob")
	bobElsewhere.Join("other")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")

	k := kick(t, srv, "lobby", api.KickRequest{User: "bob", Reason: "off-topic"})
	if k.Room != "lobby" || k.User != "bob" || k.Kicked != 1 || len(k.Unreached) != 0 {
		t.Fatalf("kick answered %+v, want 1 kicked", k)
	}
	expectKicked(t, bob, "lobby", "off-topic")
	expectPresenceLeft(t, ann, "lobby", "bob")

	// Bob no longer gets lobby's messages (the next message he gets is
	// other's, sent after lobby's), nor may send there.
	ann.Say("lobby", "a1", "bob is gone")
	publish(t, srv, "other", api.PublishRequest{Text: "in other"})
	if m := bob.NextMessage(); m.Room != "other" {
		t.Fatalf("kicked bob got %+v", m)
	}
	bob.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s1", Room: "lobby", CID: "b1", Text: "hello?"})
	bob.ExpectError(protocol.CodeNotJoined)
	if m := bobElsewhere.NextMessage(); m.Room != "other" {
		t.Fatalf("bob's other connection got %+v", m)
	}

	// Kicking again finds nobody in the room; bob may come back.
	if k := kick(t, srv, "lobby", api.KickRequest{User: "bob"}); k.Kicked != 0 {
		t.Fatalf("second kick answered %+v, want 0", k)
	}
	bob.Join("lobby")
	if ack := bob.Say("lobby", "b2", "back"); ack.Seq == 0 {
		t.Fatalf("bob's send after rejoining: %+v", ack)
	}
}

// A kick through one node reaches the user's connections on the others.
func TestKickCluster(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, "--api-key-file", keyFile(t, keyA))
	a, b, cNode := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	room := roomOwnedBy(c.LiveNames(), cNode.Name)
	bobA := chatdtest.Connect(t, a.URL, "bob")
	bobA.Join(room)
	bobC := chatdtest.Connect(t, cNode.URL, "bob")
	bobC.Join(room)
	ann := chatdtest.Connect(t, a.URL, "ann")
	ann.Join(room)

	k := kick(t, b.Server, room, api.KickRequest{User: "bob", Reason: "flooding"})
	if k.Kicked != 2 || len(k.Unreached) != 0 {
		t.Fatalf("kick through %s answered %+v, want 2 kicked", b.Name, k)
	}
	expectKicked(t, bobA, room, "flooding")
	expectKicked(t, bobC, room, "flooding")
	expectPresenceLeft(t, ann, room, "bob")
}

// Hostile kicks are refused before anything happens.
func TestKickBadInput(t *testing.T) {
	srv := startAPI(t)
	for _, tc := range []struct {
		name, room, body, code, field string
		status                        int
	}{
		{"bad room", "lob by", `{"user":"bob"}`, api.CodeInvalidRoom, "room", 400},
		{"long room", strings.Repeat("r", 65), `{"user":"bob"}`, api.CodeInvalidRoom, "room", 400},
		{"no user", "lobby", `{"reason":"x"}`, api.CodeBadRequest, "user", 400},
		{"bad user", "lobby", `{"user":"b\u0000b"}`, api.CodeBadRequest, "user", 400},
		{"unknown member", "lobby", `{"user":"bob","room":"x"}`, api.CodeBadJSON, "room", 400},
		{"long reason", "lobby", `{"user":"bob","reason":"` + strings.Repeat("r", 121) + `"}`, api.CodeBadRequest, "reason", 400},
		{"huge body", "lobby", `{"user":"` + strings.Repeat("u", 5000) + `"}`, api.CodeBodyTooLarge, "", 413},
	} {
		r := call(t, http.MethodPost, adminBase(srv), kickPath(tc.room), keyA, []byte(tc.body))
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
			continue
		}
		if e := r.apiError(t); e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s: error %+v, want code %s field %q", tc.name, e, tc.code, tc.field)
		}
	}
}

// A kick frees the connection's room slot, as its own leave would: with
// --max-rooms 1, the kicked connection joins another room.
func TestKickFreesTheRoomSlot(t *testing.T) {
	srv := startAPI(t, "--max-rooms", "1")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")
	if k := kick(t, srv, "lobby", api.KickRequest{User: "bob"}); k.Kicked != 1 {
		t.Fatalf("kick answered %+v", k)
	}
	expectKicked(t, bob, "lobby", "")
	bob.Join("other")
}
