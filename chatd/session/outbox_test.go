package session_test

// These tests drive a Session's outbox and writer: a real gorilla/websocket
// server connection (upgraded by a real net/http server) and a real gorilla
// client, joined by net.Pipe instead of TCP. A pipe has no buffer: the
// session's writer stays blocked in its socket write until the client
// reads, which is exactly a slow consumer, at a moment the test chooses.
// Each test runs in a testing/synctest bubble, so synctest.Wait tells when
// the writer is blocked, and the bubble's clock (which moves only when every
// goroutine waits) times the write coalescing exactly, without sleeping.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringchat/ringchat/chatd/coalesce"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/session"
)

// pipeListener hands out one connection, then waits until it is closed.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// testConfig returns the limits the outbox tests need; the read side is not
// used (Run is not called: the test plays the hub, calling Enqueue).
func testConfig() session.Config {
	return session.Config{
		QueueFrames:  1000,
		BatchBytes:   32 << 10,
		WriteTimeout: time.Minute,
	}
}

// newPipeSession returns a session and the client end of its WebSocket.
// It must be called inside the test's bubble.
func newPipeSession(t *testing.T, cfg session.Config) (*session.Session, *websocket.Conn, *metrics.Metrics) {
	t.Helper()
	clientEnd, serverEnd := net.Pipe()
	l := &pipeListener{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.conns <- serverEnd
	// The upgrader as chatd/server configures it.
	up := websocket.Upgrader{ReadBufferSize: 256, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{}}
	upgraded := make(chan *websocket.Conn, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Errorf("upgrade: %v", err)
		}
		upgraded <- ws
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	d := websocket.Dialer{NetDialContext: func(context.Context, string, string) (net.Conn, error) { return clientEnd, nil }}
	client, resp, err := d.Dial("ws://pipe/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	_ = resp.Body.Close()
	ws := <-upgraded
	if ws == nil {
		t.FailNow()
	}
	// The HTTP server's part is over; the hijacked connection lives on.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("serve: %v", err)
	}
	// The client does not answer close frames: the session's read loop,
	// which would read the answer, does not run here.
	client.SetCloseHandler(func(int, string) error { return nil })
	m := metrics.New()
	s := session.New(ws, &cfg, session.Deps{Metrics: m, Log: slog.New(slog.DiscardHandler)}, "pipe")
	t.Cleanup(func() { _ = client.Close(); _ = serverEnd.Close() })
	return s, client, m
}

// frameN is a distinct small frame.
func frameN(n int) []byte { return []byte(fmt.Sprintf(`{"type":"message","seq":%d}`, n)) }

// sized is a distinct frame of exactly size bytes (the outbox does not
// look into frames).
func sized(name string, size int) []byte {
	return []byte(name + strings.Repeat(".", size-len(name)))
}

// readMessage reads one WebSocket message and splits it into frames.
func readMessage(t *testing.T, c *websocket.Conn) [][]byte {
	t.Helper()
	mt, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("message type %d, want text", mt)
	}
	return bytes.Split(data, []byte("\n"))
}

// expectMessage reads one message and checks it carries exactly want.
func expectMessage(t *testing.T, c *websocket.Conn, want ...[]byte) {
	t.Helper()
	got := readMessage(t, c)
	if !equalFrames(got, want) {
		t.Fatalf("message carried\n\t%s\nwant\n\t%s", bytes.Join(got, []byte("\n\t")), bytes.Join(want, []byte("\n\t")))
	}
}

func equalFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// expectClose reads the close frame that must come next.
func expectClose(t *testing.T, c *websocket.Conn, code int, reason string) {
	t.Helper()
	_, data, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read %q, %v; want close %d", data, err, code)
	}
	if ce.Code != code || ce.Text != reason {
		t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Text, code, reason)
	}
}

// TestFramesQueuedWhileWritingShareOneMessage: frames queued while the
// writer is busy leave together, in order, newline-separated, in one
// WebSocket message: one write for many frames.
func TestFramesQueuedWhileWritingShareOneMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, c, m := newPipeSession(t, testConfig())
		s.Enqueue(frameN(1))
		synctest.Wait() // the writer is blocked in its write: the client has not read
		for n := 2; n <= 5; n++ {
			s.Enqueue(frameN(n))
		}
		expectMessage(t, c, frameN(1))
		expectMessage(t, c, frameN(2), frameN(3), frameN(4), frameN(5))
		synctest.Wait()
		if w, f := testutil.ToFloat64(m.WritesOut), testutil.ToFloat64(m.FramesOut); w != 2 || f != 5 {
			t.Fatalf("chatd_writes_total %v, chatd_frames_sent_total %v; want 2 and 5", w, f)
		}
	})
}

