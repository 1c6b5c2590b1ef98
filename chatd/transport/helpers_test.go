package transport

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/internal/devpki"
)

const (
	testLabel = "test-cluster"
	testProto = 2
)

// clusterCA signs the certificates of every test node unless a test says
// otherwise; made once per test binary.
var clusterCA = sync.OnceValue(func() *devpki.CA {
	ca, err := devpki.NewCA("transport test CA", 24*time.Hour)
	if err != nil {
		panic(err)
	}
	return ca
})

// newCA makes another CA, for tests about trust.
func newCA(t testing.TB, name string) *devpki.CA {
	t.Helper()
	ca, err := devpki.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue signs leaf with ca and returns it as a tls.Certificate.
func issue(t testing.TB, ca *devpki.CA, leaf devpki.Leaf) *tls.Certificate {
	t.Helper()
	c, k, err := ca.Issue(leaf)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// nodeCert is a certificate for name, valid for a day, signed by ca.
func nodeCert(t testing.TB, ca *devpki.CA, name string) *tls.Certificate {
	t.Helper()
	return issue(t, ca, devpki.Leaf{DNSNames: []string{name}})
}

func poolOf(cas ...*devpki.CA) *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range cas {
		p.AddCert(ca.Cert)
	}
	return p
}

// testCreds are Credentials a test can change while the transport runs,
// as reloaded files would.
type testCreds struct {
	mu   sync.Mutex
	cert *tls.Certificate
	pool *x509.CertPool
}

func (c *testCreds) Certificate() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, nil
}

func (c *testCreds) CAs() (*x509.CertPool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pool, nil
}

func (c *testCreds) set(cert *tls.Certificate, pool *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert != nil {
		c.cert = cert
	}
	if pool != nil {
		c.pool = pool
	}
}

// failsafe bounds every wait in the tests, so a bug fails a test instead of
// hanging the run; nothing waits for it on the success path. It is
// testtime.Timeout, scaled by RINGCHAT_TEST_TIMEOUT_SCALE.
var failsafe = testtime.Timeout

// logBuffer collects a node's logs so tests can assert on them; they are
// printed when a test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// event is something a recorder saw, in the order its reader saw it.
type event struct {
	kind    string // "push", "request" or "reply"
	from    string
	addr    string
	payload string
}

// recorder is a Handler that records what it handles. By default it answers
// a request by echoing it; onRequest and onPush override that (and run after
// the event is recorded).
type recorder struct {
	mu        sync.Mutex
	events    []event
	changed   chan struct{}
	onPush    func(from Peer, payload []byte)
	onRequest func(from Peer, payload []byte, reply Reply)
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) add(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) HandlePush(from Peer, payload []byte) {
	r.add(event{kind: "push", from: from.Name, addr: from.Addr, payload: string(payload)})
	if r.onPush != nil {
		r.onPush(from, payload)
	}
}

