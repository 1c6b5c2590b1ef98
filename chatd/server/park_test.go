package server_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Tests of parked readers (--park-idle-readers, the default on Linux): an
// idle authenticated connection has no goroutine, and wakes on its frames,
// its close and its liveness deadline. Their clients are bare gorilla
// connections, which hold no goroutine either unless the test reads.

// idleClient dials, says hello and reads the welcome, then leaves the
// connection alone.
func idleClient(t *testing.T, url, name string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if err := ws.WriteJSON(protocol.ClientFrame{Type: protocol.TypeHello, ID: "h", Name: name}); err != nil {
		t.Fatal(err)
	}
	if got := readUntil(t, ws, `"welcome"`); !strings.Contains(got, `"welcome"`) {
		t.Fatalf("hello answered with %q", got)
	}
	return ws
}

// readUntil reads messages until one contains every want, and returns what
// it read.
func readUntil(t *testing.T, ws *websocket.Conn, want ...string) string {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	defer func() { _ = ws.SetReadDeadline(time.Time{}) }()
	var all strings.Builder
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("reading %q (so far %q): %v", want, all.String(), err)
		}
		all.Write(data)
		all.WriteByte('\n')
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(all.String(), w)
		}
		if !missing {
			return all.String()
		}
	}
}

// clientFrame is a masked, final client frame of RFC 6455 (payload < 126
// bytes), for tests that write the wire bytes themselves.
func clientFrame(opcode byte, payload string) []byte {
	f := []byte{0x80 | opcode, 0x80 | byte(len(payload))}
	var key [4]byte
	_, _ = rand.Read(key[:])
	f = append(f, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i&3])
	}
	return f
}

func appPing(id string) string {
	return fmt.Sprintf(`{"type":"ping","id":%q}`, id)
}

// goroutinesAtMost waits until the process runs at most n goroutines
// (writers and workers of the handshakes exit on their own) and returns the
// count.
func goroutinesAtMost(n int) int {
	deadline := time.Now().Add(chatdtest.Timeout)
	for {
		g := runtime.NumGoroutine()
		if g <= n || time.Now().After(deadline) {
			return g
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Idle connections hold no goroutine when parked, and one each when not.
// Not parallel: it counts the process's goroutines.
func TestParkedIdleConnectionsHoldNoGoroutine(t *testing.T) {
	const n = 200
	for _, park := range []bool{true, false} {
		t.Run(fmt.Sprintf("park=%v", park), func(t *testing.T) {
			srv := chatdtest.Start(t, fmt.Sprintf("--park-idle-readers=%v", park))
			base := runtime.NumGoroutine()
			for i := range n {
				idleClient(t, srv.URL, fmt.Sprintf("idle%d", i))
			}
			srv.WaitMetric(t, "chatd_connections", n)
			if park {
				srv.WaitMetric(t, "chatd_sessions_parked", n)
				g := goroutinesAtMost(base + n/10)
				t.Logf("%d parked connections: %d goroutines, %d before them", n, g, base)
				if g >= base+n/10 {
					t.Fatalf("%d parked connections: %d goroutines, %d before them; want fewer than %d more", n, g, base, n/10)
				}
				return
			}
			if v := srv.Metric(t, "chatd_sessions_parked"); v != 0 {
				t.Fatalf("chatd_sessions_parked = %v with --park-idle-readers=false", v)
			}
			g := runtime.NumGoroutine()
			t.Logf("%d idle connections without parking: %d goroutines, %d before them", n, g, base)
			if g < base+n {
				t.Fatalf("%d idle connections without parking: %d goroutines, %d before them; want at least %d more", n, g, base, n)
			}
		})
	}
}

// A parked connection wakes for a frame, and for two frames arriving in one
// TCP segment serves both (the second is buffered when the first is read).
func TestParkedConnectionServesFrames(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ws := idleClient(t, srv.URL, "ann")
	srv.WaitMetric(t, "chatd_sessions_parked", 1)

	if err := ws.WriteMessage(websocket.TextMessage, []byte(appPing("p1"))); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ws, `"p1"`)
	srv.WaitMetric(t, "chatd_sessions_parked", 1)

	both := append(clientFrame(websocket.TextMessage, appPing("p2")), clientFrame(websocket.TextMessage, appPing("p3"))...)
	if _, err := ws.NetConn().Write(both); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ws, `"p2"`, `"p3"`)
	srv.WaitMetric(t, "chatd_sessions_parked", 1)

	// A ping and a data frame in one segment: the ping is served by the
	// woken reader, the frame by gorilla.
	mixed := append(clientFrame(websocket.PingMessage, "x"), clientFrame(websocket.TextMessage, appPing("p4"))...)
	if _, err := ws.NetConn().Write(mixed); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ws, `"p4"`)
	srv.WaitMetric(t, "chatd_sessions_parked", 1)
}

