package client

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/backoff"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// This file holds the reconnect and resume policy of docs/protocol.md §8 and
// §12 as small building blocks, shared by chatctl and chatbench. The Conn
// type itself stays policy-free.

// Backoff is chatd's one backoff (chatd/backoff), here as the reconnect
// backoff of docs/protocol.md §8: full jitter, the n-th consecutive failure
// waiting a uniformly random duration in [0, min(Max, Base × 2^(n-1))).
// NewBackoff returns the protocol's recommended bounds; the zero value
// waits nothing. Call Reset once a connection has been healthy for a while,
// not merely opened, so that a server accepting and immediately closing
// connections is not hammered.
type Backoff = backoff.Backoff

// NewBackoff returns the reconnect backoff docs/protocol.md §8 recommends:
// full jitter, 500 ms doubling up to 30 s.
func NewBackoff() Backoff {
	return Backoff{Base: 500 * time.Millisecond, Max: 30 * time.Second, Jitter: backoff.Full}
}

// Disposition says what a client should do after a connection ended, per
// the close code table of docs/protocol.md §8.
type Disposition int

const (
	// Reconnect: reconnect with backoff and resume (1000 unrequested, 1001,
	// 1006, 1011, 1012, 4002, 4008, 4010, network errors, refused upgrades).
	Reconnect Disposition = iota
	// GiveUp: reconnecting with the same settings cannot help (1008 abuse,
	// 1009 frame too big, 4011 disconnected for good by the backend, or an
	// unknown close code).
	GiveUp
	// AuthFailed: the credentials were refused or expired (4001, 4003,
	// 4004); reconnect only with new credentials or another protocol version.
	AuthFailed
)

// String returns a lower-case name for logs.
func (d Disposition) String() string {
	switch d {
	case Reconnect:
		return "reconnect"
	case GiveUp:
		return "give-up"
	case AuthFailed:
		return "auth-failed"
	}
	return "Disposition(" + strconv.Itoa(int(d)) + ")"
}

// Classify tells what to do after err ended (or prevented) a connection.
// err is typically what Read or Connect returned. Errors that are not
// WebSocket close frames (connection refused, reset, timeouts, EOF) are
// transient and answer Reconnect.
func Classify(err error) Disposition {
	code, _, ok := CloseCode(err)
	if !ok {
		return Reconnect
	}
	switch code {
	case websocket.CloseNormalClosure, protocol.CloseGoingAway, websocket.CloseAbnormalClosure,
		websocket.CloseInternalServerErr, protocol.CloseServiceRestart, websocket.CloseTryAgainLater,
		protocol.CloseHelloTimeout, protocol.CloseSlowConsumer, protocol.CloseDisconnected:
		return Reconnect
	case protocol.CloseAuthFailed, protocol.CloseUnsupportedVersion, protocol.CloseTokenExpired:
		return AuthFailed
	default:
		return GiveUp
	}
}

// RetryAfter returns the delay a refused upgrade asks for in its Retry-After
// header (seconds or an HTTP date), or 0 when resp is nil or has none.
// Servers send it with 503 (draining, node full) and 429 (per-IP limit).
func RetryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// Cursor is how far a client has read a room: the epoch of the room's
// current incarnation and the last sequence number received in order.
// The zero Cursor means "nothing read yet".
type Cursor struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// Known reports whether the cursor holds an epoch, i.e. whether a resume
// is possible.
func (c Cursor) Known() bool { return c.Epoch != "" }

// JoinFrame builds the join to send for room after (re)connecting: a resume
// (since + epoch) when the cursor is known, a plain join otherwise.
func (c Cursor) JoinFrame(id, room string) protocol.ClientFrame {
	f := protocol.ClientFrame{Type: protocol.TypeJoin, ID: id, Room: room}
	if c.Known() {
		since := c.Seq
		f.Since = &since
		f.Epoch = c.Epoch
	}
	return f
}

// ResumeOutcome is what a joined frame means for a client holding a cursor.
type ResumeOutcome int

const (
	// Fresh: the join was not a resume (no since), nothing to reconcile.
	Fresh ResumeOutcome = iota
	// Recovered: every message after the cursor follows in order.
	Recovered
	// Gap: same epoch, but the messages after the cursor are older than the
	// kept history; reload what is left with history.
	Gap
	// NewEpoch: the room was recreated (idle expiry or restart); sequence
	// numbers restarted, drop local state and reload with history.
	NewEpoch
)

// String returns a lower-case name for logs.
func (o ResumeOutcome) String() string {
	switch o {
	case Fresh:
		return "fresh"
	case Recovered:
		return "recovered"
	case Gap:
		return "gap"
	case NewEpoch:
		return "new-epoch"
	}
	return "ResumeOutcome(" + strconv.Itoa(int(o)) + ")"
}

// Outcome classifies the joined frame j answering a join built from c.
func (c Cursor) Outcome(j protocol.Joined) ResumeOutcome {
	switch {
	case j.Recovered == nil:
		if c.Known() && j.Epoch != c.Epoch {
			return NewEpoch
		}
		return Fresh
	case *j.Recovered:
		return Recovered
	case j.Epoch != c.Epoch:
		return NewEpoch
	default:
		return Gap
	}
}

// DialHello is Connect that also returns the HTTP response of a refused
// upgrade (status 503 or 429, with Retry-After), so that a reconnect loop can
// honour it. resp is nil when the upgrade succeeded or no response arrived.
func DialHello(ctx context.Context, url string, hello protocol.ClientFrame, opts Options) (c *Conn, resp *http.Response, err error) {
	c, resp, err = Dial(ctx, url, opts)
	if err != nil {
		return nil, resp, err
	}
	hello.Type = protocol.TypeHello
	if err := c.Send(hello); err != nil {
		c.Abort()
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetReadDeadline(dl)
	}
	// Cancelling ctx interrupts the wait for the welcome.
	stop := context.AfterFunc(ctx, c.Abort)
	f, err := c.Read()
	aborted := !stop()
	_ = c.SetReadDeadline(time.Time{})
	switch {
	case aborted:
		c.Abort()
		return nil, nil, fmt.Errorf("waiting for welcome: %w", ctx.Err())
	case err != nil:
		c.Abort()
		return nil, nil, fmt.Errorf("waiting for welcome: %w", err)
	case f.Type != protocol.TypeWelcome:
		c.Close()
		return nil, nil, fmt.Errorf("expected welcome, got %s: %s", f.Type, f.Raw)
	}
	if err := f.Decode(&c.Welcome); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("decode welcome: %w", err)
	}
	return c, nil, nil
}

// Sleep waits for d or until ctx is done, and reports whether the whole
// delay passed: the pause of a reconnect loop, which must end at once when
// the caller gives up.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