// TestBatchBytesBoundsAMessage: a batch is cut before a frame that would
// take the message (newlines included) past BatchBytes; a frame larger than
// BatchBytes goes alone.
func TestBatchBytesBoundsAMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.BatchBytes = 40
		s, c, _ := newPipeSession(t, cfg)
		s.Enqueue(frameN(0))
		synctest.Wait()
		a, b, cc, d, e := sized("a", 13), sized("b", 13), sized("c", 13), sized("d", 13), sized("e", 13)
		big := sized("big", 50)
		for _, f := range [][]byte{a, b, cc, big, d, e} {
			s.Enqueue(f)
		}
		expectMessage(t, c, frameN(0))
		expectMessage(t, c, a, b) // 27 bytes; with c and its newline, 41
		expectMessage(t, c, cc)
		expectMessage(t, c, big)
		expectMessage(t, c, d, e)
	})
}

// TestCoalesceWaitsOnlyOnABusyConnection: a quiet connection's frame is
// written at once; on a connection that has just written, while the node
// is busy writing, the writer waits for the coalescer's window so that the
// frames queued meanwhile share the write; on a node that is not busy
// writing, or with no coalescer, it never waits.
func TestCoalesceWaitsOnlyOnABusyConnection(t *testing.T) {
	const window = 5 * time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.Coalescer = coalesce.New(window)
		s, c, _ := newPipeSession(t, cfg)
		busy := func() { // the node spent a whole period writing
			start := time.Now()
			time.Sleep(coalesce.Period)
			cfg.Coalescer.Record(start, time.Now())
		}

		busy()
		start := time.Now()
		s.Enqueue(frameN(1))
		expectMessage(t, c, frameN(1))
		if d := time.Since(start); d != 0 {
			t.Fatalf("a quiet connection's frame was written after %v, want at once", d)
		}
		synctest.Wait() // that writer is gone: the next frame starts another

		start = time.Now()
		s.Enqueue(frameN(2))
		s.Enqueue(frameN(3))
		s.Enqueue(frameN(4))
		expectMessage(t, c, frameN(2), frameN(3), frameN(4))
		if d := time.Since(start); d != window {
			t.Fatalf("a busy connection's frames were written after %v on a busy node, want the window (%v)", d, window)
		}
		synctest.Wait()

		time.Sleep(time.Second) // quiet again
		start = time.Now()
		s.Enqueue(frameN(5))
		expectMessage(t, c, frameN(5))
		if d := time.Since(start); d != 0 {
			t.Fatalf("a connection quiet again was written after %v, want at once", d)
		}
		synctest.Wait()

		// A busy connection on a node that wrote nothing for two periods
		// (the pipe's writes take no time in the bubble): at once.
		s.Enqueue(frameN(6))
		expectMessage(t, c, frameN(6))
		synctest.Wait()
		start = time.Now()
		s.Enqueue(frameN(7))
		expectMessage(t, c, frameN(7))
		if d := time.Since(start); d != 0 {
			t.Fatalf("a busy connection on a quiet node was written after %v, want at once", d)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		s, c, _ := newPipeSession(t, testConfig()) // no coalescer
		s.Enqueue(frameN(1))
		expectMessage(t, c, frameN(1))
		synctest.Wait()
		start := time.Now()
		s.Enqueue(frameN(2))
		expectMessage(t, c, frameN(2))
		if d := time.Since(start); d != 0 {
			t.Fatalf("without a coalescer a busy connection was written after %v, want at once", d)
		}
	})
}

