package transport

import "errors"

// Errors returned by the transport, directly or wrapped; test for them with
// errors.Is.
var (
	// ErrClosed is returned by calls made after Close, and given to the
	// onReply callbacks of requests still pending when Close was called.
	ErrClosed = errors.New("transport: closed")

	// ErrQueueFull is returned when a peer's outbound queue cannot take the
	// frame. Nothing was queued; the stream is otherwise healthy.
	ErrQueueFull = errors.New("transport: peer queue full")

	// ErrPeerUnavailable is wrapped by errors for a peer that could not be
	// reached: its last dial or handshake failed and the transport is backing
	// off before the next attempt. The underlying cause is wrapped as well.
	ErrPeerUnavailable = errors.New("transport: peer unavailable")

	// ErrConnLost is wrapped by the errors given to pending requests whose
	// connection failed, was forgotten, or was replaced by a new address. The
	// request may or may not have been handled by the peer.
	ErrConnLost = errors.New("transport: connection lost")

	// ErrTimeout is wrapped by the error given to a request that got no reply
	// within its timeout. The request may or may not have been handled.
	ErrTimeout = errors.New("transport: request timed out")

	// ErrAuth is wrapped by handshake errors that mean one side did not
	// trust the other: a certificate missing, expired, not chaining to a
	// trusted CA or not carrying the name claimed, or another cluster
	// label.
	ErrAuth = errors.New("transport: authentication failed")

	// ErrVersion is wrapped by handshake errors between nodes that speak
	// different inter-node protocol versions (Config.ProtocolVersion).
	ErrVersion = errors.New("transport: inter-node protocol version mismatch")

	// ErrHandshake is wrapped by the other handshake errors: the other side
	// does not speak TLS or this transport, it is not the node that was
	// dialed, or it hung up.
	ErrHandshake = errors.New("transport: handshake failed")

	// ErrFrameTooLarge is returned for a payload larger than
	// Config.MaxFrameBytes.
	ErrFrameTooLarge = errors.New("transport: payload exceeds the frame size limit")

	// ErrUnknownPeer is returned when a Peer has no Addr and no connection to
	// a peer of that name exists to fall back on.
	ErrUnknownPeer = errors.New("transport: no address known for peer")
)

// errRetired is what a peer's enqueue reports after Forget, an address
// change or Close retired it; the Transport then looks the peer up again, so
// it never reaches a caller.
var errRetired = errors.New("transport: peer connection retired")

// RemoteError is the error given to onReply when the peer answered with
// Reply.Err. Msg is the peer's message, verbatim.
type RemoteError struct {
	Msg string
}

// Error implements error.
func (e *RemoteError) Error() string { return "transport: remote error: " + e.Msg }
