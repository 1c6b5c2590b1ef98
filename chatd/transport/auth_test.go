package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// A long backoff makes "the next Send fails fast" deterministic.
func longBackoff(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour }

func TestAuthWrongSecret(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, func(c *Config) {
		c.Secret = []byte("a different secret, same length!")
		longBackoff(c)
	})

	_, err := a.Call(context.Background(), b.peer, []byte("let me in"))
	if !errors.Is(err, ErrAuth) || !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("err = %v, want ErrAuth and ErrPeerUnavailable", err)
	}
	if err := a.Send(b.peer, []byte("again")); !errors.Is(err, ErrAuth) {
		t.Fatalf("Send while backing off: %v, want ErrAuth", err)
	}
	waitLog(t, b, "failed to prove the shared secret")
	waitUntil(t, "auth failure counted", func() bool { return b.metrics.auth("credentials") == 1 })
	if a.metrics.auth("credentials") != 1 {
		t.Fatalf("dialer counted %v", a.metrics.authFailures)
	}
	b.Close() // waits for b's readers: nothing can still be delivered
	if evs := b.rec.snapshot(); len(evs) != 0 {
		t.Fatalf("b handled %v from an unauthenticated peer", evs)
	}
}

func TestAuthWrongClusterLabel(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, func(c *Config) { c.ClusterLabel = "other-cluster" })

	_, err := a.Call(context.Background(), b.peer, []byte("let me in"))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "other-cluster") {
		t.Fatalf("err = %v, want ErrAuth naming the label", err)
	}
	waitLog(t, b, "cluster label mismatch")
	waitUntil(t, "auth failure counted", func() bool { return b.metrics.auth("label") == 1 })
	b.Close()
	if evs := b.rec.snapshot(); len(evs) != 0 {
		t.Fatalf("b handled %v", evs)
	}
}

// TestAuthAcceptorMustProve checks the mutual half: a listener that takes
// any dialer and answers "OK" without knowing the secret is refused by the
// dialer, which sends it nothing.
func TestAuthAcceptorMustProve(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	received := make(chan []byte, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer conn.Close()
		nonce := make([]byte, nonceLen)
		rand.Read(nonce)
		conn.Write(append([]byte{'R', 'C', 'T', protocolVersion}, nonce...))
		_, _ = conn.Read(make([]byte, 4096))                          // the dialer's hello
		conn.Write(append([]byte{statusOK}, make([]byte, macLen)...)) // a forged proof
		rest, _ := io.ReadAll(conn)
		received <- rest
	}()

	a := startNode(t, "a", nil, nil)
	_, err = a.Call(context.Background(), Peer{Name: "b", Addr: ln.Addr().String()}, []byte("secret stuff"))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "acceptor could not prove") {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if rest := recv(t, received); len(rest) != 0 {
		t.Fatalf("dialer sent %d bytes to an impostor", len(rest))
	}
}

// TestWrongNode checks that reaching a different member at the address we
// had for a peer (say, a restarted pod's IP given to another) fails instead
// of delivering there.
func TestWrongNode(t *testing.T) {
	c := startNode(t, "c", nil, nil)
	a := startNode(t, "a", nil, nil)
	_, err := a.Call(context.Background(), Peer{Name: "b", Addr: c.Addr()}, []byte("for b"))
	if !errors.Is(err, ErrHandshake) || errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrHandshake", err)
	}
	waitLog(t, c, "meant to reach")
	c.Close()
	if evs := c.rec.snapshot(); len(evs) != 0 {
		t.Fatalf("c handled %v", evs)
	}
}

func TestInsecure(t *testing.T) {
	insecure := func(c *Config) { c.Secret, c.Insecure = nil, true }
	a := startNode(t, "a", nil, insecure)
	b := startNode(t, "b", nil, insecure)
	if _, err := a.Call(context.Background(), b.peer, []byte("x")); err != nil {
		t.Fatalf("insecure nodes: %v", err)
	}
	waitLog(t, a, "without a cluster secret")
	// An insecure node still cannot talk to a node that has a secret.
	s := startNode(t, "s", nil, nil)
	if _, err := a.Call(context.Background(), s.peer, []byte("x")); !errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
}

