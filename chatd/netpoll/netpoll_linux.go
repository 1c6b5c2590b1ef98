//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller waits for readiness of the sockets armed on it. A server has one;
// its goroutine runs from New until Close.
type Poller struct {
	log  *slog.Logger
	epfd int
	// file is epfd, non-blocking, in the Go runtime's own poller: the loop
	// waits for it to be readable (an event is ready) parked like any
	// goroutine in a read, not in a blocking epoll_wait that would hold an
	// OS thread and, for a while, the scheduler's P (with GOMAXPROCS=1,
	// every other goroutine). Closing it ends the loop.
	file *os.File
	rc   syscall.RawConn
	done chan struct{}

	mu      sync.Mutex
	closed  bool
	nextGen uint32
	// regs maps a descriptor to the Handle that last armed it.
	regs map[int32]*Handle
}

// Handle is one socket's registration on a Poller. Its methods reach the
// descriptor through the socket's syscall.RawConn (Control), so the
// descriptor cannot be closed, and its number reused by another socket,
// while the epoll instance is told about it; on a closed socket they fail
// or do nothing.
type Handle struct {
	p  *Poller
	rc syscall.RawConn
	// Guarded by p.mu.
	fd    int32
	added bool // the socket is in the epoll set
	// gen is the generation of the latest Arm; events carrying another are
	// stale.
	gen uint32
	// armed is true from Arm until the event (or Close) has taken
	// onReadable.
	armed      bool
	onReadable func()
}

// readable is the one-shot, level-triggered interest of an Arm.
const readable = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// New creates an epoll instance and starts the goroutine that waits on it.
func New(log *slog.Logger) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "netpoll")
	rc, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	p := &Poller{log: log, epfd: epfd, file: file, rc: rc, done: make(chan struct{}), regs: make(map[int32]*Handle)}
	go p.loop()
	return p, nil
}

// Register prepares conn (a *net.TCPConn, say: a socket without buffering
// of its own) for Arm. It does not arm it.
func (p *Poller) Register(conn syscall.Conn) (*Handle, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("netpoll: %w", err)
	}
	return &Handle{p: p, rc: rc, fd: -1}, nil
}

// Arm asks for onReadable to run once, on a new goroutine, when the socket
// is readable, hung up or in error; at once if it already is. Until then
// (or until Forget or Close) the Poller holds onReadable. Arming a socket
// that is armed already replaces its callback.
func (h *Handle) Arm(onReadable func()) error {
	var armErr error
	err := h.rc.Control(func(s uintptr) { armErr = h.p.arm(h, int32(s), onReadable) })
	if err != nil {
		return fmt.Errorf("netpoll: arm: %w", err)
	}
	return armErr
}

func (p *Poller) arm(h *Handle, fd int32, onReadable func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.regs[fd] != h {
		// First arm, or an entry left by a closed socket that had this
		// number and was never forgotten: the kernel dropped that one
		// when it was closed.
		h.added = false
	}
	p.nextGen++
	gen := p.nextGen
	ev := unix.EpollEvent{Events: readable, Fd: fd, Pad: int32(gen)}
	op := unix.EPOLL_CTL_MOD
	if !h.added {
		op = unix.EPOLL_CTL_ADD
	}
	err := unix.EpollCtl(p.epfd, op, int(fd), &ev)
	switch {
	case err != nil && op == unix.EPOLL_CTL_ADD && errors.Is(err, unix.EEXIST):
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev)
	case err != nil && op == unix.EPOLL_CTL_MOD && errors.Is(err, unix.ENOENT):
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	}
	if err != nil {
		return fmt.Errorf("netpoll: arm fd %d: %w", fd, err)
	}
	h.fd, h.added, h.gen, h.armed, h.onReadable = fd, true, gen, true, onReadable
	p.regs[fd] = h
	return nil
}

// Forget removes the socket from the Poller and drops its callback; a
// pending event for it is ignored. Call it before closing the socket; on a
// socket closed already it only drops the Poller's record.
func (h *Handle) Forget() {
	err := h.rc.Control(func(s uintptr) { h.p.forget(h, true) })
	if err != nil {
		h.p.forget(h, false)
	}
}

func (p *Poller) forget(h *Handle, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h.armed, h.onReadable = false, nil
	if !h.added || p.regs[h.fd] != h {
		return
	}
	delete(p.regs, h.fd)
	h.added = false
	if p.closed || !open {
		return // the epoll instance, or the socket, is gone
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(h.fd), nil); err != nil && !errors.Is(err, unix.ENOENT) {
		p.log.Warn("netpoll: epoll_ctl(DEL) failed", "fd", h.fd, "err", err)
	}
}

// Close stops the Poller's goroutine and waits for it. Callbacks still
// armed run once each (a reader parked on a Poller must not be stranded:
// it then reads with a goroutine, as without a Poller); Arm fails from now
// on.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var stranded []func()
	for _, h := range p.regs {
		if h.armed {
			stranded = append(stranded, h.onReadable)
			h.armed, h.onReadable = false, nil
		}
	}
	p.mu.Unlock()
	err := p.file.Close() // wakes the loop, whose wait fails
	<-p.done
	for _, f := range stranded {
		go f()
	}
	return err
}

// loop waits for events until Close, and runs the callback of each fresh
// one.
func (p *Poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		var waitErr error
		err := p.rc.Read(func(fd uintptr) bool {
			n, waitErr = unix.EpollWait(int(fd), events, 0)
			if errors.Is(waitErr, unix.EINTR) {
				n, waitErr = 0, nil
			}
			return waitErr != nil || n > 0 // false: park until readable
		})
		if err != nil {
			return // Close
		}
		if waitErr != nil {
			// Nothing but a programming error gets here (EBADF, EFAULT,
			// EINVAL); the armed callbacks run from Close.
			p.log.Error("netpoll: epoll_wait failed; idle connections are no longer woken", "err", waitErr)
			return
		}
		for i := range events[:n] {
			ev := &events[i]
			p.mu.Lock()
			var f func()
			if h := p.regs[ev.Fd]; h != nil && h.armed && h.gen == uint32(ev.Pad) {
				f = h.onReadable
				h.armed, h.onReadable = false, nil
			}
			p.mu.Unlock()
			if f != nil {
				go f()
			}
		}
	}
}
