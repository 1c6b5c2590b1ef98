package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Forwarded-header names for Config.ProxyHeader.
const (
	HeaderXForwardedFor = "x-forwarded-for"
	HeaderForwarded     = "forwarded"
)

// clientResolver finds the client's address of a request: the socket
// peer's, unless the peer is a trusted proxy; then the right-most address
// of the forwarded header that is not a trusted proxy. Each proxy appends
// the address it got the request from, so everything left of the last
// untrusted entry was written by the client itself and is ignored: a
// client cannot pick its own per-IP bucket.
//
// One header only: a proxy that appends to X-Forwarded-For passes a
// client's Forwarded header through untouched (and the other way round),
// so reading the other one would let the client choose its address.
type clientResolver struct {
	trusted []netip.Prefix
	header  string
}

// resolve returns the client address, and whether it came from the
// forwarded header (the socket peer being a trusted proxy).
func (c *clientResolver) resolve(r *http.Request) (string, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(c.trusted) == 0 {
		return host, false
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || !c.isTrusted(peer) {
		return host, false
	}
	var hops []netip.Addr
	if c.header == HeaderForwarded {
		hops = forwardedFor(r.Header.Values("Forwarded"))
	} else {
		hops = xForwardedFor(r.Header.Values("X-Forwarded-For"))
	}
	nearest := peer.Unmap()
	for i := len(hops) - 1; i >= 0; i-- {
		a := hops[i]
		if !a.IsValid() {
			// "unknown", an obfuscated name or garbage: nothing left of it
			// can be placed; the nearest known hop stands for the client.
			break
		}
		if !c.isTrusted(a) {
			return a.String(), true
		}
		nearest = a
	}
	return nearest.String(), nearest != peer.Unmap()
}

func (c *clientResolver) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// xForwardedFor lists the addresses of X-Forwarded-For header lines, left
// to right; an entry that is not an address is the zero Addr.
func xForwardedFor(lines []string) []netip.Addr {
	var out []netip.Addr
	for _, line := range lines {
		for _, entry := range strings.Split(line, ",") {
			out = append(out, parseHop(strings.TrimSpace(entry)))
		}
	}
	return out
}

// forwardedFor lists the "for" addresses of Forwarded header lines (RFC
// 7239), left to right; an element without "for", or whose "for" is not
// an address ("unknown", an obfuscated "_name"), is the zero Addr.
func forwardedFor(lines []string) []netip.Addr {
	var out []netip.Addr
	for _, line := range lines {
		for _, elem := range splitOutsideQuotes(line, ',') {
			if strings.TrimSpace(elem) == "" {
				continue
			}
			var hop netip.Addr
			for _, pair := range splitOutsideQuotes(elem, ';') {
				name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(name), "for") {
					continue
				}
				value = strings.TrimSpace(value)
				if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
					value = strings.ReplaceAll(value[1:len(value)-1], `\`, "")
				}
				hop = parseHop(value)
			}
			out = append(out, hop)
		}
	}
	return out
}

// splitOutsideQuotes splits s at sep, except inside quoted strings.
func splitOutsideQuotes(s string, sep byte) []string {
	var parts []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case c == '\\' && quoted:
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// parseHop reads one hop's address: an IP, an IP with a port, or a
// bracketed IPv6 address with or without a port. Anything else is the
// zero Addr.
func parseHop(s string) netip.Addr {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}
