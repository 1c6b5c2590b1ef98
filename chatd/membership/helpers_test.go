package membership

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// logRecorder is a slog handler that keeps records in memory. Tests must
// not call t.Log from a handler: memberlist's goroutines may still log after
// a test has finished, which would panic. Records are dumped from a cleanup
// when the test failed.
type logRecorder struct {
	mu   sync.Mutex
	recs []string
}

type recHandler struct {
	r     *logRecorder
	attrs []slog.Attr
}

func (h *recHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recHandler) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %q", rec.Time.Format("15:04:05.000"), rec.Level, rec.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.r.mu.Lock()
	h.r.recs = append(h.r.recs, b.String())
	h.r.mu.Unlock()
	return nil
}

func (h *recHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recHandler{r: h.r, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *recHandler) WithGroup(string) slog.Handler { return h }

// contains reports whether some record contains every fragment.
func (r *logRecorder) contains(fragments ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
next:
	for _, rec := range r.recs {
		for _, f := range fragments {
			if !strings.Contains(rec, f) {
				continue next
			}
		}
		return true
	}
	return false
}

// waitLog waits until some record contains every fragment. Logs are written
// after the view is published, so a test that just saw a view change must
// wait for the matching log line rather than expect it already there.
func (r *logRecorder) waitLog(t *testing.T, timeout time.Duration, fragments ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !r.contains(fragments...) {
		if time.Now().After(deadline) {
			t.Errorf("no log record with %q after %s", fragments, timeout)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *logRecorder) dump(t *testing.T, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.recs {
		t.Logf("[%s] %s", name, rec)
	}
}

// testNode is a Membership with its log recorder.
type testNode struct {
	*Membership
	name string
	logs *logRecorder
}

// testConfig is a fast single-host configuration.
func testConfig(name string) Config {
	return Config{
		NodeName:   name,
		BindAddr:   "127.0.0.1",
		Profile:    ProfileLocal,
		SettleTime: 100 * time.Millisecond,
		Meta:       Meta{RPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", Proto: 1},
	}
}

// newNode creates (but does not start) a node, shut down at cleanup.
func newNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	logs := &logRecorder{}
	cfg.Logger = slog.New(&recHandler{r: logs, attrs: []slog.Attr{slog.String("node", cfg.NodeName)}})
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	n := &testNode{Membership: m, name: cfg.NodeName, logs: logs}
	t.Cleanup(func() {
		if t.Failed() {
			logs.dump(t, cfg.NodeName)
		}
	})
	t.Cleanup(func() {
		if err := m.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.NodeName, err)
		}
	})
	return n
}

// startNode creates and starts a node; Start must succeed.
func startNode(t *testing.T, cfg Config) *testNode {
	t.Helper()
	n := newNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), testtime.Timeout)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeName, err)
	}
	return n
}

// startCluster starts n nodes: the first bootstraps, the others seed from it.
func startCluster(t *testing.T, n int, mutate func(*Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, 0, n)
	for i := range n {
		cfg := testConfig(fmt.Sprintf("node-%d", i))
		if i == 0 {
			cfg.Bootstrap = true
		} else {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		if mutate != nil {
			mutate(&cfg)
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	return nodes
}

// waitView waits, on a subscription, until pred holds for n's view, and
// returns that view. It fails the test at the deadline.
func waitView(t *testing.T, n *testNode, timeout time.Duration, desc string, pred func(View) bool) View {
	t.Helper()
	ch, cancel := n.Subscribe()
	defer cancel()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var last View
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				t.Fatalf("%s: subscription closed while waiting for %s", n.name, desc)
			}
			last = v
			if pred(v) {
				return v
			}
		case <-deadline.C:
			t.Fatalf("%s: timed out after %s waiting for %s; last view v%d %v", n.name, timeout, desc, last.Version, last.Names())
		}
	}
}

// waitReady polls Ready until it is true. Readiness is a function of time
// (the settle window), so there is no event to wait on.
func waitReady(t *testing.T, n *testNode, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, reason := n.Ready()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after %s: %s", n.name, timeout, reason)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasNames reports whether v's members are exactly names, in order.
func hasNames(names ...string) func(View) bool {
	return func(v View) bool { return slices.Equal(v.Names(), names) }
}

// reservePorts returns n distinct loopback ports that were free for both TCP
// and UDP a moment ago; all are held until every one is picked, so they
// differ. Used where a node must be reachable at an address known before it
// starts.
func reservePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserve port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			l.Close()
			continue
		}
		closers = append(closers, func() { l.Close(); pc.Close() })
		ports = append(ports, port)
	}
	return ports
}