// A client that sends a ping while parked gets its pong, with the payload,
// and stays parked.
func TestParkedConnectionAnswersPing(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ws := idleClient(t, srv.URL, "ann")
	srv.WaitMetric(t, "chatd_sessions_parked", 1)
	pongs := make(chan string, 4)
	ws.SetPongHandler(func(data string) error {
		pongs <- data
		return nil
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for i := range 3 {
		payload := fmt.Sprintf("ping-%d", i)
		if err := ws.WriteControl(websocket.PingMessage, []byte(payload), time.Now().Add(chatdtest.Timeout)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-pongs:
			if got != payload {
				t.Fatalf("pong %q, want %q", got, payload)
			}
		case <-time.After(chatdtest.Timeout):
			t.Fatalf("no pong to %q within %v", payload, chatdtest.Timeout)
		}
		srv.WaitMetric(t, "chatd_sessions_parked", 1)
	}
}

// A client that only answers the server's pings stays connected, parked
// between them; a silent one is dropped between two and three ping
// intervals after its last frame (docs/configuration.md, --ping-interval).
func TestParkedLiveness(t *testing.T) {
	t.Parallel()
	interval := testtime.Bound(250 * time.Millisecond)
	srv := chatdtest.Start(t, "--ping-interval", interval.String())

	live := idleClient(t, srv.URL, "live")
	var pings atomic.Int32
	live.SetPingHandler(func(data string) error {
		pings.Add(1)
		return live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(chatdtest.Timeout))
	})
	liveErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := live.ReadMessage(); err != nil {
				liveErr <- err
				return
			}
		}
	}()

	sent := time.Now()
	silent := idleClient(t, srv.URL, "silent")
	silent.SetPingHandler(func(string) error { return nil }) // no pongs
	silentErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := silent.ReadMessage(); err != nil {
				silentErr <- err
				return
			}
		}
	}()
	select {
	case <-silentErr:
		gone := time.Since(sent)
		if gone < 2*interval || gone > 3*interval+testtime.Slack {
			t.Fatalf("silent client dropped after %v; want between %v and %v (+ slack)", gone, 2*interval, 3*interval)
		}
	case <-time.After(3*interval + chatdtest.Timeout):
		t.Fatalf("silent client still connected after %v", 3*interval+chatdtest.Timeout)
	}

	// Beyond three intervals and at least four pongs, the answering
	// client is still there, and parked between its pongs.
	deadline := time.Now().Add(chatdtest.Timeout)
	for pings.Load() < 5 {
		select {
		case err := <-liveErr:
			t.Fatalf("client answering pings dropped after %d pings: %v", pings.Load(), err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d pings within %v", pings.Load(), chatdtest.Timeout)
		}
		time.Sleep(interval / 10)
	}
	srv.WaitMetric(t, "chatd_connections", 1)
	srv.WaitMetric(t, "chatd_sessions_parked", 1)
}

// A shutdown closes parked connections with 1012, and their clients read
// the close frame; one that never answers it has its connection dropped
// after the close grace (1 s), not at the end of the shutdown timeout: the
// close unparked its reader, which waits for the reply or the grace.
func TestParkedConnectionsShutdown1012(t *testing.T) {
	t.Parallel()
	const n = 20
	srv := chatdtest.Start(t, "--shutdown-timeout", testtime.Bound(60*time.Second).String())
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i] = idleClient(t, srv.URL, fmt.Sprintf("c%d", i))
	}
	mute := idleClient(t, srv.URL, "mute")
	srv.WaitMetric(t, "chatd_sessions_parked", n+1)
	go srv.Stop()

	// The mute client reads the wire itself: no close reply is sent.
	const closeGrace = time.Second
	raw := mute.NetConn()
	_ = raw.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	var head [2]byte
	if _, err := io.ReadFull(raw, head[:]); err != nil || head[0] != 0x80|websocket.CloseMessage {
		t.Fatalf("mute client: first bytes %x (%v), want a close frame", head, err)
	}
	closed := time.Now()
	if _, err := io.Copy(io.Discard, raw); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("mute client: still connected %v after the close frame", chatdtest.Timeout)
		}
	}
	if d := time.Since(closed); d > closeGrace+testtime.Slack {
		t.Fatalf("mute client dropped %v after its close frame, want within the %v close grace (+ slack)", d, closeGrace)
	}

	for i, ws := range clients {
		_ = ws.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
		var err error
		for err == nil {
			_, _, err = ws.ReadMessage()
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != protocol.CloseServiceRestart {
			t.Fatalf("client %d: read ended with %v, want a 1012 close", i, err)
		}
	}
}
