package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/internal/devpki"
)

// A long backoff makes "the next Send fails fast" deterministic.
func longBackoff(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Hour }

// refused asserts that b handled nothing, once b's readers are done.
func refused(t *testing.T, b *testNode) {
	t.Helper()
	b.Close() // waits for b's readers: nothing can still be delivered
	if evs := b.rec.snapshot(); len(evs) != 0 {
		t.Fatalf("b handled %v from a peer it should have refused", evs)
	}
}

// TestAuthUntrustedCA: a node whose certificate was signed by a CA the
// acceptor does not trust is refused, and so is an acceptor whose
// certificate the dialer does not trust.
func TestAuthUntrustedCA(t *testing.T) {
	rogue := newCA(t, "rogue CA")
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, func(c *Config) {
		c.Credentials = &testCreds{cert: nodeCert(t, rogue, "a"), pool: poolOf(clusterCA())}
		longBackoff(c)
	})
	_, err := a.Call(context.Background(), b.peer, []byte("let me in"))
	if !errors.Is(err, ErrAuth) || !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("err = %v, want ErrAuth and ErrPeerUnavailable", err)
	}
	if err := a.Send(b.peer, []byte("again")); !errors.Is(err, ErrAuth) {
		t.Fatalf("Send while backing off: %v, want ErrAuth", err)
	}
	waitLog(t, b, "certificate signed by unknown authority")
	waitUntil(t, "refusal counted by b", func() bool { return b.metrics.auth("certificate") == 1 })
	if a.metrics.auth("certificate") != 1 {
		t.Fatalf("dialer counted %v", a.metrics.authFailures)
	}

	// The other way round: c trusts only the rogue CA, so b's certificate
	// is refused by c as the dialer, before c sends anything.
	c := startNode(t, "c", nil, func(c *Config) { c.Credentials = &testCreds{cert: nodeCert(t, rogue, "c"), pool: poolOf(rogue)} })
	if _, err := c.Call(context.Background(), b.peer, []byte("x")); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("err = %v, want ErrAuth about the unknown authority", err)
	}
	refused(t, b)
}

// TestAuthNoCertificate: a TLS client that presents no certificate gets
// nowhere.
func TestAuthNoCertificate(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	conn := dialRaw(t, b)
	tc := tls.Client(conn, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: poolOf(clusterCA()), ServerName: "b"})
	_ = tc.SetDeadline(time.Now().Add(failsafe))
	err := tc.Handshake()
	if err == nil {
		// TLS 1.3: the server's refusal arrives after the client's side
		// of the handshake, on the first read.
		_, _ = tc.Write(hello{proto: testProto, label: testLabel, name: "a", addr: "127.0.0.1:1", target: "b"}.encode())
		_, err = tc.Read(make([]byte, 1))
	}
	if err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("err = %v, want the server to refuse the missing certificate", err)
	}
	waitUntil(t, "refusal counted", func() bool { return b.metrics.auth("certificate") == 1 })
	waitLog(t, b, "the peer presented no certificate")
	refused(t, b)
}

// TestAuthCertificateForAnotherName: a node whose certificate, from the
// cluster's own CA, carries another node's name is refused both as a
// dialer (it claims a name its certificate lacks) and as an acceptor (the
// dialer expected the name it dialed).
func TestAuthCertificateForAnotherName(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, func(c *Config) {
		c.Credentials = &testCreds{cert: nodeCert(t, clusterCA(), "mallory"), pool: poolOf(clusterCA())}
	})
	_, err := a.Call(context.Background(), b.peer, []byte("I am a"))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "does not carry it") {
		t.Fatalf("a→b: err = %v, want ErrAuth: our certificate does not carry our name", err)
	}
	waitLog(t, b, `claimed to be \"a\"`)
	waitUntil(t, "identity refusal counted", func() bool { return b.metrics.auth("identity") == 1 })

	_, err = b.Call(context.Background(), a.peer, []byte("are you a?"))
	if !errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), `not "a"`) {
		t.Fatalf("b→a: err = %v, want ErrHandshake: the node there is not a", err)
	}
	if b.metrics.auth("wrong_node") != 1 {
		t.Fatalf("b counted %v", b.metrics.authFailures)
	}
	a.Close()
	if evs := a.rec.snapshot(); len(evs) != 0 {
		t.Fatalf("a handled %v", evs)
	}
	refused(t, b)
}

