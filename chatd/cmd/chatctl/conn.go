package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// connectTimeout bounds one connection attempt (upgrade, hello, welcome).
const connectTimeout = 10 * time.Second

// connFailure is a connection that could not be made or was lost, with what
// the protocol says to do about it.
type connFailure struct {
	err        error
	disp       client.Disposition
	retryAfter time.Duration
	lost       bool // the connection had been established
}

func (f *connFailure) Error() string { return f.err.Error() }
func (f *connFailure) Unwrap() error { return f.err }

// describe returns "close 1012 (server restarting…)" or the network error.
func (f *connFailure) describe() string {
	if code, reason, ok := client.CloseCode(f.err); ok {
		if reason != "" {
			return fmt.Sprintf("close %d: %s", code, reason)
		}
		return fmt.Sprintf("close %d", code)
	}
	return f.err.Error()
}

// cli converts f into the command's final error.
func (f *connFailure) cli(ctx context.Context, what string) *cliError {
	if ended(ctx) {
		return contextError(ctx, what)
	}
	code, _, _ := client.CloseCode(f.err)
	switch {
	case f.disp == client.AuthFailed:
		return &cliError{exit: exitAuth, code: "auth_failed", closeCode: code, msg: "authentication refused (" + f.describe() + ")"}
	case f.lost:
		return &cliError{exit: exitFailure, code: "connection_lost", closeCode: code, msg: "connection lost " + what + " (" + f.describe() + ")"}
	default:
		return &cliError{exit: exitFailure, code: "connect_failed", closeCode: code, msg: "cannot connect (" + f.describe() + ")"}
	}
}

// lostConn wraps an error returned by Read or Send on an open connection.
func lostConn(err error) *connFailure {
	return &connFailure{err: err, disp: client.Classify(err), lost: true}
}

// helloFrame is the hello for the configured credentials.
func helloFrame(o *options) protocol.ClientFrame {
	if o.token != "" {
		return protocol.ClientFrame{Token: o.token, Protocol: protocol.Version}
	}
	return protocol.ClientFrame{Name: o.name, Protocol: protocol.Version}
}

// dial opens and authenticates one connection.
func dial(ctx context.Context, o *options) (*client.Conn, *connFailure) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, resp, err := client.DialHello(cctx, o.url, helloFrame(o), client.Options{})
	if err != nil {
		return nil, &connFailure{err: err, disp: client.Classify(err), retryAfter: client.RetryAfter(resp)}
	}
	return c, nil
}

// reconnectRecord is the chatctl.reconnecting JSON record.
type reconnectRecord struct {
	Type    string `json:"type"`
	Attempt int    `json:"attempt"`
	DelayMS int64  `json:"delay_ms"`
	Reason  string `json:"reason"`
}

// backoffDelay counts a failed attempt and returns how long to wait before
// the next one, honouring the server's Retry-After.
func backoffDelay(bo *client.Backoff, f *connFailure) time.Duration {
	d := bo.Next()
	if f.retryAfter > 0 {
		// Retry-After is a minimum; add jitter so that clients refused
		// together do not come back together.
		d = f.retryAfter + d/4
	}
	return d
}

// withRetry runs op on a fresh connection and, when the connection is lost
// while op runs, reconnects with full-jitter exponential backoff and runs op
// again from the start: op must be idempotent (sends keep their cid). The
// first connection attempt is not retried, so that a wrong URL fails fast.
func withRetry(ctx context.Context, e *env, o *options, what string, op func(c *client.Conn) error) error {
	bo := client.NewBackoff()
	established := false
	for {
		c, f := dial(ctx, o)
		if f == nil {
			established = true
			err := runOnConn(ctx, c, op)
			if err == nil {
				return nil
			}
			if !errors.As(err, &f) {
				return err
			}
		}
		if ended(ctx) || !established || f.disp != client.Reconnect {
			return f.cli(ctx, what)
		}
		delay := backoffDelay(&bo, f)
		e.out.notice(reconnectRecord{Type: "chatctl.reconnecting", Attempt: bo.Attempt(), DelayMS: delay.Milliseconds(), Reason: f.describe()},
			"connection lost (%s); reconnecting in %v (attempt %d)", f.describe(), delay.Round(time.Millisecond), bo.Attempt())
		if !client.Sleep(ctx, delay) {
			return contextError(ctx, what)
		}
	}
}

// runOnConn runs op and closes c afterwards. Cancelling ctx aborts c, which
// interrupts a blocked read; the error is then the context's.
func runOnConn(ctx context.Context, c *client.Conn, op func(c *client.Conn) error) error {
	stop := context.AfterFunc(ctx, c.Abort)
	defer stop()
	defer c.Close()
	err := op(c)
	if err != nil && ended(ctx) {
		return &connFailure{err: cmp.Or(ctx.Err(), context.DeadlineExceeded), disp: client.GiveUp, lost: true}
	}
	return err
}

// frameID extracts the id member of a server frame.
func frameID(f client.Frame) string {
	var v struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(f.Raw, &v)
	return v.ID
}

// ratePause is how long to wait before resending a frame refused with
// rate_limited: one token's refill time, within sane bounds.
func ratePause(c *client.Conn) time.Duration {
	r := c.Welcome.Limits.RatePerSecond
	if r <= 0 {
		return time.Second
	}
	d := time.Duration(float64(time.Second) / r)
	return min(max(d, 50*time.Millisecond), 5*time.Second)
}

// call sends req (which must carry an id) and returns the reply of type
// want with the same id. Frames in between are passed to other, if not nil.
// A rate_limited refusal is waited out and the frame sent again; any other
// error frame for req ends the call with a server error (exit 3).
func call(ctx context.Context, c *client.Conn, req protocol.ClientFrame, want string, other func(client.Frame)) (client.Frame, error) {
	if err := c.Send(req); err != nil {
		return client.Frame{}, lostConn(err)
	}
	for {
		f, err := c.Read()
		if err != nil {
			return client.Frame{}, lostConn(err)
		}
		switch {
		case f.Type == protocol.TypeError:
			var pe protocol.Error
			if err := f.Decode(&pe); err != nil {
				return client.Frame{}, fmt.Errorf("decode error frame: %w", err)
			}
			if pe.ID != req.ID {
				continue
			}
			if pe.Code != protocol.CodeRateLimited {
				return client.Frame{}, serverError(pe)
			}
			if !client.Sleep(ctx, ratePause(c)) {
				return client.Frame{}, lostConn(ctx.Err())
			}
			if err := c.Send(req); err != nil {
				return client.Frame{}, lostConn(err)
			}
		case f.Type == want && frameID(f) == req.ID:
			return f, nil
		case other != nil:
			other(f)
		}
	}
}
