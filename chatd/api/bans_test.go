package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// pollingFlags lift the per-connection rate limit for tests whose client
// polls (a join or a send until a ban or mute reaches its node): on a
// loaded machine that can take long enough for the default limit to close
// the connection for abuse (1008).
var pollingFlags = []string{"--rate", "10000", "--rate-burst", "10000"}

// waitBansLoaded waits until s has read the moderation log (its GET
// /api/v1/bans answers 503 until then) and returns the bans listed.
func waitBansLoaded(t *testing.T, s *chatdtest.Server) []api.Ban {
	t.Helper()
	var list api.BanList
	chatdtest.Eventually(t, chatdtest.Timeout, s.AdminAddr+" reading the moderation log", func() (bool, string) {
		r := call(t, http.MethodGet, adminBase(s), "/api/v1/bans", keyA, nil)
		if r.status != http.StatusOK {
			return false, fmt.Sprintf("%d %s", r.status, r.body)
		}
		r.decode(t, &list)
		return true, ""
	})
	return list.Bans
}

// banUser bans through s and expects 200.
func banUser(t *testing.T, s *chatdtest.Server, req api.BanRequest) api.Ban {
	t.Helper()
	r := call(t, http.MethodPost, adminBase(s), "/api/v1/bans", keyA, mustJSON(t, req))
	if r.status != http.StatusOK {
		t.Fatalf("ban %+v: %d %s", req, r.status, r.body)
	}
	var b api.Ban
	r.decode(t, &b)
	return b
}

func unbanUser(t *testing.T, s *chatdtest.Server, user, room string) {
	t.Helper()
	q := url.Values{"user": {user}}
	if room != "" {
		q.Set("room", room)
	}
	if r := call(t, http.MethodDelete, adminBase(s), "/api/v1/bans?"+q.Encode(), keyA, nil); r.status != http.StatusOK {
		t.Fatalf("unban %s from %q: %d %s", user, room, r.status, r.body)
	}
}

// tryJoin sends a join and returns the refusal's error frame, or nil when
// it is joined.
func tryJoin(c *chatdtest.Client, room string) *protocol.Error {
	c.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j-" + room, Room: room})
	for {
		f := c.Next()
		switch f.Type {
		case protocol.TypeJoined:
			return nil
		case protocol.TypeError:
			var e protocol.Error
			_ = f.Decode(&e)
			return &e
		}
	}
}

// waitBanned waits until c's joins of room are refused as banned on its
// node (which applies the ban when the moderation log reaches it) and
// returns the refusal.
func waitBanned(t *testing.T, c *chatdtest.Client, room string) *protocol.Error {
	t.Helper()
	var refused *protocol.Error
	chatdtest.Eventually(t, chatdtest.Timeout, "a join of "+room+" refused as banned", func() (bool, string) {
		e := tryJoin(c, room)
		if e == nil {
			leave(c, room)
			return false, "joined"
		}
		refused = e
		return e.Code == protocol.CodeBanned, e.Code
	})
	return refused
}

func leave(c *chatdtest.Client, room string) {
	c.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l-" + room, Room: room})
	c.Expect(protocol.TypeLeft)
}

// A room ban: bob, in the room, is made to leave it with the reason; his
// joins and sends are refused as banned with the expiry; other rooms stay
// open to him; the list shows it; an unban lifts it.
func TestRoomBan(t *testing.T) {
	srv := startAPI(t, pollingFlags...)
	if bans := waitBansLoaded(t, srv); len(bans) != 0 {
		t.Fatalf("a new node lists bans: %+v", bans)
	}
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")

	b := banUser(t, srv, api.BanRequest{User: "bob", Room: "lobby", Duration: "1h", Reason: "spam"})
	if b.User != "bob" || b.Room != "lobby" || b.Reason != "spam" || b.Until < time.Now().Add(59*time.Minute).UnixMilli() {
		t.Fatalf("ban answered %+v", b)
	}
	expectKicked(t, bob, "lobby", "spam")
	e := tryJoin(bob, "lobby")
	if e == nil || e.Code != protocol.CodeBanned || e.Until != b.Until || e.Room != "lobby" || !strings.Contains(e.Message, "spam") {
		t.Fatalf("join after the ban: %+v", e)
	}
	bob.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s1", Room: "lobby", CID: "c1", Text: "let me in"})
	if e := bob.ExpectError(protocol.CodeBanned); e.ID != "s1" {
		t.Fatalf("send after the ban: %+v", e)
	}
	// A resume is a join with since: refused alike.
	since := uint64(0)
	bob.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "r1", Room: "lobby", Since: &since, Epoch: "x"})
	bob.ExpectError(protocol.CodeBanned)
	bob.Join("other")

	var list api.BanList
	call(t, http.MethodGet, adminBase(srv), "/api/v1/bans?room=lobby", keyA, nil).decode(t, &list)
	if len(list.Bans) != 1 || list.Bans[0] != b {
		t.Fatalf("bans of lobby: %+v, want %+v", list.Bans, b)
	}
	call(t, http.MethodGet, adminBase(srv), "/api/v1/bans?room=other", keyA, nil).decode(t, &list)
	if len(list.Bans) != 0 {
		t.Fatalf("bans of other: %+v", list.Bans)
	}

	unbanUser(t, srv, "bob", "lobby")
	chatdtest.Eventually(t, chatdtest.Timeout, "bob let in after the unban", func() (bool, string) {
		if e := tryJoin(bob, "lobby"); e != nil {
			return false, e.Code
		}
		return true, ""
	})
	if bans := waitBansLoaded(t, srv); len(bans) != 0 {
		t.Fatalf("bans after the unban: %+v", bans)
	}
}

