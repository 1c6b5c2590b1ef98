package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

// The resolver walks the forwarded header from the right, past trusted
// proxies only: what a client wrote itself (left of the first untrusted
// hop) never counts.
func TestClientResolver(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	xff := &clientResolver{trusted: trusted, header: HeaderXForwardedFor}
	fwd := &clientResolver{trusted: trusted, header: HeaderForwarded}
	none := &clientResolver{header: HeaderXForwardedFor}
	for _, tc := range []struct {
		name    string
		r       *clientResolver
		peer    string
		headers map[string][]string
		want    string
		proxied bool
	}{
		{"no trusted proxies: headers ignored", none, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1"}}, "10.1.1.1", false},
		{"untrusted peer: headers ignored", xff, "198.51.100.7:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1"}}, "198.51.100.7", false},
		{"trusted peer, one hop", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1"}}, "203.0.113.1", true},
		{"the client's own entries are ignored", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"1.2.3.4, 203.0.113.1"}}, "203.0.113.1", true},
		{"a chain of trusted proxies", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"1.2.3.4, 203.0.113.1, 10.2.2.2,10.3.3.3"}}, "203.0.113.1", true},
		{"several header lines", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"1.2.3.4", "203.0.113.1, 10.2.2.2"}}, "203.0.113.1", true},
		{"ports and brackets", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"[2001:db9::1]:443"}}, "2001:db9::1", true},
		{"garbage stops the walk at the nearest known hop", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1, unknown, 10.2.2.2"}}, "10.2.2.2", true},
		{"garbage right away: the peer", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1, nonsense"}}, "10.1.1.1", false},
		{"all hops trusted: the left-most", xff, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"10.9.9.9, 10.2.2.2"}}, "10.9.9.9", true},
		{"no header from a trusted proxy: the proxy", xff, "10.1.1.1:5", nil, "10.1.1.1", false},
		{"xff mode ignores Forwarded", xff, "10.1.1.1:5", map[string][]string{"Forwarded": {"for=203.0.113.9"}}, "10.1.1.1", false},
		{"IPv4-mapped peer", xff, "[::ffff:10.1.1.1]:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1"}}, "203.0.113.1", true},
		{"IPv6 proxy", xff, "[2001:db8::5]:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1"}}, "203.0.113.1", true},

		{"Forwarded, one hop", fwd, "10.1.1.1:5", map[string][]string{"Forwarded": {`for=203.0.113.1;proto=https;by=10.1.1.1`}}, "203.0.113.1", true},
		{"Forwarded, quoted v6 with port", fwd, "10.1.1.1:5", map[string][]string{"Forwarded": {`for="[2001:db9::17]:4711"`}}, "2001:db9::17", true},
		{"Forwarded, the client's element ignored", fwd, "10.1.1.1:5", map[string][]string{"Forwarded": {`for=1.2.3.4, For="203.0.113.1";proto=http`}}, "203.0.113.1", true},
		{"Forwarded, a comma inside quotes", fwd, "10.1.1.1:5", map[string][]string{"Forwarded": {`for=203.0.113.1;host="a,b"`}}, "203.0.113.1", true},
		{"Forwarded, obfuscated hop", fwd, "10.1.1.1:5", map[string][]string{"Forwarded": {`for=203.0.113.1, for=_hidden, for=10.2.2.2`}}, "10.2.2.2", true},
		{"Forwarded, an element without for", fwd, "10.1.1.1:5", map[string][]string{"Forwarded": {`for=203.0.113.1, proto=https`}}, "10.1.1.1", false},
		{"forwarded mode ignores X-Forwarded-For", fwd, "10.1.1.1:5", map[string][]string{"X-Forwarded-For": {"203.0.113.1"}}, "10.1.1.1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.RemoteAddr = tc.peer
			for k, vs := range tc.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			got, proxied := tc.r.resolve(r)
			if got != tc.want || proxied != tc.proxied {
				t.Fatalf("resolve = %q, %v; want %q, %v", got, proxied, tc.want, tc.proxied)
			}
		})
	}
}