// TestQueueOverflowClosesWith4008: while the writer is stuck on a client
// that does not read, QueueFrames frames fit in the queue; the next one
// closes the connection with 4008 and the documented reason, discarding
// what was queued. Enqueue returns at once throughout: were it to block,
// the bubble would deadlock (the writer waits for the client, the client
// is this goroutine) and the test would fail.
func TestQueueOverflowClosesWith4008(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.QueueFrames = 4
		s, c, m := newPipeSession(t, cfg)
		s.Enqueue(frameN(0))
		synctest.Wait()
		for n := 1; n <= cfg.QueueFrames; n++ {
			s.Enqueue(frameN(n))
		}
		if o := testutil.ToFloat64(m.QueueOverflows); o != 0 {
			t.Fatalf("chatd_queue_overflows_total %v with QueueFrames frames queued, want 0", o)
		}
		s.Enqueue(frameN(cfg.QueueFrames + 1))
		if o := testutil.ToFloat64(m.QueueOverflows); o != 1 {
			t.Fatalf("chatd_queue_overflows_total %v after QueueFrames+1 frames, want 1", o)
		}
		for n := cfg.QueueFrames + 2; n <= 1000; n++ {
			s.Enqueue(frameN(n))
		}
		if o := testutil.ToFloat64(m.QueueOverflows); o != 1 {
			t.Fatalf("chatd_queue_overflows_total %v, want 1: one overflow closes once", o)
		}
		select {
		case <-s.CloseWritten():
			t.Fatal("the close was written while the writer was still stuck")
		default:
		}
		// A shutdown now does not change the close decided.
		s.Close(protocol.CloseServiceRestart, "server restarting, reconnect and resume")

		expectMessage(t, c, frameN(0))
		expectClose(t, c, protocol.CloseSlowConsumer, "slow consumer: outgoing queue overflowed")
		<-s.CloseWritten()
		if n := testutil.ToFloat64(m.Closes.WithLabelValues("4008")); n != 1 {
			t.Fatalf(`chatd_connection_closes_total{code="4008"} %v, want 1`, n)
		}
	})
}

// TestCloseFlushesWhatIsQueued: Close (the 1012 of a shutdown) sends what
// is already queued, then the close frame; frames queued after it are
// dropped, and cannot overflow the queue into another close code: the first
// close decided wins.
func TestCloseFlushesWhatIsQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.QueueFrames = 4
		s, c, m := newPipeSession(t, cfg)
		s.Enqueue(frameN(0))
		synctest.Wait()
		s.Enqueue(frameN(1))
		s.Enqueue(frameN(2))
		s.Close(protocol.CloseServiceRestart, "server restarting, reconnect and resume")
		s.Close(websocket.CloseGoingAway, "a second close")
		for n := 3; n <= 100; n++ {
			s.Enqueue(frameN(n))
		}
		expectMessage(t, c, frameN(0))
		expectMessage(t, c, frameN(1), frameN(2))
		expectClose(t, c, protocol.CloseServiceRestart, "server restarting, reconnect and resume")
		<-s.CloseWritten()
		if o := testutil.ToFloat64(m.QueueOverflows); o != 0 {
			t.Fatalf("chatd_queue_overflows_total %v after a close, want 0", o)
		}
	})
}

// TestStalledClientIsDroppedAtWriteTimeout: a client that stops reading
// with the socket full (here: never reads a pipe that has no buffer) holds
// the writer in its socket write; at WriteTimeout, not before, the writer
// gives up and the connection is aborted (no close frame can be written to
// a stalled socket). Frames queued after that are dropped without counting
// as an overflow. Were the write deadline missing, every goroutine of the
// bubble would block for good and synctest would fail the test.
func TestStalledClientIsDroppedAtWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig()
		cfg.WriteTimeout = 10 * time.Second
		s, _, m := newPipeSession(t, cfg)
		start := time.Now()
		s.Enqueue(frameN(0))
		synctest.Wait() // the writer is blocked in its write
		select {
		case <-s.CloseWritten():
			t.Fatal("the writer finished while its write was still blocked")
		default:
		}
		<-s.CloseWritten()
		if took := time.Since(start); took != cfg.WriteTimeout {
			t.Fatalf("the stalled writer gave up after %v, want exactly WriteTimeout (%v)", took, cfg.WriteTimeout)
		}
		for n := 1; n <= 2*cfg.QueueFrames; n++ {
			s.Enqueue(frameN(n))
		}
		if o := testutil.ToFloat64(m.QueueOverflows); o != 0 {
			t.Fatalf("chatd_queue_overflows_total %v after the connection was aborted, want 0", o)
		}
	})
}
