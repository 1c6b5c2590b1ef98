package chatdtest

import (
	"net"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// StartOn is Start on a given address instead of a free port: the same
// anonymous, loopback defaults plus args. Tests of client reconnects use it
// to "restart" a node: stop the first Server (its clients get 1012) and
// StartOn its Addr, so that clients reconnecting to the same URL reach the
// new node. Listening is retried for a few seconds in case the old socket
// is still being released.
func StartOn(t testing.TB, addr string, args ...string) *Server {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	deadline := time.Now().Add(testtime.Bound(5 * time.Second))
	for {
		ln, err = net.Listen("tcp", addr)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // the previous server is still releasing the port
	}
	return serve(t, ln, append(defaultFlags(), args...))
}
