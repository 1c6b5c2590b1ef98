// Package transport carries bytes between chatd nodes: persistent,
// mutually authenticated and encrypted (TLS 1.3), multiplexed TCP
// connections that the cluster layer uses to forward messages to a room's
// owner, to replicate, and to fan out. It does not know what it carries;
// the cluster layer encodes its own payloads.
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
// After the handshake a stream is a sequence of frames, inside TLS:
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
// Only nodes whose certificates chain to a CA in each other's bundle may
// speak (Config.Credentials), and a node can only speak as the node its
// certificate names. On a new connection:
//
//  1. TLS 1.3, both sides presenting a certificate. The acceptor's
//     certificate must chain to one of the dialer's trusted CAs, be valid
//     now for server authentication and carry the name of the node dialed
//     as a DNS subject alternative name, exactly (no wildcard). The
//     dialer's certificate must chain to one of the acceptor's CAs and be
//     valid for client authentication. No session is resumed: every
//     stream authenticates in full. No server name is sent in clear.
//  2. The dialer's hello: "RCT", transport version 2, the inter-node
//     protocol version (uint16, Config.ProtocolVersion), then the cluster
//     label, its node name, its advertised address and the name of the
//     node it means to reach, each with a one-byte length.
//  3. The acceptor's answer: a status byte and its protocol version. It
//     refuses a name the dialer's certificate does not carry (so a node
//     cannot claim to be another), another protocol version (logged at
//     ERROR on both sides: such nodes cannot form one cluster), another
//     cluster label, or a target that is not itself.
//
// Everything after the TLS handshake is encrypted and authenticated by
// TLS: a byte changed on the way fails the record's integrity check and
// closes the stream (Metrics.AuthFailure "integrity"); nothing of it
// reaches a handler. The cluster label is a name, not a boundary: the CA
// is, so give each cluster its own.
//
// Credentials are asked for at every handshake, so certificates and CAs
// that change (files reloaded by chatd/certs) take effect on the next
// connection; and every Config.ReverifyInterval the certificates of live
// streams are checked again against the current CAs and the clock, so a CA
// removed from the bundle, or a certificate that expired, closes the
// streams it authenticated instead of leaving them open for good.
package transport
