package server_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
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
		limOriginRefused(t, srv.URL, tc.host, tc.origin)
	}
	srv.WaitMetric(t, `chatd_connections_refused_total{reason="upgrade"}`, float64(len(refused)))

	accepted := []struct{ host, origin string }{
		{"", "http://" + srv.Addr}, // the page chatd serves itself
		{"", "https://" + srv.Addr},
		{"chat.example:8080", "http://chat.example:8080"}, // whatever the Host is
	}
	for i, tc := range accepted {
		limOriginAccepted(t, srv.URL, fmt.Sprint("browser", i), tc.host, tc.origin).Close()
	}
	if n := srv.Metric(t, "chatd_connections_accepted_total"); n != float64(2+len(accepted)) {
		t.Fatalf("chatd_connections_accepted_total = %v, want %d", n, 2+len(accepted))
	}
	w.check()
}
