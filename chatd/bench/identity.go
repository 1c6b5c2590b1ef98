package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/auth"
)

// TokenLifetime is the validity of the tokens chatbench mints: longer than
// any run, so that no connection is closed for an expired token mid-run
// (chatd closes a connection when its token expires).
const TokenLifetime = 24 * time.Hour

// MaxSourceAddrs is the largest --source-addrs: 127.0.0.2 … 127.0.0.255.
const MaxSourceAddrs = 254

// tokenMinter signs the HS256 tokens that authenticate chatbench's
// connections against a chatd started with --jwt-secret-file, as
// production runs it (without --allow-anonymous).
type tokenMinter struct {
	secret []byte
}

// loadTokenMinter reads the shared secret from path as chatd reads
// --jwt-secret-file (auth.ReadHMACSecretFile), so that the same file
// works for both. A secret chatd would refuse is refused here at once,
// rather than by the server once per connection.
func loadTokenMinter(path string) (*tokenMinter, error) {
	secret, err := auth.ReadHMACSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("--token-secret-file: %w", err)
	}
	if len(secret) < auth.MinHMACSecretLen {
		return nil, fmt.Errorf("--token-secret-file %s: the secret is %d bytes; chatd needs at least %d for HS256", path, len(secret), auth.MinHMACSecretLen)
	}
	return &tokenMinter{secret: secret}, nil
}

// mint returns a token for user: sub is the user, exp is TokenLifetime
// from now. It has no rooms claim, so the user may join any room, and no
// iss or aud (start chatd without --jwt-issuer and --jwt-audience).
func (m *tokenMinter) mint(user string, now time.Time) (string, error) {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user,
		"iat": now.Unix(),
		"exp": now.Add(TokenLifetime).Unix(),
	})
	s, err := tok.SignedString(m.secret)
	if err != nil {
		return "", fmt.Errorf("sign token for %s: %w", user, err)
	}
	return s, nil
}

// CheckSourceAddrs validates --source-addrs: loopback source addresses can
// reach only a loopback server, so they exclude --allow-remote, and the
// URLs must not name an IPv6 address (an IPv4 source cannot reach it).
func CheckSourceAddrs(n int, allowRemote bool, urls []string) error {
	switch {
	case n == 0:
		return nil
	case n < 0 || n > MaxSourceAddrs:
		return fmt.Errorf("--source-addrs %d: want 0 (the kernel's choice) to %d", n, MaxSourceAddrs)
	case allowRemote:
		return errors.New("--source-addrs binds loopback source addresses (127.0.0.2 …), which cannot reach a remote server: use it without --allow-remote, against a loopback --url")
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("--url %q: %w", raw, err)
		}
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.To4() == nil {
			return fmt.Errorf("--url %q: --source-addrs binds IPv4 loopback addresses, which cannot reach an IPv6 target", raw)
		}
	}
	return nil
}

// sourceAddr is the source address of the i-th connection when they are
// spread round robin over n loopback addresses, 127.0.0.2 … 127.0.0.(n+1):
// chatd caps connections per client IP (--max-connections-per-ip, 1000 by
// default), and the whole of 127.0.0.0/8 is this machine's, so 20
// addresses carry 20,000 connections under the production cap. nil when
// n is 0: the kernel picks (127.0.0.1 for a loopback target).
func sourceAddr(i, n int) net.IP {
	if n <= 0 {
		return nil
	}
	return net.IPv4(127, 0, 0, byte(2+i%n))
}

// netDial returns the dial function for gorilla's Dialer: nil (the
// default dialer) without a source address, else one bound to local. It
// dials over IPv4 only, since local is an IPv4 address ("localhost" may
// resolve to ::1 first).
func netDial(local net.IP) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if local == nil {
		return nil
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}}
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp4", addr)
		if err != nil {
			return nil, fmt.Errorf("from %s: %w", local, err)
		}
		return c, nil
	}
}
