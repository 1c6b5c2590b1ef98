// Package netpoll tells chatd when an idle socket becomes readable, so that
// an idle connection needs no goroutine parked in a read.
//
// A goroutine blocked in a read keeps its stack for the life of the
// connection, and on an idle node that stack is the largest cost of a
// connection (docs/benchmarks.md). With a Poller, a connection's reader
// arms its socket and returns; the Poller's one goroutine waits on an epoll
// instance for every armed socket, and when one becomes readable (data, a
// hang-up or an error) it runs that socket's callback, once, on a new
// goroutine, which reads again.
//
// The Poller's goroutine does not block in epoll_wait: the epoll descriptor
// is itself non-blocking and sits in the Go runtime's poller, so the
// goroutine parks like one in a socket read until an event is ready. A
// blocking epoll_wait would hold an OS thread and, until the scheduler
// takes it back (up to 10 ms on an idle process), its P: with GOMAXPROCS=1
// every other goroutine of the node would wait that long after each wait
// began. Close closes the descriptor, which ends the wait.
//
// Readiness is one-shot and level-triggered (EPOLLIN|EPOLLRDHUP|
// EPOLLONESHOT): a socket fires at most once per Arm, and bytes that arrived
// before it was armed fire at once. The socket itself stays in the Go
// runtime's poller too, so reads and deadlines work as usual; this package
// only tells when to start a read.
//
// A socket is registered once (Register returns its Handle) and armed again
// after every wake. Each Arm carries a new generation in the event's spare
// 32 bits; an event whose generation is not the registration's latest (a
// socket forgotten, its descriptor number reused by a new connection, an
// event dequeued just before a re-arm) is ignored. The Handle reaches the
// descriptor only inside the socket's RawConn.Control, so a socket closed
// concurrently (an abort) cannot have its number reused under an epoll_ctl.
// Forget the socket before closing it.
//
// Only Linux has an implementation: elsewhere New returns ErrUnsupported and
// callers keep a goroutine blocked in the read.
package netpoll

import "errors"

// ErrUnsupported is returned by New where no implementation exists.
var ErrUnsupported = errors.New("netpoll: readiness polling is not supported on this platform")

// ErrClosed is returned by Arm after Close.
var ErrClosed = errors.New("netpoll: poller closed")
