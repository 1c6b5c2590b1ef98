package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// These tests check the Engine.IO transport rules a well-behaved client
// library cannot be made to break (not answering pings, oversized packets,
// never connecting a namespace) with a plain WebSocket and plain HTTP; the
// protocol itself is tested with real Socket.IO clients in chatd/socketio.

// sioOpen is the Engine.IO open packet's JSON.
type sioOpen struct {
	SID          string   `json:"sid"`
	Upgrades     []string `json:"upgrades"`
	PingInterval int64    `json:"pingInterval"`
	PingTimeout  int64    `json:"pingTimeout"`
	MaxPayload   int64    `json:"maxPayload"`
}

func parseOpen(t *testing.T, packet string) sioOpen {
	t.Helper()
	var o sioOpen
	if !strings.HasPrefix(packet, "0") || json.Unmarshal([]byte(packet[1:]), &o) != nil || o.SID == "" {
		t.Fatalf("not an Engine.IO open packet: %q", packet)
	}
	return o
}

// sioWS is an Engine.IO session over a plain WebSocket whose packets a
// goroutine reads into a channel; end gets the read error that ends it.
// With autoPong that goroutine answers every ping itself (counting them in
// pongs) instead of passing it on.
type sioWS struct {
	conn    *websocket.Conn
	open    sioOpen
	packets chan string
	end     chan error
	writeMu sync.Mutex
	pongs   atomic.Int64
}

