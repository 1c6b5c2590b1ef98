package chatdtest

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/app"
	"github.com/ringchat/ringchat/chatd/client"
)

// StartWith runs a chatd node configured by base followed by args, and
// nothing else: unlike Start it does not allow anonymous clients unless the
// flags say so. Tests of authentication use it with a --jwt-secret-file
// base (see SecretFile).
// The node listens on a free loopback port and stops when the test ends.
func StartWith(t testing.TB, base []string, args ...string) *Server {
	t.Helper()
	flags := make([]string, 0, len(base)+len(args))
	flags = append(flags, base...)
	flags = append(flags, args...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return serve(t, ln, flags)
}

// StartErr runs chatd configured by exactly flags, like StartWith, for a
// configuration chatd must refuse to start with: it returns the error chatd
// stops with. A node that starts anyway is stopped after Timeout, and
// StartErr then returns nil. Flags that do not parse fail the test.
func StartErr(t testing.TB, flags ...string) error {
	t.Helper()
	cfg, err := loadConfig(flags)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	opts := app.Options{}
	if cfg.AdminListen != "" {
		// Listened on here, as serve does, so that ":0" works.
		adminLn, _, err := adminListener(&cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer adminLn.Close()
		opts.AdminListener = adminLn
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	err = app.ServeWithOptions(ctx, cfg, ln, testLog(), opts)
	if ctx.Err() != nil {
		return nil // it served until stopped
	}
	return err
}

// Metric returns the current value of one series from the node's /metrics
// endpoint (on its admin listener), e.g. "chatd_connections" or
// `chatd_connection_closes_total{code="4008"}`. A series that has not been
// created yet (a labelled counter never incremented) reads as 0.
func (s *Server) Metric(t testing.TB, series string) float64 {
	t.Helper()
	v, err := s.metric(series)
	if err != nil {
		t.Fatalf("metric %s: %v", series, err)
	}
	return v
}

// WaitMetric polls the node's /metrics until series has the value want,
// failing the test after Timeout. It is how tests wait for something the
// server does asynchronously (a connection torn down, a queue overflowing)
// without sleeping blindly.
func (s *Server) WaitMetric(t testing.TB, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	var last float64
	for {
		v, err := s.metric(series)
		if err != nil {
			t.Fatalf("metric %s: %v", series, err)
		}
		if v == want {
			return
		}
		last = v
		if time.Now().After(deadline) {
			t.Fatalf("metric %s is %v after %v, want %v", series, last, Timeout, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) metric(series string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.AdminURL("/metrics"), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, errors.New("GET /metrics: " + resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	prefix := series + " "
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, sc.Err()
}

// Adopt binds a connection made with the client package directly (to send
// an Origin header, or after polling client.Dial until the server admits
// it) to t, so that the Expect helpers work on it. The connection is closed
// when the test ends.
func Adopt(t testing.TB, c *client.Conn) *Client {
	t.Helper()
	t.Cleanup(c.Close)
	return &Client{Conn: c, t: t}
}

// SecretFile writes content to a new file, readable by its owner only, in
// a directory removed when the test ends, and returns its path: chatd
// takes secrets from files only.
func SecretFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}
