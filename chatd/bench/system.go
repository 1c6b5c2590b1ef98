package bench

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// fdReserve is kept free for everything that is not a benchmark connection
// (stdio, the metrics client, the Go runtime's poller).
const fdReserve = 64

// RaiseFileLimit raises the soft open-file limit to the hard limit and
// returns the resulting soft limit. The hard limit can only be raised by
// root (or not at all in a container); it caps the connections one
// chatbench process can open.
func RaiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("getrlimit: %w", err)
		}
	}
	return rl.Cur, nil
}

// capConnections limits want to what the open-file limit allows and says
// so. (A loopback connection costs the client one descriptor; the server
// needs as many under its own limit.)
func capConnections(want int, limit uint64) (int, string) {
	if limit == 0 || uint64(want)+fdReserve <= limit {
		return want, ""
	}
	capped := int(limit) - fdReserve
	return capped, fmt.Sprintf("open-file limit %d (soft raised to hard; the hard limit cannot be raised here) caps this process at %d connections instead of %d: run several chatbench processes to go further",
		limit, capped, want)
}

// portRangeNote warns when the connections to one target exceed the local
// ephemeral port range (each connection from one source IP to one
// address:port needs its own source port).
func portRangeNote(perTarget int) string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return ""
	}
	var lo, hi int
	if _, err := fmt.Sscanf(string(b), "%d %d", &lo, &hi); err != nil || hi < lo {
		return ""
	}
	if n := hi - lo + 1; perTarget > n {
		return fmt.Sprintf("%d connections to one target exceed the %d local ports of ip_local_port_range; expect connect errors", perTarget, n)
	}
	return ""
}

// isLoopbackHost reports whether host (a name or an IP) is this machine's
// loopback: an IP in 127.0.0.0/8 or ::1, or "localhost".
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// CheckTargets validates the WebSocket URLs and refuses anything that is not
// on loopback unless allowRemote: a load generator pointed at someone
// else's server by mistake is an attack.
func CheckTargets(urls []string, allowRemote bool) error {
	if len(urls) == 0 {
		return fmt.Errorf("no --url given")
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("--url %q: %w", raw, err)
		}
		if u.Scheme != "ws" && u.Scheme != "wss" {
			return fmt.Errorf("--url %q: scheme must be ws or wss", raw)
		}
		host := u.Hostname()
		if host == "" {
			return fmt.Errorf("--url %q has no host", raw)
		}
		if allowRemote || isLoopbackHost(host) {
			continue
		}
		if net.ParseIP(host) == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
			cancel()
			if err == nil && len(addrs) > 0 && allLoopback(addrs) {
				continue
			}
		}
		return fmt.Errorf("--url %q is not a loopback address: pass --allow-remote to load a remote server (only one you are allowed to load)", raw)
	}
	return nil
}

func allLoopback(addrs []net.IPAddr) bool {
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return false
		}
	}
	return true
}