// dialSIOWS opens an Engine.IO session over WebSocket and reads its open
// packet.
func dialSIOWS(t *testing.T, addr string, autoPong bool) *sioWS {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(strings.Replace(sioURL(addr, "websocket"), "http", "ws", 1), nil)
	if err != nil {
		t.Fatalf("dial /socket.io/ over websocket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	_, open, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("open packet: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	s := &sioWS{conn: conn, open: parseOpen(t, string(open)), packets: make(chan string, 100), end: make(chan error, 1)}
	go func() {
		defer close(s.packets)
		for {
			_, p, err := conn.ReadMessage()
			if err == nil && autoPong && string(p) == "2" {
				if err = s.write("3"); err == nil {
					s.pongs.Add(1)
					continue
				}
			}
			if err != nil {
				s.end <- err
				return
			}
			s.packets <- string(p)
		}
	}()
	return s
}

func (s *sioWS) write(packet string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.conn.WriteMessage(websocket.TextMessage, []byte(packet))
}

func (s *sioWS) send(t *testing.T, packet string) {
	t.Helper()
	if err := s.write(packet); err != nil {
		t.Fatalf("write %.20q…: %v", packet, err)
	}
}

// next returns the next packet.
func (s *sioWS) next(t *testing.T) string {
	t.Helper()
	select {
	case p, ok := <-s.packets:
		if !ok {
			t.Fatalf("the session ended: %v", <-s.end)
		}
		return p
	case <-time.After(chatdtest.Timeout):
		t.Fatal("no packet")
	}
	return ""
}

// connectNS connects the main namespace anonymously as name and returns
// how many pings came before the answer (left unanswered: a client
// without autoPong answers none).
func (s *sioWS) connectNS(t *testing.T, name string) (pings int) {
	t.Helper()
	s.send(t, `40{"name":"`+name+`"}`)
	for {
		p := s.next(t)
		if p == "2" {
			pings++
			continue
		}
		if !strings.HasPrefix(p, `40{"sid":"`) {
			t.Fatalf("CONNECT answer %q", p)
		}
		return pings
	}
}

// TestSocketIOHeartbeat: the open packet advertises the configured ping
// interval, ping timeout and maxPayload; the server pings every interval;
// a client that answers stays, one that does not is dropped once a ping
// went unanswered for the ping timeout, not before.
func TestSocketIOHeartbeat(t *testing.T) {
	t.Parallel()
	// Scaled: the live client must answer each ping within the timeout on
	// a loaded machine too.
	interval := testtime.Bound(300 * time.Millisecond)
	timeout := testtime.Bound(400 * time.Millisecond)
	srv := chatdtest.Start(t, "--ping-interval", interval.String(), "--socketio-ping-timeout", timeout.String(),
		"--max-frame-bytes", "4096", "--max-text-bytes", "1024")

	live := dialSIOWS(t, srv.Addr, true)
	live.connectNS(t, "live")

	start := time.Now() // before the dial: the server's clock starts later
	silent := dialSIOWS(t, srv.Addr, false)
	opened := time.Now() // after the open packet: the server's clock started before
	if o := silent.open; o.PingInterval != interval.Milliseconds() || o.PingTimeout != timeout.Milliseconds() || o.MaxPayload != 4096 || len(o.Upgrades) != 0 {
		t.Fatalf("open packet %+v, want pingInterval %d, pingTimeout %d, maxPayload 4096, no upgrades over websocket",
			o, interval.Milliseconds(), timeout.Milliseconds())
	}
	// The silent client gets its first ping after one interval (on a
	// loaded machine, perhaps before its CONNECT's answer), and is dropped
	// once that ping went unanswered for the ping timeout.
	pings := silent.connectNS(t, "silent")
	for p := range silent.packets {
		if p != "2" {
			t.Fatalf("silent client got %q, want only pings", p)
		}
		pings++
	}
	dropped := time.Now()
	if pings != 1 {
		t.Fatalf("the silent client got %d pings before it was dropped, want 1", pings)
	}
	// Whichever fires first ends it: the heartbeat drops the transport
	// (no close frame), the read deadline (ping interval + timeout since
	// the last packet read) closes it normally; a close for another reason
	// would carry its code.
	var ce *websocket.CloseError
	if err := <-silent.end; errors.As(err, &ce) && ce.Code != websocket.CloseNormalClosure && ce.Code != websocket.CloseAbnormalClosure {
		t.Fatalf("the silent client's session ended with %v, want the transport dropped or closed normally", err)
	}
	want := interval + timeout
	if lo, hi := dropped.Sub(start), dropped.Sub(opened); lo < want || hi > want+testtime.Slack {
		t.Fatalf("the silent client was dropped %v after its dial (%v after its open packet), want within [%v, %v]", lo, hi, want, want+testtime.Slack)
	}

	// The live client, answering, has had pings all along and stays: it
	// answers three more and gets an answer to an event.
	answered := live.pongs.Load()
	if answered < 1 {
		t.Fatalf("the live client answered %d pings in the %v the silent one took to be dropped", answered, dropped.Sub(start))
	}
	chatdtest.Eventually(t, 3*(interval+testtime.Slack), "three more pings answered", func() (bool, string) {
		n := live.pongs.Load()
		return n >= answered+3, fmt.Sprintf("%d answered", n-answered)
	})
	live.send(t, `421["ping",{}]`)
	if p := live.next(t); !strings.HasPrefix(p, `431[{"ts":`) {
		t.Fatalf("ping event's ack %q", p)
	}
	srv.WaitMetric(t, `chatd_protocol_connections{protocol="socketio"}`, 1)
}

// TestSocketIOMaxPayload: maxPayload is --max-frame-bytes on both
// transports: a WebSocket message of exactly that size is served and a
// larger one closes the session with 1009; a POST body of that size is
// served and a larger one gets 413 and ends the session.
func TestSocketIOMaxPayload(t *testing.T) {
	t.Parallel()
	const maxFrame = 2048
	srv := chatdtest.Start(t, "--max-frame-bytes", strconv.Itoa(maxFrame), "--max-text-bytes", "1024")

	// padded is an EVENT "ping" with ack id 1 of exactly n bytes (the pad
	// member is ignored, as members a native frame does not have are).
	padded := func(n int) string {
		head, tail := `421["ping",{"pad":"`, `"}]`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}

	ws := dialSIOWS(t, srv.Addr, true)
	ws.connectNS(t, "big")
	ws.send(t, padded(maxFrame))
	if p := ws.next(t); !strings.HasPrefix(p, `431[{"ts":`) {
		t.Fatalf("a message of maxPayload bytes: got %q, want the ping's ack", p)
	}
	ws.send(t, padded(maxFrame+1))
	for p := range ws.packets {
		t.Fatalf("a message of maxPayload+1 bytes: got %q, want the close", p)
	}
	if err := <-ws.end; !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("a message of maxPayload+1 bytes: the session ended with %v, want close 1009", err)
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="1009"}`, 1)

	// Long-polling: the same limit on a POST's body.
	_, body := sioHandshake(t, srv.Addr, nil)
	sid := parseOpen(t, body).SID
	post := func(payload string) (int, string) {
		resp, err := http.Post(sioURL(srv.Addr, "polling")+"&sid="+sid, "text/plain;charset=UTF-8", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll := func() string {
		resp, err := http.Get(sioURL(srv.Addr, "polling") + "&sid=" + sid)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	if code, b := post(`40{"name":"big2"}`); code != http.StatusOK {
		t.Fatalf("CONNECT: %d %q", code, b)
	}
	if got := poll(); !strings.HasPrefix(got, `200 40{"sid":"`) {
		t.Fatalf("CONNECT answer %q", got)
	}
	if code, b := post(padded(maxFrame)); code != http.StatusOK {
		t.Fatalf("a body of maxPayload bytes: %d %q", code, b)
	}
	if got := poll(); !strings.HasPrefix(got, `200 431[{"ts":`) {
		t.Fatalf("a body of maxPayload bytes: poll got %q, want the ping's ack", got)
	}
	if code, b := post(padded(maxFrame + 1)); code != http.StatusRequestEntityTooLarge || !strings.Contains(b, "maxPayload") {
		t.Fatalf("a body of maxPayload+1 bytes: %d %q, want 413 naming maxPayload", code, b)
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="1009"}`, 2)
	srv.WaitMetric(t, `chatd_protocol_connections{protocol="socketio"}`, 0)
	if got := poll(); !strings.HasPrefix(got, "400 ") {
		t.Fatalf("a poll after the 413: %q, want 400 (the session is gone)", got)
	}
}

// TestSocketIOConnectTimeout: an Engine.IO session that connects no
// namespace within --hello-timeout is closed with 4002 at that time, not
// before; one that connected in time stays.
func TestSocketIOConnectTimeout(t *testing.T) {
	t.Parallel()
	const helloTimeout = 300 * time.Millisecond
	srv := chatdtest.Start(t, "--hello-timeout", helloTimeout.String())

	in := dialSIOWS(t, srv.Addr, true)
	in.connectNS(t, "prompt")

	start := time.Now() // before the dial: the server's clock starts later
	idle := dialSIOWS(t, srv.Addr, true)
	for p := range idle.packets {
		t.Fatalf("the idle session got %q before its close", p)
	}
	closed := time.Now()
	var ce *websocket.CloseError
	if err := <-idle.end; !errors.As(err, &ce) || ce.Code != protocol.CloseHelloTimeout || ce.Text != "no namespace connected in time" {
		t.Fatalf("the idle session ended with %v, want close %d", err, protocol.CloseHelloTimeout)
	}
	if d := closed.Sub(start); d < helloTimeout || d > helloTimeout+testtime.Slack {
		t.Fatalf("closed %v after the dial, want within [%v, %v]", d, helloTimeout, helloTimeout+testtime.Slack)
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4002"}`, 1)
	in.send(t, `421["ping",{}]`)
	if p := in.next(t); !strings.HasPrefix(p, `431[{"ts":`) {
		t.Fatalf("the session connected in time: ping's ack %q", p)
	}
}
