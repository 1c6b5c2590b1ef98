package hooks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// hookSchemas loads docs/api.yaml's Hook* schemas (the document and its
// examples validated, as chatd/api's test does).
func hookSchemas(t *testing.T) map[string]*openapi3.Schema {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("../../docs/api.yaml")
	if err != nil {
		t.Fatalf("load docs/api.yaml: %v", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("docs/api.yaml does not validate: %v", err)
	}
	out := map[string]*openapi3.Schema{}
	for _, hook := range []string{"Connect", "Join", "Send"} {
		for _, kind := range []string{"Request", "Reply"} {
			ref := doc.Components.Schemas["Hook"+hook+kind]
			if ref == nil || ref.Value == nil {
				t.Fatalf("docs/api.yaml has no Hook%s%s schema", hook, kind)
			}
			out[strings.ToLower(hook)+kind] = ref.Value
		}
	}
	return out
}

// TestHookFormatsMatchTheSchemas: the requests a real node sends to each
// hook (native and Socket.IO, fresh join and resume) and the replies the
// backend gives validate against docs/api.yaml, whose schemas refuse
// unknown members, so a member added to a request but not documented
// fails here.
func TestHookFormatsMatchTheSchemas(t *testing.T) {
	t.Parallel()
	schemas := hookSchemas(t)
	check := func(name string, v any) error {
		b, _ := json.Marshal(v)
		var doc any
		_ = json.Unmarshal(b, &doc)
		return schemas[name].VisitJSON(doc)
	}
	be := startBackend(t, nil, func(hook string, _ map[string]any, _ *http.Request) (int, any) {
		reply := map[string]string{"result": "allow"}
		switch hook {
		case hooks.HookConnect:
			reply = allowUser("u-1")
		case hooks.HookSend:
			reply = map[string]string{"result": "replace", "text": "rewritten"}
		}
		if err := check(hook+"Reply", reply); err != nil {
			t.Errorf("the test's %s reply %v breaks the schema: %v", hook, reply, err)
		}
		return http.StatusOK, reply
	})
	srv := chatdtest.StartWith(t, nodeFlags(), "--hook-connect-url", be.url("connect"),
		"--hook-join-url", be.url("join"), "--hook-send-url", be.url("send"))
	c, err := connectWith(t, srv.URL, http.Header{"Cookie": {"s=1"}, "Authorization": {"Bearer opaque"}, "Origin": {"http://" + srv.Addr}}, protocol.ClientFrame{Name: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	j := c.Join("lobby")
	c.Say("lobby", "c1", "hello")
	since := uint64(0)
	c.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "r", Room: "lobby", Epoch: j.Epoch, Since: &since})
	c.Expect(protocol.TypeJoined)
	sio, ok := dialSIO(t, srv.Addr, nil, `{"token":"opaque-backend-token"}`)
	if !strings.HasPrefix(ok, "40{") {
		t.Fatalf("socket.io CONNECT: %q", ok)
	}
	sio.emit(1, "join", map[string]string{"room": "lobby"})
	sio.emit(2, "send", map[string]string{"room": "lobby", "cid": "c2", "text": "hi"})

	bodies := be.rawBodies()
	for _, hook := range []string{hooks.HookConnect, hooks.HookJoin, hooks.HookSend} {
		if len(bodies[hook]) < 2 {
			t.Fatalf("%d %s hook requests, want native and Socket.IO ones", len(bodies[hook]), hook)
		}
		for _, body := range bodies[hook] {
			var doc any
			if err := json.Unmarshal(body, &doc); err != nil {
				t.Fatal(err)
			}
			if err := schemas[hook+"Request"].VisitJSON(doc); err != nil {
				t.Errorf("%s hook request %s breaks docs/api.yaml: %v", hook, body, err)
			}
		}
	}
	// And the schemas are not vacuous: an undocumented member fails.
	if err := check("joinRequest", map[string]any{"hook": "join", "transport": "ws", "session": "s", "user": "u", "anonymous": false, "room": "r", "resume": false, "extra": 1}); err == nil {
		t.Fatal("HookJoinRequest accepts an unknown member")
	}
}
