package api_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

func subscriptionsPath(room string) string {
	return "/api/v1/rooms/" + url.PathEscape(room) + "/subscriptions"
}

func subscribe(t *testing.T, s *chatdtest.Server, room, user string) api.SubscribeResponse {
	t.Helper()
	r := call(t, http.MethodPost, adminBase(s), subscriptionsPath(room), keyA, mustJSON(t, api.SubscribeRequest{User: user}))
	if r.status != http.StatusOK {
		t.Fatalf("subscribe %s to %s: %d %s", user, room, r.status, r.body)
	}
	var res api.SubscribeResponse
	r.decode(t, &res)
	return res
}

// expectServerJoined reads the joined frame without id that a server-side
// subscription sends.
func expectServerJoined(t *testing.T, c *chatdtest.Client, room string) protocol.Joined {
	t.Helper()
	var j protocol.Joined
	c.ExpectDecode(protocol.TypeJoined, &j)
	if j.Room != room || j.ID != "" || j.Epoch == "" {
		t.Fatalf("got %+v, want a joined of %s without id", j, room)
	}
	return j
}

// The backend subscribes bob to a room: each of his connections gets a
// joined frame without id, then the room's messages, and may send there;
// ann, in the room, sees him arrive; a connection already in the room or
// at its room limit is left alone; a second call joins nobody.
func TestSubscribeUser(t *testing.T) {
	srv := startAPI(t, "--max-rooms", "2")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("news")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bobFull := chatdtest.Connect(t, srv.URL, "bob")
	bobFull.Join("a")
	bobFull.Join("b")
	bobIn := chatdtest.Connect(t, srv.URL, "bob")
	bobIn.Join("news")
	ann.Expect(protocol.TypePresence) // bob's arrival through bobIn

	res := subscribe(t, srv, "news", "bob")
	if res.Room != "news" || res.User != "bob" || res.Subscribed != 1 || len(res.Unreached) != 0 {
		t.Fatalf("subscribe answered %+v, want 1 connection subscribed", res)
	}
	j := expectServerJoined(t, bob, "news")
	if j.Count != 2 {
		t.Fatalf("joined %+v, want ann and bob present", j)
	}
	ack := ann.Say("news", "n1", "welcome")
	if m := bob.NextMessage(); m.Room != "news" || m.Seq != ack.Seq {
		t.Fatalf("subscribed bob got %+v", m)
	}
	if a := bob.Say("news", "b1", "thanks"); a.Seq != ack.Seq+1 {
		t.Fatalf("bob's send: %+v", a)
	}
	// bobFull, at its limit, was not joined: news is not its room.
	bobFull.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s", Room: "news", CID: "f1", Text: "x"})
	bobFull.ExpectError(protocol.CodeNotJoined)

	if again := subscribe(t, srv, "news", "bob"); again.Subscribed != 0 {
		t.Fatalf("second subscribe answered %+v, want 0", again)
	}
	if res := subscribe(t, srv, "news", "nobody"); res.Subscribed != 0 {
		t.Fatalf("subscribing a user without connections answered %+v", res)
	}
}

// A user banned from the room is not subscribed: 409 banned.
func TestSubscribeBannedUser(t *testing.T) {
	srv := startAPI(t)
	waitBansLoaded(t, srv)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	banUser(t, srv, api.BanRequest{User: "bob", Room: "news"})
	waitBanned(t, bob, "news")
	r := call(t, http.MethodPost, adminBase(srv), subscriptionsPath("news"), keyA, mustJSON(t, api.SubscribeRequest{User: "bob"}))
	if e := r.apiError(t); r.status != http.StatusConflict || e.Code != api.CodeBanned {
		t.Fatalf("subscribing a banned user: %d %s", r.status, r.body)
	}
	// Another room is fine.
	if res := subscribe(t, srv, "other", "bob"); res.Subscribed != 1 {
		t.Fatalf("subscribe to another room: %+v", res)
	}
	expectServerJoined(t, bob, "other")
}

// Through one node, the user's connections on every node join.
func TestSubscribeUserCluster(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, "--api-key-file", keyFile(t, keyA))
	room := roomOwnedBy(c.LiveNames(), c.Nodes[2].Name)
	bobA := chatdtest.Connect(t, c.Nodes[0].URL, "bob")
	bobC := chatdtest.Connect(t, c.Nodes[2].URL, "bob")
	res := subscribe(t, c.Nodes[1].Server, room, "bob")
	if res.Subscribed != 2 || len(res.Unreached) != 0 {
		t.Fatalf("subscribe through %s answered %+v, want 2", c.Nodes[1].Name, res)
	}
	expectServerJoined(t, bobA, room)
	expectServerJoined(t, bobC, room)
	got := publish(t, c.Nodes[0].Server, room, api.PublishRequest{Text: "hello subscribers"})
	for _, b := range []*chatdtest.Client{bobA, bobC} {
		if m := b.NextMessage(); m.Seq != got.Seq || m.Text != "hello subscribers" {
			t.Fatalf("bob got %+v", m)
		}
	}
}

// Hostile input is refused before anything happens.
func TestSubscribeBadInput(t *testing.T) {
	srv := startAPI(t)
	for _, tc := range []struct{ name, path, body, code, field string }{
		{"bad room", subscriptionsPath("a b"), `{"user":"bob"}`, api.CodeInvalidRoom, "room"},
		{"system room", "/api/v1/rooms/%23moderation/subscriptions", `{"user":"bob"}`, api.CodeInvalidRoom, "room"},
		{"no user", subscriptionsPath("news"), `{}`, api.CodeBadRequest, "user"},
		{"unknown member", subscriptionsPath("news"), `{"user":"bob","rooms":["x"]}`, api.CodeBadJSON, "rooms"},
		{"not an object", subscriptionsPath("news"), `["bob"]`, api.CodeBadJSON, ""},
	} {
		r := call(t, http.MethodPost, adminBase(srv), tc.path, keyA, []byte(tc.body))
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.name, r.status, r.body)
			continue
		}
		if e := r.apiError(t); e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s: %+v, want code %s field %q", tc.name, e, tc.code, tc.field)
		}
	}
}
