package server_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// proxyDial dials url from the local address ip with the given headers
// (loopback: Linux routes all of 127/8 to lo).
func proxyDial(url, ip string, h http.Header) (*client.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return client.Dial(ctx, url, client.Options{Header: h, NetDialContext: d.DialContext})
}

// admitted dials and says hello; the connection stays open (and holds
// its per-IP slot) until the test ends.
func admitted(t *testing.T, url, ip string, h http.Header, name string) {
	t.Helper()
	c, resp, err := proxyDial(url, ip, h)
	if err != nil {
		status := "no HTTP response"
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("%s from %s with %v: %v (%s)", name, ip, h, err, status)
	}
	cl := chatdtest.Adopt(t, c)
	cl.Do(protocol.ClientFrame{Type: protocol.TypeHello, Name: name})
	cl.ExpectDecode(protocol.TypeWelcome, &cl.Welcome)
}

// refusedIPLimit dials and expects the per-IP cap's 429.
func refusedIPLimit(t *testing.T, url, ip string, h http.Header) {
	t.Helper()
	c, resp, err := proxyDial(url, ip, h)
	if err == nil {
		c.Close()
		t.Fatalf("from %s with %v: admitted, want 429 ip_limit", ip, h)
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("from %s with %v: %v, want 429 ip_limit", ip, h, err)
	}
}

func hdr(k, v string) http.Header { return http.Header{k: {v}} }

// Without --trusted-proxies a forwarded header changes nothing: a client
// cannot pick its own per-IP bucket by sending one.
func TestSpoofedForwardedHeadersChangeNothing(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-connections-per-ip", "1")
	admitted(t, srv.URL, "127.0.0.1", hdr("X-Forwarded-For", "203.0.113.1"), "ann")
	for _, h := range []http.Header{
		hdr("X-Forwarded-For", "203.0.113.2"),
		hdr("Forwarded", "for=203.0.113.3"),
		{"X-Forwarded-For": {"203.0.113.4"}, "Forwarded": {"for=203.0.113.4"}},
		nil,
	} {
		refusedIPLimit(t, srv.URL, "127.0.0.1", h)
	}
	srv.WaitMetric(t, `chatd_connections_refused_total{reason="ip_limit"}`, 4)
	// A trusted list that does not name the peer changes nothing either.
	other := chatdtest.Start(t, "--max-connections-per-ip", "1", "--trusted-proxies", "10.0.0.0/8")
	admitted(t, other.URL, "127.0.0.1", hdr("X-Forwarded-For", "203.0.113.1"), "ann")
	refusedIPLimit(t, other.URL, "127.0.0.1", hdr("X-Forwarded-For", "203.0.113.2"))
}

// Behind a trusted proxy (127.0.0.2 here) the per-IP cap counts the
// client the proxy names: the right-most address of its header that is
// not a trusted proxy.
func TestTrustedProxyNamesTheClient(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-connections-per-ip", "1", "--trusted-proxies", "127.0.0.2/32, 127.0.0.4")
	const proxy, proxy2, direct = "127.0.0.2", "127.0.0.4", "127.0.0.3"
	admitted(t, srv.URL, proxy, hdr("X-Forwarded-For", "203.0.113.1"), "ann")
	admitted(t, srv.URL, proxy, hdr("X-Forwarded-For", "203.0.113.2"), "bob") // another client, same proxy
	refusedIPLimit(t, srv.URL, proxy, hdr("X-Forwarded-For", "203.0.113.1"))
	// The client wrote 198.51.100.9 itself; the proxy appended the address
	// it saw.
	refusedIPLimit(t, srv.URL, proxy, hdr("X-Forwarded-For", "198.51.100.9, 203.0.113.1"))
	// Through two trusted proxies.
	refusedIPLimit(t, srv.URL, proxy2, hdr("X-Forwarded-For", "203.0.113.2, 127.0.0.2"))
	admitted(t, srv.URL, proxy2, hdr("X-Forwarded-For", "203.0.113.3, 127.0.0.2"), "carl")
	// A client reaching the node directly is its own bucket, whatever it
	// claims.
	admitted(t, srv.URL, direct, hdr("X-Forwarded-For", "203.0.113.5"), "dan")
	refusedIPLimit(t, srv.URL, direct, hdr("X-Forwarded-For", "203.0.113.6"))
	// The proxy's own connections (no header) count as the proxy's.
	admitted(t, srv.URL, proxy, nil, "probe")
	refusedIPLimit(t, srv.URL, proxy, nil)
	// Forwarded is not read in x-forwarded-for mode.
	refusedIPLimit(t, srv.URL, proxy, hdr("Forwarded", "for=203.0.113.7"))
}

func TestTrustedProxyForwardedHeader(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-connections-per-ip", "1", "--trusted-proxies", "127.0.0.2", "--trusted-proxy-header", "forwarded")
	const proxy = "127.0.0.2"
	admitted(t, srv.URL, proxy, hdr("Forwarded", `for="203.0.113.1:1234";proto=https`), "ann")
	admitted(t, srv.URL, proxy, hdr("Forwarded", `for="[2001:db8::7]"`), "bob")
	refusedIPLimit(t, srv.URL, proxy, hdr("Forwarded", `for=198.51.100.9, for=203.0.113.1`))
	// X-Forwarded-For is not read in forwarded mode: the proxy's bucket.
	admitted(t, srv.URL, proxy, hdr("X-Forwarded-For", "203.0.113.9"), "carl")
	refusedIPLimit(t, srv.URL, proxy, hdr("X-Forwarded-For", "203.0.113.10"))
}

// The logs name the client the proxy names, and the socket peer otherwise.
func TestTrustedProxyInLogs(t *testing.T) {
	t.Parallel()
	p := chatdtest.StartProcess(t, "--trusted-proxies", "127.0.0.2", "--log-level", "info")
	for _, tc := range []struct{ ip, header, want string }{
		{"127.0.0.2", "203.0.113.44", `"remote":"203.0.113.44"`},
		{"127.0.0.3", "203.0.113.45", `"remote":"127.0.0.3:`},
	} {
		c, _, err := proxyDial(p.URL, tc.ip, hdr("X-Forwarded-For", tc.header))
		if err != nil {
			t.Fatal(err)
		}
		cl := chatdtest.Adopt(t, c)
		cl.Do(protocol.ClientFrame{Type: protocol.TypeHello, Name: "not a name"})
		if code, _ := cl.ExpectClose(); code != protocol.CloseAuthFailed {
			t.Fatalf("close %d", code)
		}
		chatdtest.Eventually(t, chatdtest.Timeout, "the hello refused logged with "+tc.want, func() (bool, string) {
			for _, line := range strings.Split(p.Logs().String(), "\n") {
				if strings.Contains(line, `"msg":"hello refused"`) && strings.Contains(line, tc.want) {
					return true, ""
				}
			}
			return false, "not yet"
		})
		if strings.Contains(p.Logs().String(), tc.header) && tc.ip != "127.0.0.2" {
			t.Fatalf("an untrusted peer's header reached the log:\n%s", p.Logs().String())
		}
	}
}
