package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestOriginDefault: without --allowed-origins only the server's own host is
// a browser origin allowed to open /ws (docs/protocol.md §11: the Origin's
// host, with port, equals the request's Host), and clients that send no
// Origin (non-browsers) are allowed. Any other Origin gets 403.
func TestOriginDefault(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	w := limWitnesses(t, srv.URL, "lobby") // no Origin header: allowed
	_, port, _ := strings.Cut(srv.Addr, ":")

	refused := []struct{ host, origin string }{
		{"", "https://evil.example"},
		{"", "http://127.0.0.1"},                           // the host without the port
		{"", "http://127.0.0.1:1"},                         // another port
		{"", "http://localhost:" + port},                   // another name for it
		{"", "http://127.0.0.1:" + port + ".evil.example"}, // a suffix
		{"", "null"},
		// The rule compares with the request's Host, not with the
		// address the server listens on.
		{"chat.example:8080", "http://" + srv.Addr},
	}
	for _, tc := range refused {
		h := http.Header{"Origin": {tc.origin}}
		if tc.host != "" {
			h.Set("Host", tc.host)
		}
		c, resp, err := limDial(srv.URL, h)
		if err == nil {
			c.Close()
			t.Fatalf("Host %q, Origin %s: accepted, want 403", tc.host, tc.origin)
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("Host %q, Origin %s: %v, want HTTP 403", tc.host, tc.origin, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), "origin not allowed") {
			t.Errorf("Host %q, Origin %s: body %q", tc.host, tc.origin, b)
		}
	}
	srv.WaitMetric(t, `chatd_connections_refused_total{reason="upgrade"}`, float64(len(refused)))

	accepted := []struct{ host, origin string }{
		{"", "http://" + srv.Addr}, // the page chatd serves itself
		{"", "https://" + srv.Addr},
		{"chat.example:8080", "http://chat.example:8080"}, // whatever the Host is
	}
	for i, tc := range accepted {
		h := http.Header{"Origin": {tc.origin}}
		if tc.host != "" {
			h.Set("Host", tc.host)
		}
		ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
		conn, err := client.Connect(ctx, srv.URL, protocol.ClientFrame{Name: fmt.Sprint("browser", i)}, client.Options{Header: h})
		cancel()
		if err != nil {
			t.Fatalf("Host %q, Origin %s: %v", tc.host, tc.origin, err)
		}
		c := chatdtest.Adopt(t, conn)
		limPing(t, c, "ok")
		c.Close()
	}
	if n := srv.Metric(t, "chatd_connections_accepted_total"); n != float64(2+len(accepted)) {
		t.Fatalf("chatd_connections_accepted_total = %v, want %d", n, 2+len(accepted))
	}
	w.check()
}
