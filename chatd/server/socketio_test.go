package server_test

import (
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// These tests check what the HTTP server does for /socket.io/ (admission,
// origins, metrics, shutdown) with plain HTTP requests and a plain
// WebSocket; the protocol itself is tested with real Socket.IO clients in
// chatd/socketio.

func sioURL(addr, transport string) string {
	return "http://" + addr + "/socket.io/?EIO=4&transport=" + transport
}

// sioHandshake opens a long-polling session and returns its open packet.
func sioHandshake(t *testing.T, addr string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, sioURL(addr, "polling"), nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// TestSocketIOAdmission: the per-IP cap counts /ws connections and
// Engine.IO sessions together and refuses both with 429 and Retry-After;
// a refused Origin gets 403 on either transport; the protocol metrics
// count each side.
func TestSocketIOAdmission(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-connections-per-ip", "2")
	native := chatdtest.Connect(t, srv.URL, "ann")
	resp, body := sioHandshake(t, srv.Addr, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, `0{"sid":"`) {
		t.Fatalf("handshake: %d %q", resp.StatusCode, body)
	}
	// Two of two slots taken (one native, one socket.io): both are refused.
	resp, body = sioHandshake(t, srv.Addr, nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "5" || !strings.Contains(body, "ip_limit") {
		t.Fatalf("third connection over polling: %d %q %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	_, wsResp, err := websocket.DefaultDialer.Dial(strings.Replace(sioURL(srv.Addr, "websocket"), "http", "ws", 1), nil)
	if err == nil || wsResp == nil || wsResp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection over websocket: %v %v", err, wsResp)
	}
	c, wsResp, err := websocket.DefaultDialer.Dial(srv.URL, nil)
	if err == nil || wsResp == nil || wsResp.StatusCode != http.StatusTooManyRequests {
		if c != nil {
			c.Close()
		}
		t.Fatalf("third connection on /ws: %v %v", err, wsResp)
	}
	srv.WaitMetric(t, `chatd_protocol_connections_refused_total{protocol="socketio",reason="ip_limit"}`, 2)
	srv.WaitMetric(t, `chatd_protocol_connections_refused_total{protocol="native",reason="ip_limit"}`, 1)
	srv.WaitMetric(t, `chatd_protocol_connections{protocol="socketio"}`, 1)
	srv.WaitMetric(t, `chatd_protocol_connections{protocol="native"}`, 1)
	srv.WaitMetric(t, `chatd_socketio_sessions{transport="polling"}`, 1)
	native.Close()
	srv.WaitMetric(t, `chatd_protocol_connections{protocol="native"}`, 0)

	for _, transport := range []string{"polling", "websocket"} {
		req, _ := http.NewRequest(http.MethodGet, sioURL(srv.Addr, transport), nil)
		req.Header.Set("Origin", "https://evil.example")
		if transport == "websocket" {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s with a foreign Origin: %d, want 403", transport, resp.StatusCode)
		}
	}
}

// TestSocketIOShutdown: a graceful shutdown closes an Engine.IO session on
// WebSocket with 1012, and answers a waiting long-poll with a close packet,
// so that Socket.IO clients reconnect (and recover, elsewhere).
func TestSocketIOShutdown(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--shutdown-timeout", "5s")
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(sioURL(srv.Addr, "websocket"), "http", "ws", 1), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	if _, open, err := ws.ReadMessage(); err != nil || !strings.HasPrefix(string(open), `0{"sid":"`) {
		t.Fatalf("open packet: %q %v", open, err)
	}
	_, body := sioHandshake(t, srv.Addr, nil)
	sid := body[len(`0{"sid":"`):strings.Index(body, `","`)]
	// The poll is written before the shutdown starts (a poll that came
	// only after the session ended would get 400, not the close packet).
	polled := make(chan string, 1)
	written := make(chan struct{})
	go func() {
		req, _ := http.NewRequest(http.MethodGet, sioURL(srv.Addr, "polling")+"&sid="+sid, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { close(written) },
		}))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		polled <- string(b)
	}()
	srv.WaitMetric(t, `chatd_protocol_connections{protocol="socketio"}`, 2)
	select {
	case <-written:
	case <-time.After(chatdtest.Timeout):
		t.Fatal("the poll was not sent")
	}
	go srv.Stop()
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, 1012) {
			t.Fatalf("websocket ended with %v, want close 1012", err)
		}
		break
	}
	select {
	case got := <-polled:
		if got != "1" {
			t.Fatalf("the waiting poll got %q, want the close packet", got)
		}
	case <-time.After(chatdtest.Timeout):
		t.Fatal("the waiting poll was not answered")
	}
}