// TestStrayClients checks that raw TCP clients that do not complete the
// handshake are dropped, within the handshake timeout at the latest, and
// cannot get a frame handled.
func TestStrayClients(t *testing.T) {
	const hsTimeout = 300 * time.Millisecond
	b := startNode(t, "b", nil, func(c *Config) { c.HandshakeTimeout = hsTimeout })

	garbage := make([]byte, 512)
	rand.Read(garbage)
	cases := []struct {
		name string
		send []byte
	}{
		{"garbage", garbage},
		{"frame without handshake", append(pushFrame("injected"), pushFrame("injected")...)},
		{"right magic then a frame", append([]byte{'R', 'C', 'T', protocolVersion}, pushFrame("injected")...)},
		{"wrong version", []byte{'R', 'C', 'T', 99}},
		{"silent", nil},
		{"half a hello", []byte{'R', 'C', 'T', protocolVersion, 4, 't', 'e'}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialRaw(t, b)
			start := time.Now()
			if _, err := conn.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			got := waitClosedByPeer(t, conn, failsafe)
			if len(got) > 1 {
				t.Fatalf("server answered %q", got) // at most a status byte
			}
			// Dropped within the handshake timeout (plus scheduling slack
			// under -race), and a silent client not much before it.
			if took := time.Since(start); took > hsTimeout+testtime.Slack {
				t.Fatalf("dropped after %v; handshake timeout is %v", took, hsTimeout)
			} else if tc.send == nil && took < hsTimeout/2 {
				t.Fatalf("silent client dropped after %v, before the handshake timeout", took)
			}
		})
	}
	waitUntil(t, "handshake slots released", func() bool { return len(b.handshakes) == 0 })
	b.Close()
	if evs := b.rec.snapshot(); len(evs) != 0 {
		t.Fatalf("stray clients got %v handled", evs)
	}
}

// TestHandshakeReplay records a genuine handshake (and the request after it)
// between two nodes and replays it on a new connection: the acceptor's fresh
// nonce makes the recorded proof worthless.
func TestHandshakeReplay(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, nil)

	// A recording proxy in front of b.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		captured bytes.Buffer
		conns    []net.Conn
		proxyWG  sync.WaitGroup
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		proxyWG.Wait()
	})
	proxyWG.Go(func() {
		down, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", b.Addr())
		if err != nil {
			down.Close()
			return
		}
		mu.Lock()
		conns = append(conns, down, up)
		mu.Unlock()
		proxyWG.Go(func() { io.Copy(down, up) })
		io.Copy(io.MultiWriter(up, lockedWriter{&mu, &captured}), down)
	})

	if _, err := a.Call(context.Background(), Peer{Name: "b", Addr: ln.Addr().String()}, []byte("original")); err != nil {
		t.Fatalf("call through proxy: %v", err)
	}
	mu.Lock()
	recording := bytes.Clone(captured.Bytes())
	mu.Unlock()
	helloLen := 4 + (1 + len(testLabel)) + (1 + len("a")) + (1 + len(a.Addr())) + (1 + len("b")) + nonceLen + macLen
	if len(recording) <= helloLen {
		t.Fatalf("recorded only %d bytes", len(recording))
	}

	conn := dialRaw(t, b)
	if _, err := conn.Write(recording); err != nil {
		t.Fatal(err)
	}
	got := waitClosedByPeer(t, conn, failsafe)
	if !bytes.Equal(got, []byte{statusBadProof}) {
		t.Fatalf("replay answered %v, want rejection", got)
	}
	waitLog(t, b, "failed to prove the shared secret")
	b.Close()
	if evs := b.rec.snapshot(); len(evs) != 1 || evs[0].payload != "original" {
		t.Fatalf("b handled %v, want only the original request", evs)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestHandshakeLimit checks that connections beyond MaxHandshakes are
// closed at once, and that the slots come back.
func TestHandshakeLimit(t *testing.T) {
	b := startNode(t, "b", nil, func(c *Config) {
		c.MaxHandshakes = 2
		c.HandshakeTimeout = time.Minute
	})
	c1 := dialRaw(t, b) // reading the hello proves each holds a slot
	c2 := dialRaw(t, b)
	c3, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got := waitClosedByPeer(t, c3, failsafe); len(got) != 0 {
		t.Fatalf("third connection got %d bytes; want it closed before the hello", len(got))
	}
	waitLog(t, b, "too many handshakes")
	if b.metrics.auth("overload") != 1 {
		t.Fatal("overload not counted")
	}
	c1.Close()
	c2.Close()
	waitUntil(t, "slots released", func() bool { return len(b.handshakes) == 0 })
	a := startNode(t, "a", nil, nil)
	if _, err := a.Call(context.Background(), b.peer, []byte("x")); err != nil {
		t.Fatalf("after the strays left: %v", err)
	}
}
