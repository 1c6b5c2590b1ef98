// Package transport carries bytes between chatd nodes: persistent,
// authenticated, multiplexed TCP connections that the cluster layer uses to
// forward messages to a room's owner, to replicate, and to fan out. It does
// not know what it carries; the cluster layer encodes its own payloads.
//
// # Streams and ordering
//
// A node sends to a peer over exactly one outbound TCP connection that it
// dials itself, the stream A→B. Everything A sends to B travels on it: A's
// requests, A's replies to B's requests and A's one-way pushes, in the order
// in which A's calls ([Transport.Send], [Transport.Request], [Reply.OK],
// [Reply.Err]) returned. B dials its own B→A stream for what it sends to A,
// so after the handshake each connection carries data in one direction only.
// One stream per direction is what makes the ordering promise simple: there
// is a single queue per peer, and a single writer draining it.
//
// On the receiving side the frames of one incoming stream are handled
// sequentially, in order, on one goroutine: a push calls
// [Handler.HandlePush], a request calls [Handler.HandleRequest], and a reply
// calls the onReply callback that was passed to [Transport.Request]. Streams
// from different peers are handled concurrently. Because replies and pushes
// from a peer share its stream, a reply that the peer enqueued before a push
// is observed before that push; the cluster layer relies on this to order a
// join's replay before later live messages.
//
// Handlers run on the stream's reader goroutine and must not block for long:
// while one runs, nothing else from that peer is read. In particular a
// handler (or an onReply callback) must not wait for a reply from the same
// peer with [Transport.Call], because that reply would arrive on the very
// goroutine that is waiting; use [Transport.Request] instead. Handlers must
// not call [Transport.Close].
//
// # Payload ownership
//
// Payloads are not copied on the way out: a slice passed to Send, Request or
// a Reply is written to the socket later, by the writer goroutine, so the
// caller must not modify it afterwards. This lets the cluster layer encode a
// message once and send the same bytes to many peers. On the way in, each
// payload is a fresh slice that the handler or callback may keep.
//
// # Failures
//
// Outbound connections are dialed on first use and kept. When one fails, its
// queued frames are dropped and its pending requests fail; the next use
// redials, but only after an exponential backoff, and while backing off Send
// and Request fail fast with an error wrapping [ErrPeerUnavailable]. Nothing
// is retried by the transport itself: it cannot know whether a lost request
// was applied, so the decision to retry belongs to the cluster layer.
//
// # Wire format
//
// After the handshake a stream is a sequence of frames:
//
//	uint32  length of what follows (kind + id + payload), big-endian
//	uint8   kind: 1 push, 2 request, 3 reply, 4 error reply
//	uint64  request id, big-endian (0 for a push, non-zero otherwise)
//	[]byte  payload
//
// A frame whose payload exceeds [Config.MaxFrameBytes], or which is otherwise
// malformed, closes its connection (and only that one) with a logged error.
//
// # Handshake
//
// Only nodes that share the cluster secret may speak. Before any frame:
//
//	acceptor → dialer   "RCT", version, 32-byte acceptor nonce
//	dialer → acceptor   "RCT", version, cluster label, dialer name,
//	                    dialer advertised address, target node name,
//	                    32-byte dialer nonce, 32-byte dialer proof
//	acceptor → dialer   status byte; if 0, a 32-byte acceptor proof
//
// Each proof is HMAC-SHA256 keyed with the secret over the domain label
// "ringchat transport v1", a direction label ("dialer" or "acceptor"), the
// cluster label, both nonces, the dialer's name and address and the target
// name; variable-length fields are length-prefixed so that no two different
// transcripts hash alike. The fresh nonce on each side stops a recorded
// handshake from being replayed in either direction, the direction label
// stops a proof from being reflected back, and the target name stops a node
// from being mistaken for another that now has the address the dialer had
// for it (a restarted pod's old IP reused by a different member). The
// acceptor compares in constant time. The cluster label travels in clear so
// that a mismatch can be reported as such; it is not a secret.
package transport
