package hooks_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// sioClient speaks Engine.IO 4 / Socket.IO 5 over a WebSocket, packet by
// packet: enough of a client to see what a hook does to a CONNECT and to
// events, on the wire a socket.io-client would see.
type sioClient struct {
	t  *testing.T
	ws *websocket.Conn
}

// dialSIO opens an Engine.IO session over WebSocket with header, connects
// the main namespace with auth (a JSON object) and returns the CONNECT's
// answer: "40{...}" (connected) or "44{...}" (refused).
func dialSIO(t *testing.T, addr string, header http.Header, auth string) (*sioClient, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: chatdtest.Timeout}
	ws, _, err := d.Dial("ws://"+addr+"/socket.io/?EIO=4&transport=websocket", header)
	if err != nil {
		t.Fatalf("socket.io dial: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &sioClient{t: t, ws: ws}
	if open := c.read(); !strings.HasPrefix(open, "0{") {
		t.Fatalf("open packet %q", open)
	}
	c.write("40" + auth)
	for {
		p := c.read()
		if strings.HasPrefix(p, "40") || strings.HasPrefix(p, "44") {
			return c, p
		}
	}
}

func (c *sioClient) write(p string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(p)); err != nil {
		c.t.Fatalf("socket.io write: %v", err)
	}
}

// read returns the next packet, answering pings.
func (c *sioClient) read() string {
	c.t.Helper()
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.t.Fatalf("socket.io read: %v", err)
		}
		if string(b) == "2" {
			c.write("3")
			continue
		}
		return string(b)
	}
}

// emit sends an event asking for an acknowledgement and returns the ACK's
// argument list.
func (c *sioClient) emit(ack int, event string, arg any) string {
	c.t.Helper()
	b, _ := json.Marshal([]any{event, arg})
	id := strconv.Itoa(ack)
	c.write("42" + id + string(b))
	for {
		if p, ok := strings.CutPrefix(c.read(), "43"+id); ok {
			return p
		}
	}
}

// TestSocketIOHooks: the connect hook decides a Socket.IO CONNECT from the
// Engine.IO handshake's cookie and the auth payload; the join hook's deny
// and the send hook's rewrite reach Socket.IO clients as they reach
// native ones (an ACK with error forbidden; the replacement stored).
func TestSocketIOHooks(t *testing.T) {
	t.Parallel()
	be := startBackend(t, nil, func(hook string, req map[string]any, _ *http.Request) (int, any) {
		switch hook {
		case hooks.HookConnect:
			if req["cookie"] == "session=sio-1" {
				return http.StatusOK, allowUser("sio-user")
			}
			return http.StatusOK, deny("no session")
		case hooks.HookJoin:
			if req["room"] == "staff" {
				return http.StatusOK, deny("staff only")
			}
		case hooks.HookSend:
			text, _ := req["text"].(string)
			return http.StatusOK, map[string]string{"result": "replace", "text": strings.ReplaceAll(text, "darn", "****")}
		}
		return http.StatusOK, map[string]string{"result": "allow"}
	})
	srv := chatdtest.StartWith(t, nodeFlags(), "--hook-connect-url", be.url("connect"),
		"--hook-join-url", be.url("join"), "--hook-send-url", be.url("send"))

	_, refused := dialSIO(t, srv.Addr, nil, `{"name":"ann"}`)
	if !strings.HasPrefix(refused, "44") || !strings.Contains(refused, "no session") || !strings.Contains(refused, hooks.CodeHookDenied) {
		t.Fatalf("CONNECT without the cookie: %q, want a connect error with the backend's reason", refused)
	}
	c, ok := dialSIO(t, srv.Addr, http.Header{"Cookie": {"session=sio-1"}}, `{"name":"ann"}`)
	if !strings.HasPrefix(ok, "40{") {
		t.Fatalf("CONNECT with the cookie: %q", ok)
	}
	reqs := be.requests(hooks.HookConnect)
	if r := reqs[len(reqs)-1]; r["transport"] != "socket.io" || r["namespace"] != "/" || r["name"] != "ann" || r["cookie"] != "session=sio-1" {
		t.Fatalf("connect hook request %v", r)
	}
	if ack := c.emit(1, "join", map[string]string{"room": "lobby"}); strings.Contains(ack, "error") || !strings.Contains(ack, `"lobby"`) {
		t.Fatalf("join ack %s", ack)
	}
	if ack := c.emit(2, "join", map[string]string{"room": "staff"}); !strings.Contains(ack, `"forbidden"`) || !strings.Contains(ack, "staff only") {
		t.Fatalf("denied join ack %s", ack)
	}
	if ack := c.emit(3, "send", map[string]string{"room": "lobby", "cid": "c1", "text": "a darn day"}); strings.Contains(ack, "error") {
		t.Fatalf("send ack %s", ack)
	}
	if page := c.emit(4, "history", map[string]string{"room": "lobby"}); !strings.Contains(page, "a **** day") || !strings.Contains(page, "sio-user") {
		t.Fatalf("history %s, want the rewritten text from the hook's user", page)
	}
	if r := be.requests(hooks.HookSend)[0]; r["transport"] != "socket.io" || r["user"] != "sio-user" || r["cid"] != "c1" {
		t.Fatalf("send hook request %v", r)
	}
}

