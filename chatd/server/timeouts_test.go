package server_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// rawHTTP opens a plain TCP connection to the server.
func rawHTTP(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, chatdtest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// expectServerClose reads until the server closes the connection and fails
// the test if it sends anything or is still open after chatdtest.Timeout.
func expectServerClose(t *testing.T, conn net.Conn, r io.Reader, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	var b [256]byte
	n, err := r.Read(b[:])
	var ne net.Error
	switch {
	case n > 0:
		t.Fatalf("%s: the server sent %q instead of closing", what, b[:n])
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("%s: still open after %v", what, chatdtest.Timeout)
	case err == nil:
		t.Fatalf("%s: empty read", what)
	}
	// io.EOF, or a reset: closed either way.
}

// Non-WebSocket HTTP connections cannot be held open: headers that never
// end are cut at --handshake-timeout, and so is a keep-alive connection left
// idle after a request. WebSockets, which outlive these deadlines, are not
// affected, nor by the response write timeout (--write-timeout).
func TestHTTPTimeouts(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	srv := chatdtest.Start(t, "--handshake-timeout", timeout.String(), "--write-timeout", timeout.String())
	w := limWitnesses(t, srv.URL, "lobby")

	// Request headers that never end.
	start := time.Now()
	partial := rawHTTP(t, srv.Addr)
	if _, err := io.WriteString(partial, "GET /healthz HTTP/1.1\r\nHost: chatd\r\n"); err != nil {
		t.Fatal(err)
	}
	expectServerClose(t, partial, partial, "partial request headers")
	if d := time.Since(start); d < timeout {
		t.Fatalf("partial request headers cut after %v, before the %v timeout", d, timeout)
	}

	// A keep-alive connection served one request, then left idle.
	idle := rawHTTP(t, srv.Addr)
	br := bufio.NewReader(idle)
	start = time.Now()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: chatd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = idle.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != "ok\n" || resp.Close {
		t.Fatalf("GET /healthz = %d %q (close %v), want a kept-alive 200 ok", resp.StatusCode, body, resp.Close)
	}
	expectServerClose(t, idle, br, "idle keep-alive connection")
	if d := time.Since(start); d < timeout {
		t.Fatalf("idle keep-alive connection closed after %v, before the %v timeout", d, timeout)
	}

	// The witnesses connected before both waits: their WebSockets are
	// older than every HTTP deadline, and still chat.
	w.check()
	w.check()
}