// TestAuthImpersonation: a member with a valid certificate of its own
// cannot claim another member's name in its hello.
func TestAuthImpersonation(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	conn, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(failsafe))
	c := &testCreds{cert: nodeCert(t, clusterCA(), "c"), pool: poolOf(clusterCA())}
	_, _, err = dialHandshake(conn, c, hello{proto: testProto, label: testLabel, name: "a", addr: "127.0.0.1:1", target: "b"})
	if !errors.Is(err, ErrAuth) || reasonOf(err) != "identity" {
		t.Fatalf("err = %v (%s), want an identity refusal", err, reasonOf(err))
	}
	waitLog(t, b, `claimed to be \"a\"`)
	refused(t, b)
}

// TestAuthExpiredAndWrongUsage: certificates that are expired, not yet
// valid, or not for client authentication are refused.
func TestAuthExpiredAndWrongUsage(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name string
		leaf devpki.Leaf
		log  string
	}{
		{"expired", devpki.Leaf{DNSNames: []string{"a"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}, "expired"},
		{"not yet valid", devpki.Leaf{DNSNames: []string{"a"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}, "not yet valid"},
		{"server only", devpki.Leaf{DNSNames: []string{"a"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, "incompatible key usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startNode(t, "b", nil, nil)
			a := startNode(t, "a", nil, func(c *Config) {
				c.Credentials = &testCreds{cert: issue(t, clusterCA(), tc.leaf), pool: poolOf(clusterCA())}
			})
			if _, err := a.Call(context.Background(), b.peer, []byte("x")); !errors.Is(err, ErrAuth) {
				t.Fatalf("err = %v, want ErrAuth", err)
			}
			waitLog(t, b, tc.log)
			refused(t, b)
		})
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
	refused(t, b)
}

// TestVersionMismatch: nodes of two inter-node protocol versions refuse
// each other, both sides say so at ERROR with both versions, and count it.
func TestVersionMismatch(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, func(c *Config) { c.ProtocolVersion = testProto + 1 })
	_, err := a.Call(context.Background(), b.peer, []byte("hello from the future"))
	if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "speaks inter-node protocol version 2, we speak 3") {
		t.Fatalf("a→b: err = %v, want ErrVersion with both versions", err)
	}
	waitLog(t, b, "speaks inter-node protocol version 3, we speak 2")
	waitLog(t, a, "level=ERROR msg=\"transport refusing a peer of another inter-node protocol version\"")
	if !strings.Contains(b.logs.String(), "level=ERROR msg=\"transport rejected connection\"") {
		t.Fatalf("b did not log the refusal at ERROR:\n%s", b.logs)
	}
	waitUntil(t, "counted by b", func() bool { return b.metrics.auth("version") == 1 })
	if a.metrics.auth("version") != 1 {
		t.Fatalf("a counted %v", a.metrics.authFailures)
	}
	// And the other way round.
	if _, err := b.Call(context.Background(), a.peer, []byte("x")); !errors.Is(err, ErrVersion) {
		t.Fatalf("b→a: err = %v, want ErrVersion", err)
	}
	a.Close()
	refused(t, b)
}

// TestAuthAcceptorMustProve checks the mutual half: a TLS listener with a
// certificate the dialer does not trust (self-made, for the right name)
// receives no byte of application data.
func TestAuthAcceptorMustProve(t *testing.T) {
	rogue := newCA(t, "rogue CA")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{*nodeCert(t, rogue, "b")},
		ClientAuth:   tls.RequestClientCert,
	})
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
		rest, _ := io.ReadAll(conn)
		received <- rest
	}()

	a := startNode(t, "a", nil, nil)
	_, err = a.Call(context.Background(), Peer{Name: "b", Addr: ln.Addr().String()}, []byte("secret stuff"))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if rest := recv(t, received); len(rest) != 0 {
		t.Fatalf("dialer sent %d bytes of data to an impostor", len(rest))
	}
}

