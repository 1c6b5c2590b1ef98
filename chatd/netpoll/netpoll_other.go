//go:build !linux

package netpoll

import (
	"log/slog"
	"syscall"
)

// Poller is not available on this platform; New always fails.
type Poller struct{}

// New returns ErrUnsupported on this platform.
func New(*slog.Logger) (*Poller, error) { return nil, ErrUnsupported }

// FD returns the descriptor of conn; unsupported here.
func FD(syscall.Conn) (int, error) { return -1, ErrUnsupported }

// Arm is never called: New fails on this platform.
func (*Poller) Arm(int, func()) error { return ErrUnsupported }

// Forget does nothing on this platform.
func (*Poller) Forget(int) {}

// Close does nothing on this platform.
func (*Poller) Close() error { return nil }