// lastArg returns the last argument of an event packet (42[...]): the
// recovery offset, when recovery is on.
func lastArg(t *testing.T, packet string) string {
	t.Helper()
	var args []json.RawMessage
	if err := json.Unmarshal([]byte(strings.TrimPrefix(packet, "42")), &args); err != nil || len(args) < 2 {
		t.Fatalf("event %q: %v", packet, err)
	}
	var offset string
	if err := json.Unmarshal(args[len(args)-1], &offset); err != nil {
		t.Fatalf("event %q has no offset: %v", packet, err)
	}
	return offset
}

// TestSocketIORecoveryAsksTheJoinHook: a connection state recovery joins
// the offset's rooms again, each a resume the join hook must allow: while
// it allows, the socket recovers (the same pid); once it denies, the
// socket is not recovered (a new pid) and keeps no room.
func TestSocketIORecoveryAsksTheJoinHook(t *testing.T) {
	t.Parallel()
	var denyResumes atomic.Bool
	be := startBackend(t, nil, func(_ string, req map[string]any, _ *http.Request) (int, any) {
		if req["resume"] == true && denyResumes.Load() {
			return http.StatusOK, deny("membership revoked")
		}
		return http.StatusOK, map[string]string{"result": "allow"}
	})
	srv := chatdtest.Start(t, "--hook-join-url", be.url("join"))
	c, answer := dialSIO(t, srv.Addr, nil, `{"name":"ann"}`)
	var connected struct{ PID string }
	if err := json.Unmarshal([]byte(strings.TrimPrefix(answer, "40")), &connected); err != nil || connected.PID == "" {
		t.Fatalf("CONNECT answer %q without a pid: %v", answer, err)
	}
	c.write(`42["join",{"room":"lobby"}]`)
	var offset string
	for offset == "" {
		if p := c.read(); strings.HasPrefix(p, `42["joined"`) {
			offset = lastArg(t, p)
		}
	}
	recoverWith := func() string {
		auth, _ := json.Marshal(map[string]string{"name": "ann", "pid": connected.PID, "offset": offset})
		_, answer := dialSIO(t, srv.Addr, nil, string(auth))
		var again struct{ PID string }
		if err := json.Unmarshal([]byte(strings.TrimPrefix(answer, "40")), &again); err != nil {
			t.Fatalf("recovery CONNECT answer %q: %v", answer, err)
		}
		return again.PID
	}
	if pid := recoverWith(); pid != connected.PID {
		t.Fatalf("recovery with the hook allowing: pid %q, want the old %q (recovered)", pid, connected.PID)
	}
	denyResumes.Store(true)
	if pid := recoverWith(); pid == connected.PID {
		t.Fatal("recovery with the hook denying the room's resume: recovered anyway")
	}
	resumes := 0
	for _, r := range be.requests(hooks.HookJoin) {
		if r["resume"] == true && r["room"] == "lobby" && r["transport"] == "socket.io" {
			resumes++
		}
	}
	if resumes != 2 {
		t.Fatalf("join hook asked about %d resumes of lobby, want 2", resumes)
	}
}
