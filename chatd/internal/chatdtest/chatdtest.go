// Package chatdtest starts real chatd nodes on loopback and drives real
// WebSocket clients against them, for tests in any package.
package chatdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/app"
	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Timeout bounds every wait in these helpers: long enough for a loaded CI
// machine running -race, short enough that a hang fails quickly. It is
// testtime.Timeout, scaled by RINGCHAT_TEST_TIMEOUT_SCALE.
var Timeout = testtime.Timeout

// stopTimeout bounds a node's graceful stop (its shutdown timeout, 10 s by
// default in these helpers' flags, plus the drain).
var stopTimeout = testtime.Bound(30 * time.Second)

// Server is a chatd node running in this process.
type Server struct {
	// Addr is host:port; URL is the WebSocket endpoint.
	Addr string
	URL  string
	// AdminAddr is the admin listener's host:port (the admin API,
	// /metrics and the probes), on loopback.
	AdminAddr string
	// Stop shuts the node down gracefully and waits for it.
	Stop func()
}

// AdminURL is the URL of path on the node's admin listener, over plain
// HTTP.
func (s *Server) AdminURL(path string) string { return "http://" + s.AdminAddr + path }

// Start runs a chatd node with the given flags (on top of an anonymous,
// loopback default) until the test ends.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return serve(t, ln, append(defaultFlags(), args...))
}

func defaultFlags() []string {
	return []string{"--allow-anonymous", "--node-name", "test-node", "--log-level", "error"}
}

// loadConfig parses flags as chatd's command line, with no environment.
func loadConfig(flags []string) (config.Config, error) {
	cfg, err := config.Load(flags, func(string) string { return "" }, io.Discard)
	if err != nil {
		return cfg, fmt.Errorf("config %q: %w", flags, err)
	}
	return cfg, nil
}

// testLog is the log of a node in this process: discarded, unless
// CHATD_TEST_LOGS is set, then on stderr.
func testLog() *slog.Logger {
	var logOut io.Writer = io.Discard
	if os.Getenv("CHATD_TEST_LOGS") != "" {
		logOut = os.Stderr
	}
	return slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// adminListener opens the admin listener of a node in this process, on
// cfg.AdminListen (":0" included; a free loopback port when empty). It returns the listener
// and the address a test reaches it at.
func adminListener(cfg *config.Config) (net.Listener, string, error) {
	if cfg.AdminListen == "" {
		cfg.AdminListen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return nil, "", fmt.Errorf("admin listener: %w", err)
	}
	return ln, reachable(ln.Addr().String()), nil
}

// reachable maps a listener's address to one a local client can dial: an
// unspecified host (every interface) becomes 127.0.0.1.
func reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// serve runs app.Serve with flags on ln until the test ends (or Stop).
func serve(t testing.TB, ln net.Listener, flags []string) *Server {
	t.Helper()
	// Every node has an admin listener on loopback, unless the flags
	// give another address (the later flag wins).
	cfg, err := loadConfig(append([]string{"--admin-listen", "127.0.0.1:0"}, flags...))
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	adminLn, adminAddr, err := adminListener(&cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.ServeWithOptions(ctx, cfg, ln, testLog(), app.Options{AdminListener: adminLn}) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, context.Canceled) {
					t.Errorf("chatd exited with error: %v", err)
				}
			case <-time.After(stopTimeout):
				// Every goroutine's stack: a node that does not stop is
				// blocked somewhere, and the test's log is all a CI run
				// leaves behind.
				buf := make([]byte, 8<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("chatd did not stop within %v; every goroutine:\n%s", stopTimeout, buf)
			}
		})
	}
	t.Cleanup(stop)
	addr := ln.Addr().String()
	return &Server{Addr: addr, URL: "ws://" + addr + "/ws", AdminAddr: adminAddr, Stop: stop}
}

// Client is a test client bound to a test.
type Client struct {
	*client.Conn
	t testing.TB
	// stash holds message and ack frames read while waiting for another
	// type: a sender sees its own message before its ack, and tests should
	// not depend on that order.
	stash []client.Frame
}