func (r *recorder) HandleRequest(from Peer, payload []byte, reply Reply) {
	r.add(event{kind: "request", from: from.Name, addr: from.Addr, payload: string(payload)})
	if r.onRequest != nil {
		r.onRequest(from, payload, reply)
		return
	}
	_ = reply.OK(append([]byte("echo:"), payload...))
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// wait returns the events once there are at least n.
func (r *recorder) wait(t testing.TB, n int) []event {
	t.Helper()
	deadline := time.NewTimer(failsafe)
	defer deadline.Stop()
	for {
		if evs := r.snapshot(); len(evs) >= n {
			return evs
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d events; have %d: %v", n, len(r.snapshot()), r.snapshot())
		}
	}
}

// countingMetrics counts what the transport reports.
type countingMetrics struct {
	sentFrames, sentBytes, recvFrames, recvBytes atomic.Int64
	queueFull, dropped, reconnects               atomic.Int64
	mu                                           sync.Mutex
	authFailures                                 map[string]int
}

func (m *countingMetrics) FramesSent(_ string, f, b int) {
	m.sentFrames.Add(int64(f))
	m.sentBytes.Add(int64(b))
}

func (m *countingMetrics) FramesReceived(_ string, f, b int) {
	m.recvFrames.Add(int64(f))
	m.recvBytes.Add(int64(b))
}
func (m *countingMetrics) QueueFull(string)              { m.queueFull.Add(1) }
func (m *countingMetrics) FramesDropped(_ string, n int) { m.dropped.Add(int64(n)) }
func (m *countingMetrics) Reconnect(string)              { m.reconnects.Add(1) }
func (m *countingMetrics) AuthFailure(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.authFailures == nil {
		m.authFailures = make(map[string]int)
	}
	m.authFailures[reason]++
}

func (m *countingMetrics) auth(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.authFailures[reason]
}

type testNode struct {
	*Transport
	peer    Peer
	rec     *recorder // nil when the test passed a Handler other than a recorder
	logs    *logBuffer
	metrics *countingMetrics
	creds   *testCreds // nil when the test passed other Credentials
}

func testConfig(t testing.TB, name string) Config {
	return Config{
		NodeName:        name,
		ListenAddr:      "127.0.0.1:0",
		Credentials:     &testCreds{cert: nodeCert(t, clusterCA(), name), pool: poolOf(clusterCA())},
		ProtocolVersion: testProto,
		ClusterLabel:    testLabel,
		// Bounds that a loaded machine must not hit, scaled like every
		// other; tests about these timeouts set their own.
		HandshakeTimeout: testtime.Bound(2 * time.Second),
		RequestTimeout:   testtime.Bound(5 * time.Second),
		// Short backoffs keep reconnection tests fast; tests about backoff
		// itself set their own.
		BackoffMin: time.Millisecond,
		BackoffMax: 20 * time.Millisecond,
	}
}

// startNode starts a Transport named name, closed when the test ends. h nil
// means a fresh recorder; edit may adjust the config.
func startNode(t testing.TB, name string, h Handler, edit func(*Config)) *testNode {
	t.Helper()
	cfg := testConfig(t, name)
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m := &countingMetrics{}
	cfg.Metrics = m
	if edit != nil {
		edit(&cfg)
	}
	rec, _ := h.(*recorder)
	if h == nil {
		rec = newRecorder()
		h = rec
	}
	tr, err := New(cfg, h)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("close %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("logs of %s:\n%s", name, logs)
		}
	})
	creds, _ := cfg.Credentials.(*testCreds)
	return &testNode{Transport: tr, peer: Peer{Name: name, Addr: tr.Addr()}, rec: rec, logs: logs, metrics: m, creds: creds}
}

type answer struct {
	payload []byte
	err     error
}

// request issues a Request and returns a channel that receives its answer,
// and a counter of how many times onReply was called.
func request(n *testNode, to Peer, payload string, timeout time.Duration) (<-chan answer, *atomic.Int32) {
	ch := make(chan answer, 4)
	var calls atomic.Int32
	n.Request(to, []byte(payload), timeout, func(p []byte, err error) {
		calls.Add(1)
		ch <- answer{p, err}
	})
	return ch, &calls
}

func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failsafe):
		t.Fatal("timed out waiting on channel")
	}
	panic("unreachable")
}

// waitUntil polls cond, for state that has no event to wait on (counters
// updated after the fact, goroutines exiting).
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failsafe)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitLog(t testing.TB, n *testNode, substr string) {
	t.Helper()
	waitUntil(t, "log contains "+substr, func() bool { return strings.Contains(n.logs.String(), substr) })
}

// rawFrame encodes a frame by hand, so tests can also build invalid ones.
func rawFrame(length uint32, kind byte, id uint64, payload []byte) []byte {
	b := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
	binary.BigEndian.PutUint32(b, length)
	b[4] = kind
	binary.BigEndian.PutUint64(b[5:], id)
	return append(b, payload...)
}

func pushFrame(payload string) []byte {
	return rawFrame(uint32(frameBodyMin+len(payload)), kindPush, 0, []byte(payload))
}

// dialAuthenticated opens a raw stream to target that has completed the
// handshake as name (with a certificate for name), for tests that then
// misbehave as a member.
func dialAuthenticated(t testing.TB, target *testNode, name string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(failsafe))
	creds := &testCreds{cert: nodeCert(t, clusterCA(), name), pool: poolOf(clusterCA())}
	tc, _, err := dialHandshake(conn, creds, hello{proto: testProto, label: testLabel, name: name, addr: "127.0.0.1:1", target: target.Name()})
	if err != nil {
		t.Fatalf("raw handshake: %v", err)
	}
	_ = conn.SetDeadline(time.Time{})
	return tc
}

// dialRaw opens a plain TCP connection to n.
func dialRaw(t testing.TB, n *testNode) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// waitClosedByPeer reads conn until the other side closes it and fails if
// that takes longer than within. It returns what was read.
func waitClosedByPeer(t testing.TB, conn net.Conn, within time.Duration) []byte {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %v", within)
	}
	return b
}