// TestWrongNode checks that reaching a different member at the address we
// had for a peer (say, a restarted pod's IP given to another) fails instead
// of delivering there: its certificate names it, not the node dialed.
func TestWrongNode(t *testing.T) {
	c := startNode(t, "c", nil, nil)
	a := startNode(t, "a", nil, nil)
	_, err := a.Call(context.Background(), Peer{Name: "b", Addr: c.Addr()}, []byte("for b"))
	if !errors.Is(err, ErrHandshake) || errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), `is not "b"`) {
		t.Fatalf("err = %v, want ErrHandshake", err)
	}
	if a.metrics.auth("wrong_node") != 1 {
		t.Fatalf("a counted %v", a.metrics.authFailures)
	}
	c.Close()
	if evs := c.rec.snapshot(); len(evs) != 0 {
		t.Fatalf("c handled %v", evs)
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
	// The first bytes of a TLS ClientHello record, then nothing.
	halfHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	cases := []struct {
		name string
		send []byte
	}{
		{"garbage", garbage},
		{"frames in clear", append(pushFrame("injected"), pushFrame("injected")...)},
		{"the old handshake's hello", append([]byte{'R', 'C', 'T', 1}, pushFrame("injected")...)},
		{"silent", nil},
		{"half a TLS hello", halfHello},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialRaw(t, b)
			start := time.Now()
			if _, err := conn.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			waitClosedByPeer(t, conn, failsafe)
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
	if b.metrics.auth("tls") < 2 {
		t.Errorf("non-TLS clients counted %v, want at least 2 under tls", b.metrics.authFailures)
	}
	refused(t, b)
}

// TestTamperedStream puts a man in the middle of a live stream: a TCP
// proxy that flips one bit of one byte of the encrypted stream from a to
// b. b must close the stream without handling the frame, say why, and
// count it; a reconnects, and what it sends afterwards arrives intact.
// (Without TLS the flipped bit would reach the handler as a changed
// payload.)
func TestTamperedStream(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, nil)
	proxy := newTamperProxy(t, b.Addr())
	via := Peer{Name: "b", Addr: proxy.addr()}

	if _, err := a.Call(context.Background(), via, []byte("before")); err != nil {
		t.Fatalf("call through the proxy: %v", err)
	}
	const secret = "transfer 100 to alice"
	proxy.armFlip()
	if err := a.Send(via, []byte(secret)); err != nil {
		t.Fatal(err)
	}
	recv(t, proxy.flipped)
	// a notices its stream died (b closed it) and redials.
	callEventually(t, a, via)
	if _, err := a.Call(context.Background(), via, []byte("after")); err != nil {
		t.Fatal(err)
	}
	b.Close()
	evs := b.rec.snapshot()
	for _, e := range evs {
		if e.payload != "before" && e.payload != "after" && e.payload != "are you back" {
			t.Fatalf("b handled a tampered frame %q; all it handled: %v", e.payload, evs)
		}
	}
	if !strings.Contains(b.logs.String(), "a TLS record failed its integrity check") || b.metrics.auth("integrity") != 1 {
		t.Fatalf("the tampered stream was not reported (integrity failures %d); b's logs:\n%s", b.metrics.auth("integrity"), b.logs)
	}
}

// tamperProxy forwards TCP connections to a target; once armed, it flips
// the last byte of the next chunk it forwards from client to target (the
// end of a TLS record: its authentication tag).
type tamperProxy struct {
	t       *testing.T
	ln      net.Listener
	target  string
	mu      sync.Mutex
	armed   bool
	conns   []net.Conn
	wg      sync.WaitGroup
	flipped chan struct{}
}

func newTamperProxy(t *testing.T, target string) *tamperProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tamperProxy{t: t, ln: ln, target: target, flipped: make(chan struct{}, 1)}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *tamperProxy) addr() string { return p.ln.Addr().String() }

func (p *tamperProxy) armFlip() {
	p.mu.Lock()
	p.armed = true
	p.mu.Unlock()
}

func (p *tamperProxy) acceptLoop() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		p.wg.Go(func() {
			io.Copy(down, up)
			down.Close()
		})
		p.wg.Go(func() {
			p.forward(up, down)
			up.Close()
		})
	}
}

