package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

func mutesPath(room string) string { return "/api/v1/rooms/" + room + "/mutes" }

// A mute made through node A of a three-node cluster: bob, on node C,
// keeps reading the room but his sends are refused with muted (until and
// reason); other rooms are not affected; an unmute lets him send again.
func TestMuteCluster(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, append(pollingFlags, "--api-key-file", keyFile(t, keyA))...)
	a, cNode := c.Nodes[0], c.Nodes[2]
	for _, n := range c.Nodes {
		waitBansLoaded(t, n.Server)
	}
	bob := chatdtest.Connect(t, cNode.URL, "bob")
	bob.Join("lobby")
	bob.Join("other")

	r := call(t, http.MethodPost, adminBase(a.Server), mutesPath("lobby"), keyA, mustJSON(t, api.MuteRequest{User: "bob", Duration: "10m", Reason: "calm down"}))
	if r.status != http.StatusOK {
		t.Fatalf("mute: %d %s", r.status, r.body)
	}
	var m api.Ban
	r.decode(t, &m)
	if m.User != "bob" || m.Room != "lobby" || m.Until == 0 || m.Reason != "calm down" {
		t.Fatalf("mute answered %+v", m)
	}
	var refused protocol.Error
	chatdtest.Eventually(t, chatdtest.Timeout, "bob's send refused as muted on "+cNode.Name, func() (bool, string) {
		bob.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s", Room: "lobby", CID: "c-" + strings.Repeat("x", 1), Text: "hi"})
		for {
			f := bob.Next()
			switch f.Type {
			case protocol.TypeError:
				_ = f.Decode(&refused)
				return refused.Code == protocol.CodeMuted, refused.Code
			case protocol.TypeAck:
				return false, "acked"
			}
		}
	})
	if refused.Until != m.Until || refused.ID != "s" || !strings.Contains(refused.Message, "calm down") {
		t.Fatalf("refusal %+v, mute %+v", refused, m)
	}
	// Bob still reads lobby, and may send elsewhere.
	publish(t, a.Server, "lobby", api.PublishRequest{Text: "for everyone"})
	if got := bob.NextMessage(); got.Room != "lobby" || got.Text != "for everyone" {
		t.Fatalf("muted bob got %+v", got)
	}
	if ack := bob.Say("other", "o1", "here I may"); ack.Seq == 0 {
		t.Fatalf("bob's send to another room: %+v", ack)
	}
	var list api.MuteList
	call(t, http.MethodGet, adminBase(cNode.Server), mutesPath("lobby"), keyA, nil).decode(t, &list)
	if len(list.Mutes) != 1 || list.Mutes[0] != m {
		t.Fatalf("mutes of lobby on %s: %+v", cNode.Name, list)
	}

	if r := call(t, http.MethodDelete, adminBase(a.Server), mutesPath("lobby")+"?user=bob", keyA, nil); r.status != http.StatusOK {
		t.Fatalf("unmute: %d %s", r.status, r.body)
	}
	chatdtest.Eventually(t, chatdtest.Timeout, "bob's send let through after the unmute", func() (bool, string) {
		bob.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s2", Room: "lobby", CID: "after", Text: "thanks"})
		for {
			f := bob.Next()
			switch f.Type {
			case protocol.TypeError:
				return false, string(f.Raw)
			case protocol.TypeAck:
				return true, ""
			}
		}
	})
}

// Hostile mutes are refused.
func TestMuteBadInput(t *testing.T) {
	srv := startAPI(t)
	for _, tc := range []struct {
		name, method, path, body, code, field string
	}{
		{"bad room", "POST", mutesPath("a%20b"), `{"user":"bob"}`, api.CodeInvalidRoom, "room"},
		{"no user", "POST", mutesPath("lobby"), `{"duration":"5m"}`, api.CodeBadRequest, "user"},
		{"bad duration", "POST", mutesPath("lobby"), `{"user":"bob","duration":"5 minutes"}`, api.CodeBadRequest, "duration"},
		{"room in the body", "POST", mutesPath("lobby"), `{"user":"bob","room":"other"}`, api.CodeBadJSON, "room"},
		{"unmute without user", "DELETE", mutesPath("lobby"), ``, api.CodeBadRequest, "user"},
		{"unmute unknown parameter", "DELETE", mutesPath("lobby") + "?user=bob&x=1", ``, api.CodeBadRequest, "x"},
		{"list with a parameter", "GET", mutesPath("lobby") + "?user=bob", ``, api.CodeBadRequest, "user"},
	} {
		var body []byte
		if tc.body != "" {
			body = []byte(tc.body)
		}
		r := call(t, tc.method, adminBase(srv), tc.path, keyA, body)
		if r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", tc.name, r.status, r.body)
			continue
		}
		if e := r.apiError(t); e.Code != tc.code || e.Field != tc.field {
			t.Errorf("%s: error %+v, want code %s field %q", tc.name, e, tc.code, tc.field)
		}
	}
}