// Connect authenticates anonymously as name.
func Connect(t testing.TB, url, name string) *Client {
	t.Helper()
	return ConnectHello(t, url, protocol.ClientFrame{Name: name})
}

// ConnectHello authenticates with the given hello and fails the test when
// the server refuses.
func ConnectHello(t testing.TB, url string, hello protocol.ClientFrame) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c, err := client.Connect(ctx, url, hello, client.Options{})
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(c.Close)
	return &Client{Conn: c, t: t}
}

// Dial opens a connection without hello.
func Dial(t testing.TB, url string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	c, _, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(c.Close)
	return &Client{Conn: c, t: t}
}

// Do sends a frame, failing the test on error.
func (c *Client) Do(f protocol.ClientFrame) {
	c.t.Helper()
	if err := c.Send(f); err != nil {
		c.t.Fatalf("send %s: %v", f.Type, err)
	}
}

// Next returns the next frame, failing the test after Timeout.
func (c *Client) Next() client.Frame {
	c.t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(Timeout))
	f, err := c.Read()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// Expect returns the next frame whose type is typ, skipping presence and
// typing frames (which other clients cause asynchronously). Any other frame
// fails the test.
func (c *Client) Expect(typ string) client.Frame {
	c.t.Helper()
	for i, f := range c.stash {
		if f.Type == typ {
			c.stash = append(c.stash[:i], c.stash[i+1:]...)
			return f
		}
	}
	for {
		f := c.Next()
		switch {
		case f.Type == typ:
			return f
		case f.Type == protocol.TypePresence || f.Type == protocol.TypeTyping:
		case f.Type == protocol.TypeMessage || f.Type == protocol.TypeAck || f.Type == protocol.TypeDeleted:
			c.stash = append(c.stash, f)
		default:
			c.t.Fatalf("expected a %s frame, got %s", typ, f.Raw)
		}
	}
}

// Stashed returns how many message and ack frames are waiting to be expected.
func (c *Client) Stashed() int { return len(c.stash) }

// ExpectDecode is Expect followed by Decode into v.
func (c *Client) ExpectDecode(typ string, v any) {
	c.t.Helper()
	f := c.Expect(typ)
	if err := f.Decode(v); err != nil {
		c.t.Fatalf("decode %s: %v", f.Raw, err)
	}
}

// ExpectError waits for an error frame and checks its code.
func (c *Client) ExpectError(code string) protocol.Error {
	c.t.Helper()
	var e protocol.Error
	c.ExpectDecode(protocol.TypeError, &e)
	if e.Code != code {
		c.t.Fatalf("error code %q (%s), want %q", e.Code, e.Message, code)
	}
	return e
}

// ExpectClose reads until the server closes, and returns the close code and
// reason. Frames before the close are skipped.
func (c *Client) ExpectClose() (int, string) {
	c.t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(Timeout))
	for {
		_, err := c.Read()
		if err == nil {
			continue
		}
		code, reason, ok := client.CloseCode(err)
		if !ok {
			c.t.Fatalf("expected a close frame, got %v", err)
		}
		return code, reason
	}
}

// Join joins room and returns the joined frame.
func (c *Client) Join(room string) protocol.Joined {
	c.t.Helper()
	c.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j-" + room, Room: room})
	var j protocol.Joined
	c.ExpectDecode(protocol.TypeJoined, &j)
	return j
}

// Say sends text to room and returns the ack.
func (c *Client) Say(room, cid, text string) protocol.Ack {
	c.t.Helper()
	c.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s-" + cid, Room: room, CID: cid, Text: text})
	var a protocol.Ack
	c.ExpectDecode(protocol.TypeAck, &a)
	return a
}

// NextMessage waits for the next room message.
func (c *Client) NextMessage() protocol.Message {
	c.t.Helper()
	var m protocol.Message
	c.ExpectDecode(protocol.TypeMessage, &m)
	return m
}
