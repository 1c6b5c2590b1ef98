package server_test

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// disconnectOverAPI asks srv's server API to disconnect user, as a backend
// would, and returns the answer's body.
func disconnectOverAPI(t *testing.T, srv *chatdtest.Server, key, user, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.AdminURL("/api/v1/users/"+user+"/disconnect"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("disconnect %s: %d %s (%v)", user, resp.StatusCode, b, err)
	}
	return string(b)
}

// A backend's disconnect reaches Socket.IO sockets, which are hub
// connections like WebSocket sessions: one that may reconnect loses its
// transport with close code 4010 (Socket.IO clients reconnect after
// that); one that may not gets the error event "disconnected" and the
// server's DISCONNECT packet (which Socket.IO clients never retry).
func TestSocketIODisconnectedByTheBackend(t *testing.T) {
	t.Parallel()
	const key = "api-key-sio-disconnect-0000"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := chatdtest.Start(t, "--api-key-file", keys)

	may := dialSIOWS(t, srv.Addr, true)
	may.connectNS(t, "bob")
	if got := disconnectOverAPI(t, srv, key, "bob", `{"reason":"spamming"}`); !strings.Contains(got, `"closed":1`) {
		t.Fatalf("disconnect answered %s, want 1 closed", got)
	}
	for range may.packets {
	}
	var ce *websocket.CloseError
	if err := <-may.end; !errors.As(err, &ce) || ce.Code != protocol.CloseDisconnected || ce.Text != "spamming" {
		t.Fatalf("the socket ended with %v, want close %d spamming", err, protocol.CloseDisconnected)
	}
	// The client sees the close before the server has torn the socket
	// down: wait for that, or the last disconnect below may still find it.
	srv.WaitMetric(t, `chatd_protocol_connections{protocol="socketio"}`, 0)

	mayNot := dialSIOWS(t, srv.Addr, true)
	mayNot.connectNS(t, "bob")
	if got := disconnectOverAPI(t, srv, key, "bob", `{"reason":"banned","reconnect":false}`); !strings.Contains(got, `"closed":1`) {
		t.Fatalf("disconnect answered %s, want 1 closed", got)
	}
	if p := mayNot.next(t); !strings.HasPrefix(p, `42["error",`) || !strings.Contains(p, `"code":"disconnected"`) || !strings.Contains(p, `banned`) {
		t.Fatalf("first packet after the disconnect %q, want the error event disconnected", p)
	}
	if p := mayNot.next(t); p != "41" {
		t.Fatalf("second packet after the disconnect %q, want the DISCONNECT packet 41", p)
	}
	// The socket is gone from the hub: a second disconnect finds nothing.
	if got := disconnectOverAPI(t, srv, key, "bob", `{}`); !strings.Contains(got, `"closed":0`) {
		t.Fatalf("second disconnect answered %s, want 0 closed", got)
	}
}

// A backend's kick reaches a Socket.IO socket in the room: it gets the
// left event with the reason, and its sends to the room are refused.
func TestSocketIOKickedByTheBackend(t *testing.T) {
	t.Parallel()
	const key = "api-key-sio-kick-000000000"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := chatdtest.Start(t, "--api-key-file", keys)
	s := dialSIOWS(t, srv.Addr, true)
	s.connectNS(t, "bob")
	s.send(t, `420["join",{"room":"lobby"}]`)
	// The join's acknowledgement.
	for p := s.next(t); !strings.HasPrefix(p, `430[`); p = s.next(t) {
	}

	req, err := http.NewRequest(http.MethodPost, srv.AdminURL("/api/v1/rooms/lobby/kick"), strings.NewReader(`{"user":"bob","reason":"off-topic"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"kicked":1`) {
		t.Fatalf("kick: %d %s", resp.StatusCode, b)
	}
	for {
		p := s.next(t)
		if strings.HasPrefix(p, `42["left",`) {
			if !strings.Contains(p, `"room":"lobby"`) || !strings.Contains(p, `"reason":"off-topic"`) {
				t.Fatalf("left event %q", p)
			}
			break
		}
	}
	s.send(t, `421["send",{"room":"lobby","cid":"c1","text":"still here?"}]`)
	for {
		p := s.next(t)
		if strings.HasPrefix(p, `431[`) {
			if !strings.Contains(p, `not_joined`) {
				t.Fatalf("send after the kick answered %q, want not_joined", p)
			}
			return
		}
	}
}

// A backend's subscription reaches a Socket.IO socket: it gets an unasked
// joined event for the room, and may send to it at once.
func TestSocketIOSubscribedByTheBackend(t *testing.T) {
	t.Parallel()
	const key = "api-key-sio-subscribe-0000"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := chatdtest.Start(t, "--api-key-file", keys)
	s := dialSIOWS(t, srv.Addr, true)
	s.connectNS(t, "bob")

	req, err := http.NewRequest(http.MethodPost, srv.AdminURL("/api/v1/rooms/news/subscriptions"), strings.NewReader(`{"user":"bob"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"subscribed":1`) {
		t.Fatalf("subscribe: %d %s", resp.StatusCode, b)
	}
	for {
		p := s.next(t)
		if strings.HasPrefix(p, `42["joined",`) {
			if !strings.Contains(p, `"room":"news"`) || strings.Contains(p, `"recovered"`) {
				t.Fatalf("joined event %q", p)
			}
			break
		}
	}
	s.send(t, `421["send",{"room":"news","cid":"c1","text":"hello"}]`)
	for {
		p := s.next(t)
		if strings.HasPrefix(p, `431[`) {
			if !strings.Contains(p, `"seq":1`) {
				t.Fatalf("send after the subscription answered %q, want seq 1", p)
			}
			return
		}
	}
}
