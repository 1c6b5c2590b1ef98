package chatdtest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/app"
	"github.com/ringchat/ringchat/chatd/config"
)

// StartOn is Start on a given address instead of a free port: the same
// anonymous, loopback defaults plus args. Tests of client reconnects use it
// to "restart" a node: stop the first Server (its clients get 1012) and
// StartOn its Addr, so that clients reconnecting to the same URL reach the
// new node. Listening is retried for a few seconds in case the old socket
// is still being released.
func StartOn(t testing.TB, addr string, args ...string) *Server {
	t.Helper()
	all := append([]string{"--allow-anonymous", "--node-name", "test-node", "--log-level", "error"}, args...)
	cfg, err := config.Load(all, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var ln net.Listener
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var logOut io.Writer = io.Discard
	if os.Getenv("CHATD_TEST_LOGS") != "" {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, cfg, ln, log) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("chatd exited with error: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("chatd did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	return &Server{Addr: ln.Addr().String(), URL: "ws://" + ln.Addr().String() + "/ws", Stop: stop}
}