// A cluster-wide ban made through node A: bob's connections on every node
// are closed with 4011, and his joins on node C are refused.
func TestClusterBanThroughAnotherNode(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, append(pollingFlags, "--api-key-file", keyFile(t, keyA))...)
	a, cNode := c.Nodes[0], c.Nodes[2]
	for _, n := range c.Nodes {
		waitBansLoaded(t, n.Server)
	}
	bobA := chatdtest.Connect(t, a.URL, "bob")
	bobC := chatdtest.Connect(t, cNode.URL, "bob")
	bobC.Join("lobby")

	banUser(t, a.Server, api.BanRequest{User: "bob", Reason: "fraud"})
	for _, b := range []*chatdtest.Client{bobA, bobC} {
		if code, reason := b.ExpectClose(); code != protocol.CloseDisconnectedNoReconnect || reason != "fraud" {
			t.Fatalf("bob closed with %d %q, want 4011 fraud", code, reason)
		}
	}
	again := chatdtest.Connect(t, cNode.URL, "bob")
	if e := waitBanned(t, again, "any-room"); e.Until != 0 || !strings.Contains(e.Message, "every room") {
		t.Fatalf("join on %s: %+v", cNode.Name, e)
	}
	ann := chatdtest.Connect(t, cNode.URL, "ann")
	ann.Join("any-room")
}

// An expired ban stops applying without any call: bob, banned for 2s,
// joins once they have passed.
func TestBanExpires(t *testing.T) {
	srv := startAPI(t, pollingFlags...)
	waitBansLoaded(t, srv)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	const d = 2 * time.Second
	b := banUser(t, srv, api.BanRequest{User: "bob", Room: "lobby", Duration: d.String()})
	if e := waitBanned(t, bob, "lobby"); e.Until != b.Until {
		t.Fatalf("refusal %+v, ban %+v", e, b)
	}
	// The ban's end is the event: once it has passed, the next join is
	// let in at once, with no call to lift it.
	<-time.After(time.Until(time.UnixMilli(b.Until)))
	if e := tryJoin(bob, "lobby"); e != nil {
		t.Fatalf("join after the ban's end: %+v", e)
	}
	if bans := waitBansLoaded(t, srv); len(bans) != 0 {
		t.Fatalf("an expired ban is listed: %+v", bans)
	}
}

// Hostile bans are refused.
func TestBanBadInput(t *testing.T) {
	srv := startAPI(t)
	for _, tc := range []struct {
		name, method, path, body, code, field string
		status                                int
	}{
		{"no user", "POST", "/api/v1/bans", `{"room":"lobby"}`, api.CodeBadRequest, "user", 400},
		{"bad user", "POST", "/api/v1/bans", `{"user":"` + strings.Repeat("u", 65) + `"}`, api.CodeBadRequest, "user", 400},
		{"bad room", "POST", "/api/v1/bans", `{"user":"bob","room":"#moderation"}`, api.CodeInvalidRoom, "room", 400},
		{"bad duration", "POST", "/api/v1/bans", `{"user":"bob","duration":"forever"}`, api.CodeBadRequest, "duration", 400},
		{"negative duration", "POST", "/api/v1/bans", `{"user":"bob","duration":"-5m"}`, api.CodeBadRequest, "duration", 400},
		{"tiny duration", "POST", "/api/v1/bans", `{"user":"bob","duration":"1ms"}`, api.CodeBadRequest, "duration", 400},
		{"seconds as a number", "POST", "/api/v1/bans", `{"user":"bob","duration":60}`, api.CodeBadJSON, "duration", 400},
		{"huge duration", "POST", "/api/v1/bans", `{"user":"bob","duration":"1000000h"}`, api.CodeBadRequest, "duration", 400},
		{"unknown member", "POST", "/api/v1/bans", `{"user":"bob","rooms":["a"]}`, api.CodeBadJSON, "rooms", 400},
		{"unban without user", "DELETE", "/api/v1/bans?room=lobby", ``, api.CodeBadRequest, "user", 400},
		{"unban unknown parameter", "DELETE", "/api/v1/bans?user=bob&all=1", ``, api.CodeBadRequest, "all", 400},
		{"list bad room", "GET", "/api/v1/bans?room=a%20b", ``, api.CodeInvalidRoom, "room", 400},
		{"list unknown parameter", "GET", "/api/v1/bans?user=bob", ``, api.CodeBadRequest, "user", 400},
	} {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		r := call(t, tc.method, adminBase(srv), tc.path, keyA, body)
		if r.status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.status, r.body, tc.status)
			continue
		}
		if e := r.apiError(t); e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s: error %+v, want code %s field %q", tc.name, e, tc.code, tc.field)
		}
	}
}
