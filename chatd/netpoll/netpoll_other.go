//go:build !linux

package netpoll

import (
	"log/slog"
	"syscall"
)

// Poller is not available on this platform; New always fails.
type Poller struct{}

// Handle is a socket's registration; there are none on this platform.
type Handle struct{}

// New returns ErrUnsupported on this platform.
func New(*slog.Logger) (*Poller, error) { return nil, ErrUnsupported }

// Register is never called: New fails on this platform.
func (*Poller) Register(syscall.Conn) (*Handle, error) { return nil, ErrUnsupported }

// Arm is never called: New fails on this platform.
func (*Handle) Arm(func()) error { return ErrUnsupported }

// Forget does nothing on this platform.
func (*Handle) Forget() {}

// Close does nothing on this platform.
func (*Poller) Close() error { return nil }
