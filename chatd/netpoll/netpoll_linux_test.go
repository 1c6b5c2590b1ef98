//go:build linux

package netpoll

import (
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// pair is a loopback TCP connection: server is the side armed on the
// poller, peer the side the test writes to.
type pair struct {
	server *net.TCPConn
	peer   net.Conn
	fd     int
	h      *Handle
}

// arm registers the pair's server side on p (the first time) and arms it.
func (c *pair) arm(t *testing.T, p *Poller, f func()) error {
	t.Helper()
	if c.h == nil {
		h, err := p.Register(c.server)
		if err != nil {
			t.Fatal(err)
		}
		c.h = h
	}
	return c.h.Arm(f)
}

func newPair(t *testing.T) *pair {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	server := c.(*net.TCPConn)
	rc, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	_ = rc.Control(func(s uintptr) { fd = int(s) })
	p := &pair{server: server, peer: peer, fd: fd}
	t.Cleanup(func() {
		_ = p.server.Close()
		_ = p.peer.Close()
	})
	return p
}

func (p *pair) write(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(p.peer, s); err != nil {
		t.Fatal(err)
	}
}

// drain reads exactly n bytes on the server side.
func (p *pair) drain(t *testing.T, n int) {
	t.Helper()
	_ = p.server.SetReadDeadline(time.Now().Add(testtime.Timeout))
	if _, err := io.ReadFull(p.server, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// fired returns a callback and the channel it signals on, once per call.
func fired() (func(), chan struct{}) {
	ch := make(chan struct{}, 16)
	return func() { ch <- struct{}{} }, ch
}

func waitFire(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testtime.Timeout):
		t.Fatalf("%s: the callback did not run within %v", what, testtime.Timeout)
	}
}

// expectQuiet checks that ch did not fire. A socket armed with data fires
// in the same epoll_wait as any socket armed after it (level-triggered: it
// is on the ready list from its Arm on), so a sentinel armed afterwards
// bounds the wait; the short grace covers the callbacks' goroutines, which
// the poller starts in no particular order.
func expectQuiet(t *testing.T, p *Poller, ch <-chan struct{}, what string) {
	t.Helper()
	sentinel := newPair(t)
	sentinel.write(t, "x")
	f, sch := fired()
	if err := sentinel.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	waitFire(t, sch, "sentinel")
	select {
	case <-ch:
		t.Fatalf("%s: the callback ran", what)
	case <-time.After(20 * time.Millisecond):
	}
}

func TestPendingDataFiresAtOnce(t *testing.T) {
	p := newPoller(t)
	c := newPair(t)
	c.write(t, "hello")
	// Let the bytes reach the server side before arming: a level-triggered
	// arm must report them, though no new data arrives afterwards.
	if err := c.server.SetReadDeadline(time.Now().Add(testtime.Timeout)); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, c.fd)
	f, ch := fired()
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, "data pending before the arm")
}

// waitReadable blocks until fd has bytes to read (poll(2), not a read).
func waitReadable(t *testing.T, fd int) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(testtime.Timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil || n != 1 {
			t.Fatalf("poll: n=%d err=%v", n, err)
		}
		return
	}
}

func TestFiresOncePerArm(t *testing.T) {
	p := newPoller(t)
	c := newPair(t)
	f, ch := fired()
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, p, ch, "armed, no data yet")
	c.write(t, "one")
	waitFire(t, ch, "data after the arm")
	// Still unread, more arrives: one shot per arm.
	c.write(t, "two")
	expectQuiet(t, p, ch, "second write without a re-arm")
	// Re-armed with bytes pending: fires at once.
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, "re-armed with data pending")
}

func TestRearmAfterDrainWaitsForNewData(t *testing.T) {
	p := newPoller(t)
	c := newPair(t)
	f, ch := fired()
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	c.write(t, "abc")
	waitFire(t, ch, "first data")
	c.drain(t, 3)
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, p, ch, "re-armed after draining")
	c.write(t, "d")
	waitFire(t, ch, "new data after the re-arm")
}

func TestPeerCloseFires(t *testing.T) {
	p := newPoller(t)
	c := newPair(t)
	f, ch := fired()
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	_ = c.peer.Close()
	waitFire(t, ch, "peer closed")
}

func TestCloseStopsGoroutineAndWakesArmed(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := New(slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c := newPair(t)
	f, ch := fired()
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, "armed at Close")
	if err := c.arm(t, p, f); err != ErrClosed {
		t.Fatalf("Arm after Close = %v, want ErrClosed", err)
	}
	deadline := time.Now().Add(testtime.Timeout)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before New, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// An event carrying another generation than the registration's latest (as
// after a descriptor number is reused) is ignored.
func TestStaleGenerationIgnored(t *testing.T) {
	p := newPoller(t)
	c := newPair(t)
	f, ch := fired()
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	stale := p.regs[int32(c.fd)].gen - 1
	p.mu.Unlock()
	// The kernel side now carries a stale generation, as an event queued
	// for a socket forgotten before its number was reused would.
	ev := unix.EpollEvent{Events: readable, Fd: int32(c.fd), Pad: int32(stale)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		t.Fatal(err)
	}
	c.write(t, "x")
	expectQuiet(t, p, ch, "stale generation")
	// The current generation fires.
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, "current generation")
}

// A forgotten socket whose number goes to a new socket: the new one starts
// unarmed, and only its own callback runs.
func TestForgetThenReuse(t *testing.T) {
	p := newPoller(t)
	old := newPair(t)
	oldF, oldCh := fired()
	if err := old.arm(t, p, oldF); err != nil {
		t.Fatal(err)
	}
	old.h.Forget()
	_ = old.server.Close()
	c := newPair(t)
	c.write(t, "x")
	f, ch := fired()
	if err := c.arm(t, p, f); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, "new socket")
	select {
	case <-oldCh:
		t.Fatal("the forgotten socket's callback ran")
	default:
	}
}