// forward copies client bytes to the target, flipping one when armed.
func (p *tamperProxy) forward(up, down net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := down.Read(buf)
		if n > 0 {
			p.mu.Lock()
			flip := p.armed
			p.armed = false
			p.mu.Unlock()
			if flip {
				buf[n-1] ^= 0x01
				p.flipped <- struct{}{}
			}
			if _, werr := up.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestReverify: live streams whose peer certificate stops being valid (the
// CA removed from the bundle, or the certificate expired) are closed on
// both sides, and the peer must then present a valid certificate.
func TestReverify(t *testing.T) {
	next := newCA(t, "next CA")
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, nil)
	if _, err := a.Call(context.Background(), b.peer, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Call(context.Background(), a.peer, []byte("x")); err != nil {
		t.Fatal(err)
	}

	// Nothing changed: nothing is closed.
	b.reverify(time.Now())
	a.reverify(time.Now())
	if _, err := a.Call(context.Background(), b.peer, []byte("still")); err != nil {
		t.Fatal(err)
	}
	if n := a.metrics.reconnects.Load() + b.metrics.reconnects.Load(); n != 0 {
		t.Fatalf("%d reconnects after a no-op re-verification", n)
	}

	// A year later every certificate has expired: both streams close.
	b.reverify(time.Now().Add(365 * 24 * time.Hour))
	waitLog(t, b, "the peer's certificate is no longer valid")
	waitUntil(t, "b counted both streams", func() bool { return b.metrics.auth("certificate") == 2 })
	waitLog(t, a, "transport connection to peer lost")

	// b now trusts only the next CA: a, still holding a certificate of the
	// old one, is refused; with a certificate of the next CA it is let in.
	b.creds.set(nodeCert(t, next, "b"), poolOf(next))
	a.creds.set(nil, poolOf(clusterCA(), next))
	waitUntil(t, "a's old certificate refused", func() bool {
		_, err := a.Call(context.Background(), b.peer, []byte("old cert"))
		return errors.Is(err, ErrAuth)
	})
	a.creds.set(nodeCert(t, next, "a"), nil)
	callEventually(t, a, b.peer)
	var handled []string
	for _, e := range b.rec.snapshot() {
		handled = append(handled, e.payload)
	}
	if strings.Contains(strings.Join(handled, ","), "old cert") {
		t.Fatalf("b handled a request from a refused certificate: %v", handled)
	}
}

// TestNewCertificateOnNextConnection: credentials are asked for at every
// handshake, so a renewed certificate is what the next stream presents.
func TestNewCertificateOnNextConnection(t *testing.T) {
	b := startNode(t, "b", nil, nil)
	a := startNode(t, "a", nil, nil)
	if _, err := a.Call(context.Background(), b.peer, []byte("x")); err != nil {
		t.Fatal(err)
	}
	renewed := nodeCert(t, clusterCA(), "a")
	a.creds.set(renewed, nil)
	a.Forget("b") // the next use dials afresh
	if _, err := a.Call(context.Background(), b.peer, []byte("y")); err != nil {
		t.Fatal(err)
	}
	b.mu.RLock()
	s := b.incoming["a"]
	b.mu.RUnlock()
	if s == nil || !bytes.Equal(s.chain[0].Raw, renewed.Leaf.Raw) {
		t.Fatal("b's stream from a does not carry a's renewed certificate")
	}
}

// TestHandshakeLimit checks that connections beyond MaxHandshakes are
// closed at once, and that the slots come back.
func TestHandshakeLimit(t *testing.T) {
	b := startNode(t, "b", nil, func(c *Config) {
		c.MaxHandshakes = 2
		c.HandshakeTimeout = time.Minute
	})
	c1 := dialRaw(t, b)
	c2 := dialRaw(t, b)
	// Both hold a slot once the server has accepted them; nothing on the
	// wire says so before TLS, so wait for the count.
	waitUntil(t, "two handshakes in progress", func() bool { return len(b.handshakes) == 2 })
	c3 := dialRaw(t, b)
	if got := waitClosedByPeer(t, c3, failsafe); len(got) != 0 {
		t.Fatalf("third connection got %d bytes; want it closed at once", len(got))
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
