package api_test

import (
	"net/http"
	"net/url"
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
