package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRequestReply(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", nil, nil)

	ch, calls := request(a, b.peer, "ping", 0)
	got := recv(t, ch)
	if got.err != nil || string(got.payload) != "echo:ping" {
		t.Fatalf("reply = %q, %v; want echo:ping", got.payload, got.err)
	}
	evs := b.rec.snapshot()
	want := []event{{kind: "request", from: "a", addr: a.Addr(), payload: "ping"}}
	if !slices.Equal(evs, want) {
		t.Fatalf("b saw %v, want %v", evs, want)
	}

	// The other direction uses the other stream, dialed by b.
	reply, err := b.Call(context.Background(), a.peer, []byte("pong"))
	if err != nil || string(reply) != "echo:pong" {
		t.Fatalf("b→a call = %q, %v", reply, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("onReply called %d times", n)
	}
	// Empty payloads are legal.
	if reply, err := a.Call(context.Background(), b.peer, nil); err != nil || string(reply) != "echo:" {
		t.Fatalf("empty call = %q, %v", reply, err)
	}
}

func TestRemoteError(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	rec := newRecorder()
	rec.onRequest = func(_ Peer, _ []byte, reply Reply) { _ = reply.Err("room not owned here") }
	b := startNode(t, "b", rec, nil)

	_, err := a.Call(context.Background(), b.peer, []byte("x"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Msg != "room not owned here" {
		t.Fatalf("err = %v, want RemoteError", err)
	}
}

func TestRequestTimeout(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	rec := newRecorder()
	held := make(chan Reply, 1)
	rec.onRequest = func(_ Peer, payload []byte, reply Reply) {
		if string(payload) == "hang" {
			held <- reply // never answered in time
			return
		}
		_ = reply.OK(payload)
	}
	b := startNode(t, "b", rec, nil)

	ch, calls := request(a, b.peer, "hang", 50*time.Millisecond)
	got := recv(t, ch)
	if !errors.Is(got.err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", got.err)
	}
	// Answer late, then make a call: its reply travels behind the late one
	// on the same stream, so once it is back the late reply has been read
	// and must have been dropped rather than delivered a second time.
	if err := recv(t, held).OK([]byte("too late")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Call(context.Background(), b.peer, []byte("sync")); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("onReply called %d times, want 1", n)
	}
}

func TestCall(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	rec := newRecorder()
	rec.onRequest = func(_ Peer, payload []byte, reply Reply) {
		if strings.HasPrefix(string(payload), "hang") {
			return
		}
		_ = reply.OK(append([]byte("echo:"), payload...))
	}
	b := startNode(t, "b", rec, nil)

	if got, err := a.Call(context.Background(), b.peer, []byte("hi")); err != nil || string(got) != "echo:hi" {
		t.Fatalf("Call = %q, %v", got, err)
	}

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := a.Call(ctx, b.peer, []byte("hang-cancel"))
			errc <- err
		}()
		rec.wait(t, 2) // "hi", then this one
		cancel()
		if err := recv(t, errc); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, err := a.Call(ctx, b.peer, []byte("hang-deadline"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("request timeout", func(t *testing.T) {
		short := startNode(t, "short", nil, func(c *Config) { c.RequestTimeout = 30 * time.Millisecond })
		if _, err := short.Call(context.Background(), b.peer, []byte("hang-timeout")); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout", err)
		}
	})
	t.Run("done context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := a.Call(ctx, b.peer, []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	// A withdrawn call leaves nothing pending behind.
	a.mu.RLock()
	p := a.peers["b"]
	a.mu.RUnlock()
	p.mu.Lock()
	pending := len(p.pending)
	p.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d requests still pending", pending)
	}
}

// TestOrdering checks the contract the cluster layer depends on: whatever a
// node sends to a peer (pushes, and replies to the peer's requests) arrives
// in the order its calls returned, and a reply enqueued before a push is
// observed (its onReply run) before that push is handled.
func TestOrdering(t *testing.T) {
	const n = 300
	type job struct {
		i     int
		reply Reply
	}
	jobs := make(chan job, n)
	var issuedMu sync.Mutex
	var issued []string // a's sends to b, in the order its calls returned

	recA := newRecorder()
	recA.onRequest = func(_ Peer, payload []byte, reply Reply) {
		var i int
		fmt.Sscanf(string(payload), "req-%d", &i)
		if i%2 == 0 {
			// Answer synchronously, in the handler, then push at once.
			answerAndPush(t, reply, i, &issuedMu, &issued)
			return
		}
		jobs <- job{i, reply} // answered later, from another goroutine
	}
	a := startNode(t, "a", recA, nil)

	var seenMu sync.Mutex
	var seen []string // what b observed on a's stream, in order
	all := make(chan struct{})
	note := func(s string) {
		seenMu.Lock()
		seen = append(seen, s)
		if len(seen) == 3*n {
			close(all)
		}
		seenMu.Unlock()
	}
	b := startNode(t, "b", HandlerFuncs{Push: func(_ Peer, p []byte) { note(string(p)) }}, nil)

	// The asynchronous answerer is the only other goroutine sending from a;
	// it and the handler take turns under issuedMu, so "issued" is a's
	// true order.
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		for j := range jobs {
			answerAndPush(t, j.reply, j.i, &issuedMu, &issued)
		}
	}()

	for i := range n {
		b.Request(a.peer, fmt.Appendf(nil, "req-%d", i), 0, func(p []byte, err error) {
			if err != nil {
				t.Errorf("req-%d: %v", i, err)
				note(fmt.Sprintf("error-%d", i))
				return
			}
			note(string(p))
		})
	}
	recv(t, all)
	close(jobs)
	<-workerDone

	issuedMu.Lock()
	defer issuedMu.Unlock()
	seenMu.Lock()
	defer seenMu.Unlock()
	if !slices.Equal(seen, issued) {
		for k := range min(len(seen), len(issued)) {
			if seen[k] != issued[k] {
				t.Fatalf("order differs at %d: b saw %q, a issued %q", k, seen[k], issued[k])
			}
		}
		t.Fatalf("b saw %d items, a issued %d", len(seen), len(issued))
	}
}

// answerAndPush pushes "before-i", replies "reply-i", pushes "after-i", and
// records that order, all under mu so that it is the order of a's calls.
func answerAndPush(t *testing.T, reply Reply, i int, mu *sync.Mutex, issued *[]string) {
	mu.Lock()
	defer mu.Unlock()
	tr, to := reply.t, reply.to // a's transport, and b as a saw it
	if err := tr.Send(to, fmt.Appendf(nil, "before-%d", i)); err != nil {
		t.Errorf("send: %v", err)
	}
	*issued = append(*issued, fmt.Sprintf("before-%d", i))
	if err := reply.OK(fmt.Appendf(nil, "reply-%d", i)); err != nil {
		t.Errorf("reply: %v", err)
	}
	*issued = append(*issued, fmt.Sprintf("reply-%d", i))
	if err := tr.Send(to, fmt.Appendf(nil, "after-%d", i)); err != nil {
		t.Errorf("send: %v", err)
	}
	*issued = append(*issued, fmt.Sprintf("after-%d", i))
}

// TestSequentialPerStream checks that one stream's frames are handled one
// at a time and in order, requests and pushes alike.
func TestSequentialPerStream(t *testing.T) {
	const n = 2000
	var inFlight, maxInFlight atomic.Int32
	var mu sync.Mutex
	var order []string
	done := make(chan struct{})
	handle := func(kind string, p []byte) {
		if c := inFlight.Add(1); c > maxInFlight.Load() {
			maxInFlight.Store(c)
		}
		mu.Lock()
		order = append(order, kind+string(p))
		if len(order) == n {
			close(done)
		}
		mu.Unlock()
		inFlight.Add(-1)
	}
	b := startNode(t, "b", HandlerFuncs{
		Push: func(_ Peer, p []byte) { handle("push:", p) },
		Request: func(_ Peer, p []byte, r Reply) {
			handle("req:", p)
			_ = r.OK(nil)
		},
	}, nil)
	a := startNode(t, "a", nil, nil)

	var want []string
	for i := range n {
		p := fmt.Appendf(nil, "%d", i)
		if i%5 == 0 {
			a.Request(b.peer, p, 0, nil)
			want = append(want, "req:"+string(p))
		} else {
			if err := a.Send(b.peer, p); err != nil {
				t.Fatal(err)
			}
			want = append(want, "push:"+string(p))
		}
	}
	recv(t, done)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, want) {
		t.Fatal("frames handled out of order")
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Fatalf("up to %d frames of one stream handled at once", m)
	}
}

// TestConcurrencyAcrossPeers checks that streams from different peers are
// handled independently: b's handler for a's push blocks until it has seen
// c's push, which can only happen if c's stream has its own goroutine.
func TestConcurrencyAcrossPeers(t *testing.T) {
	gotA := make(chan struct{})
	gotC := make(chan struct{})
	released := make(chan bool, 1)
	b := startNode(t, "b", HandlerFuncs{Push: func(from Peer, _ []byte) {
		switch from.Name {
		case "a":
			close(gotA)
			select {
			case <-gotC:
				released <- true
			case <-time.After(failsafe):
				released <- false
			}
		case "c":
			close(gotC)
		}
	}}, nil)
	a := startNode(t, "a", nil, nil)
	c := startNode(t, "c", nil, nil)

	if err := a.Send(b.peer, []byte("from a")); err != nil {
		t.Fatal(err)
	}
	recv(t, gotA)
	if err := c.Send(b.peer, []byte("from c")); err != nil {
		t.Fatal(err)
	}
	if !recv(t, released) {
		t.Fatal("c's push was not handled while a's handler ran")
	}

	// And requests between all three pairs, concurrently, all succeed.
	nodes := []*testNode{a, c}
	var wg sync.WaitGroup
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			wg.Go(func() {
				for i := range 50 {
					p := fmt.Sprintf("%s→%s %d", from.Name(), to.Name(), i)
					got, err := from.Call(context.Background(), to.peer, []byte(p))
					if err != nil || string(got) != "echo:"+p {
						t.Errorf("%s: %q, %v", p, got, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

// TestReplyWithoutOutboundStream checks that a node can answer a peer it has
// never dialed: the reply goes to the address advertised in the handshake.
func TestReplyWithoutOutboundStream(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", nil, nil)
	if _, err := a.Call(context.Background(), b.peer, []byte("x")); err != nil {
		t.Fatal(err)
	}
	b.mu.RLock()
	p := b.peers["a"]
	b.mu.RUnlock()
	if p == nil || p.addr != a.Addr() {
		t.Fatalf("b's stream to a: %+v, want address %s", p, a.Addr())
	}
	// With a stream in place, a name alone is enough.
	if err := b.Send(Peer{Name: "a"}, []byte("by name")); err != nil {
		t.Fatal(err)
	}
	a.rec.wait(t, 1)
	if err := b.Send(Peer{Name: "nobody"}, nil); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("err = %v, want ErrUnknownPeer", err)
	}
}

func TestFrameSizeLimits(t *testing.T) {
	const limit = 1 << 10
	edit := func(c *Config) {
		c.MaxFrameBytes = limit
		c.QueueBytes = limit / 2 // smaller than a frame: an empty queue still takes one
	}
	a := startNode(t, "a", nil, edit)
	b := startNode(t, "b", nil, edit)

	if err := a.Send(b.peer, make([]byte, limit+1)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Send err = %v, want ErrFrameTooLarge", err)
	}
	called := false
	a.Request(b.peer, make([]byte, limit+1), 0, func(_ []byte, err error) {
		called = true
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Errorf("Request err = %v", err)
		}
	})
	if !called {
		t.Fatal("onReply for an unqueueable request was not called before Request returned")
	}
	if err := a.Send(b.peer, make([]byte, limit)); err != nil {
		t.Fatalf("largest frame: %v", err)
	}
	evs := b.rec.wait(t, 1)
	if len(evs[0].payload) != limit {
		t.Fatalf("got %d bytes", len(evs[0].payload))
	}
}

func TestMetrics(t *testing.T) {
	a := startNode(t, "a", nil, nil)
	b := startNode(t, "b", nil, nil)
	for range 10 {
		if err := a.Send(b.peer, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	b.rec.wait(t, 10)
	const wire = 10 * (frameHeaderLen + 100)
	waitUntil(t, "b counted 10 frames", func() bool {
		return b.metrics.recvFrames.Load() == 10 && b.metrics.recvBytes.Load() == wire
	})
	waitUntil(t, "a counted 10 frames", func() bool {
		return a.metrics.sentFrames.Load() == 10 && a.metrics.sentBytes.Load() == wire
	})
}

func TestConfigValidation(t *testing.T) {
	h := HandlerFuncs{}
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "NodeName"},
		{"long name", func(c *Config) { c.NodeName = strings.Repeat("x", 256) }, "NodeName"},
		{"no listen", func(c *Config) { c.ListenAddr = "" }, "ListenAddr"},
		{"no credentials", func(c *Config) { c.Credentials = nil }, "Credentials"},
		{"no protocol version", func(c *Config) { c.ProtocolVersion = 0 }, "ProtocolVersion"},
		{"protocol version too big", func(c *Config) { c.ProtocolVersion = 1 << 16 }, "ProtocolVersion"},
		{"negative reverify interval", func(c *Config) { c.ReverifyInterval = -1 }, "ReverifyInterval"},
		{"negative timeout", func(c *Config) { c.DialTimeout = -1 }, "DialTimeout"},
		{"negative queue", func(c *Config) { c.QueueBytes = -1 }, "QueueBytes"},
		{"bad listen", func(c *Config) { c.ListenAddr = "256.0.0.1:0" }, "listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "a")
			tc.edit(&cfg)
			tr, err := New(cfg, h)
			if err == nil {
				tr.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want mention of %s", err, tc.want)
			}
		})
	}
	if _, err := New(testConfig(t, "a"), nil); err == nil {
		t.Fatal("New accepted a nil handler")
	}
}
