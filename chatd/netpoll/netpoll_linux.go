//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller waits for readiness of the sockets armed on it. A server has one;
// its goroutine runs from New until Close.
type Poller struct {
	log  *slog.Logger
	epfd int
	// wakefd is an eventfd in the epoll set: Close writes to it so that the
	// goroutine blocked in EpollWait returns.
	wakefd int
	done   chan struct{}

	mu      sync.Mutex
	closed  bool
	nextGen uint32
	regs    map[int32]*registration
}

// registration is one socket known to the epoll instance.
type registration struct {
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
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(wakefd)
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: epoll_ctl(eventfd): %w", err)
	}
	p := &Poller{log: log, epfd: epfd, wakefd: wakefd, done: make(chan struct{}), regs: make(map[int32]*registration)}
	go p.loop()
	return p, nil
}

// FD returns the descriptor of conn (a *net.TCPConn, say). The descriptor
// stays owned by conn: it is valid until conn is closed.
func FD(conn syscall.Conn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// Arm asks for onReadable to run once, on a new goroutine, when fd is
// readable, hung up or in error; at once if it already is. Until then (or
// until Forget) the Poller holds onReadable. Arming an fd that is armed
// already replaces its callback. The caller must call Forget before it
// closes fd.
func (p *Poller) Arm(fd int, onReadable func()) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.nextGen++
	gen := p.nextGen
	reg, known := p.regs[int32(fd)]
	op := unix.EPOLL_CTL_MOD
	if !known {
		reg = &registration{}
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: readable, Fd: int32(fd), Pad: int32(gen)}
	if err := unix.EpollCtl(p.epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("netpoll: arm fd %d: %w", fd, err)
	}
	reg.gen, reg.armed, reg.onReadable = gen, true, onReadable
	if !known {
		p.regs[int32(fd)] = reg
	}
	return nil
}

// Forget removes fd from the Poller; a pending event for it is dropped.
// Call it before closing fd, so that a new socket given the same number
// never sees this one's events.
func (p *Poller) Forget(fd int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.regs[int32(fd)]; !ok {
		return
	}
	delete(p.regs, int32(fd))
	if p.closed {
		return // the epoll instance is gone
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBADF) {
		p.log.Warn("netpoll: epoll_ctl(DEL) failed", "fd", fd, "err", err)
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
	for _, reg := range p.regs {
		if reg.armed {
			reg.armed = false
			stranded = append(stranded, reg.onReadable)
			reg.onReadable = nil
		}
	}
	p.mu.Unlock()
	var one [8]byte
	one[0] = 1 // an eventfd counter is a native-endian uint64; any nonzero value wakes
	one[7] = 1
	if _, err := unix.Write(p.wakefd, one[:]); err != nil {
		p.log.Warn("netpoll: cannot wake the poller", "err", err)
	}
	<-p.done
	err := errors.Join(unix.Close(p.epfd), unix.Close(p.wakefd))
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
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// Nothing but a programming error gets here (EBADF, EFAULT,
			// EINVAL); the armed callbacks run from Close.
			p.log.Error("netpoll: epoll_wait failed; idle connections are no longer woken", "err", err)
			return
		}
		for i := range events[:n] {
			ev := &events[i]
			if int(ev.Fd) == p.wakefd {
				p.mu.Lock()
				closed := p.closed
				p.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			p.mu.Lock()
			var f func()
			if reg := p.regs[ev.Fd]; reg != nil && reg.armed && reg.gen == uint32(ev.Pad) {
				f = reg.onReadable
				reg.armed, reg.onReadable = false, nil
			}
			p.mu.Unlock()
			if f != nil {
				go f()
			}
		}
	}
}
