package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// validateAdmin checks the admin listener's settings: an admin API
// reachable beyond loopback must require a token.
func (c *Config) validateAdmin() []error {
	var errs []error
	if c.AdminListen == "" {
		if c.AdminTokenFile != "" {
			errs = append(errs, errors.New("--admin-token-file needs --admin-listen: the admin API is only served there"))
		}
		if c.MetricsRequireToken {
			errs = append(errs, errors.New("--metrics-require-token needs --admin-listen: /metrics is only served there"))
		}
		if c.APIKeyFile != "" {
			errs = append(errs, errors.New("--api-key-file needs --admin-listen: the server API (/api/v1/) is only served there, never on the client port"))
		}
		return errs
	}
	host, port, err := net.SplitHostPort(c.AdminListen)
	if err != nil {
		return append(errs, fmt.Errorf("--admin-listen %q: want host:port: %w", c.AdminListen, err))
	}
	if port == "" {
		errs = append(errs, fmt.Errorf("--admin-listen %q has no port", c.AdminListen))
	}
	if c.AdminListen == c.Listen {
		errs = append(errs, fmt.Errorf("--admin-listen must differ from --listen (%s): the admin API and /metrics are never served on the client port", c.Listen))
	}
	if c.AdminTokenFile == "" && !IsLoopbackHost(host) {
		errs = append(errs, fmt.Errorf("--admin-listen %s is not a loopback address: an admin listener reachable from other machines needs --admin-token-file (or listen on 127.0.0.1:%s)", c.AdminListen, port))
	}
	if c.MetricsRequireToken && c.AdminTokenFile == "" {
		errs = append(errs, errors.New("--metrics-require-token needs --admin-token-file"))
	}
	return errs
}

// IsLoopbackHost reports whether host (of a listen address) names only
// loopback interfaces: "localhost" or a loopback IP. An empty host, which
// listens on every interface, is not loopback.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// ParseTrustedProxies parses --trusted-proxies: comma-separated CIDRs
// ("10.0.0.0/8") or single addresses ("10.1.2.3", taken as /32 or /128).
// An empty string gives no prefix: forwarded headers are then ignored.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if strings.Contains(part, "/") {
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("--trusted-proxies: %q is not a CIDR: %w", part, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(part)
		if err != nil {
			return nil, fmt.Errorf("--trusted-proxies: %q is not an IP address or CIDR: %w", part, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
