package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Defaults for the zero values of Config's tunables.
const (
	DefaultMaxFrameBytes    = 16 << 20
	DefaultQueueBytes       = 16 << 20
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultRequestTimeout   = 10 * time.Second
	DefaultBackoffMin       = 100 * time.Millisecond
	DefaultBackoffMax       = 5 * time.Second
	DefaultMaxHandshakes    = 64
	DefaultReverifyInterval = 10 * time.Second
)

// maxFieldLen bounds the names, labels and addresses exchanged in the
// handshake: they are sent with a one-byte length, and a small bound means an
// unauthenticated client cannot make the acceptor buffer much.
const maxFieldLen = 255

// Config configures a Transport. NodeName, ListenAddr, Credentials and
// ProtocolVersion are required; every other zero value means its default.
type Config struct {
	// NodeName is this node's name in the cluster. Peers address it by this
	// name and it is the From.Name of everything this node sends.
	NodeName string

	// ListenAddr is the TCP address to accept peers on, e.g. ":7946" or
	// "127.0.0.1:0" (any free port; see Transport.Addr).
	ListenAddr string

	// AdvertiseAddr is the address peers should dial to reach this node, sent
	// to them in the handshake so that they can answer without another
	// lookup. Empty means the listener's address; if its host is unspecified
	// (0.0.0.0 or ::), peers substitute the address they see us connect from.
	AdvertiseAddr string

	// Credentials are this node's certificate and the CAs a peer's
	// certificate must chain to. They are asked for at every handshake and
	// every ReverifyInterval, so credentials that reload their files
	// (chatd/certs) rotate certificates and CAs without a restart. The
	// certificate must name this node (NodeName as a DNS subject
	// alternative name) and allow server and client authentication: every
	// node both dials and accepts.
	Credentials Credentials

	// ProtocolVersion is the version of what the cluster layer sends over
	// the transport (chatd/rpc's Version); the transport does not
	// interpret it. Both sides state it in the handshake, and a stream
	// between nodes of different versions is refused on both sides, with
	// an error log and the AuthFailure reason "version". 1 to 65535.
	ProtocolVersion int

	// ClusterLabel names the cluster. It is checked in the handshake, so
	// that nodes of two clusters that happen to trust the same CA are told
	// apart and the mismatch is reported as such. It is a name, not a
	// secret, and not a security boundary: the CA is (give each cluster
	// its own).
	ClusterLabel string

	// MaxFrameBytes is the largest payload of a single frame, both accepted
	// from peers and allowed in Send, Request and replies. All nodes of a
	// cluster should agree on it. Default DefaultMaxFrameBytes.
	MaxFrameBytes int

	// QueueBytes bounds each peer's outbound queue (frames not yet handed to
	// the socket, headers included). A frame that would exceed it is refused
	// with ErrQueueFull, except that an empty queue always accepts one frame,
	// so the largest frame can always be sent. Default DefaultQueueBytes.
	QueueBytes int

	// DialTimeout bounds establishing the TCP connection to a peer.
	DialTimeout time.Duration

	// HandshakeTimeout bounds the whole handshake, on both sides, so that a
	// silent or slow stray connection cannot hold resources.
	HandshakeTimeout time.Duration

	// WriteTimeout bounds each write to a peer's socket. A peer that stops
	// reading for this long is treated as failed, and its connection closed.
	WriteTimeout time.Duration

	// RequestTimeout is the timeout of a Request made with a timeout <= 0,
	// and the longest a Call waits.
	RequestTimeout time.Duration

	// BackoffMin and BackoffMax bound the exponential backoff after a failed
	// connection: the first failure waits about BackoffMin, each consecutive
	// one doubles it up to BackoffMax. Each delay is jittered so that a
	// cluster's nodes do not all redial a recovering peer at once.
	BackoffMin time.Duration
	BackoffMax time.Duration

	// ReverifyInterval is how often the certificates of live streams are
	// checked again against the current CAs and the clock, in both
	// directions: a stream whose peer's certificate has expired, or no
	// longer chains to a trusted CA (the CA was rotated out of the bundle),
	// is closed, and the next connection must present a valid one.
	// Default DefaultReverifyInterval.
	ReverifyInterval time.Duration

	// MaxHandshakes limits connections accepted but not yet authenticated;
	// beyond it new connections are closed at once, so a flood of stray
	// connections costs little more than the accept.
	MaxHandshakes int

	// Logger receives the transport's logs. Nil discards them. Records carry
	// node (this node's name) and, about a connection, peer; tagging them
	// with a component is left to the caller.
	Logger *slog.Logger

	// Metrics receives counters. Nil discards them.
	Metrics Metrics
}

// withDefaults returns cfg with zero values replaced by defaults, or an
// error naming the first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.NodeName == "":
		return cfg, errors.New("transport: Config.NodeName is required")
	case len(cfg.NodeName) > maxFieldLen:
		return cfg, fmt.Errorf("transport: Config.NodeName is %d bytes, limit %d", len(cfg.NodeName), maxFieldLen)
	case len(cfg.ClusterLabel) > maxFieldLen:
		return cfg, fmt.Errorf("transport: Config.ClusterLabel is %d bytes, limit %d", len(cfg.ClusterLabel), maxFieldLen)
	case len(cfg.AdvertiseAddr) > maxFieldLen:
		return cfg, fmt.Errorf("transport: Config.AdvertiseAddr is %d bytes, limit %d", len(cfg.AdvertiseAddr), maxFieldLen)
	case cfg.ListenAddr == "":
		return cfg, errors.New("transport: Config.ListenAddr is required")
	case cfg.Credentials == nil:
		return cfg, errors.New("transport: Config.Credentials is required: inter-node connections use mutual TLS")
	case cfg.ProtocolVersion < 1 || cfg.ProtocolVersion > math.MaxUint16:
		return cfg, fmt.Errorf("transport: Config.ProtocolVersion %d out of range 1..%d", cfg.ProtocolVersion, math.MaxUint16)
	case cfg.MaxFrameBytes < 0 || cfg.MaxFrameBytes > math.MaxUint32-frameBodyMin:
		return cfg, fmt.Errorf("transport: Config.MaxFrameBytes %d out of range", cfg.MaxFrameBytes)
	case cfg.QueueBytes < 0:
		return cfg, fmt.Errorf("transport: Config.QueueBytes %d is negative", cfg.QueueBytes)
	case cfg.MaxHandshakes < 0:
		return cfg, fmt.Errorf("transport: Config.MaxHandshakes %d is negative", cfg.MaxHandshakes)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DialTimeout", &cfg.DialTimeout, DefaultDialTimeout},
		{"HandshakeTimeout", &cfg.HandshakeTimeout, DefaultHandshakeTimeout},
		{"WriteTimeout", &cfg.WriteTimeout, DefaultWriteTimeout},
		{"RequestTimeout", &cfg.RequestTimeout, DefaultRequestTimeout},
		{"BackoffMin", &cfg.BackoffMin, DefaultBackoffMin},
		{"BackoffMax", &cfg.BackoffMax, DefaultBackoffMax},
		{"ReverifyInterval", &cfg.ReverifyInterval, DefaultReverifyInterval},
	} {
		if *d.v < 0 {
			return cfg, fmt.Errorf("transport: Config.%s %v is negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
	if cfg.MaxFrameBytes == 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.MaxHandshakes == 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NopMetrics{}
	}
	return cfg, nil
}

// Metrics receives the transport's counters, so that the cluster layer can
// export them (to Prometheus, say) without this package depending on a
// metrics library. Methods are called from the transport's goroutines,
// concurrently, and must not block. Peer names are the cluster's node names,
// a bounded set; embed NopMetrics to implement only some methods.
type Metrics interface {
	// FramesSent counts frames and bytes (headers included) written to a
	// peer's socket. It is called once per batch, not per frame.
	FramesSent(peer string, frames, bytes int)
	// FramesReceived counts frames and bytes (headers included) read from a
	// peer's stream, once per read batch.
	FramesReceived(peer string, frames, bytes int)
	// QueueFull counts frames refused with ErrQueueFull.
	QueueFull(peer string)
	// FramesDropped counts queued frames discarded because their connection
	// failed or was closed before they were written.
	FramesDropped(peer string, frames int)
	// Reconnect counts outbound connections established to a peer after an
	// earlier connection or attempt to it.
	Reconnect(peer string)
	// AuthFailure counts rejected incoming connections, failed outbound
	// handshakes and live streams closed because a certificate stopped
	// being valid. reason is one of "certificate" (no certificate, or one
	// that does not chain to a trusted CA, has expired or lacks the key
	// usage), "identity" (a dialer claimed a node name its certificate
	// does not carry), "wrong_node" (the node at the address dialed is
	// another one), "label" (cluster label mismatch), "version" (another
	// inter-node protocol version), "tls" (another TLS failure: not TLS,
	// or no common parameters), "protocol" (not this transport's
	// handshake), "timeout", "closed" (hung up during the handshake) and
	// "overload" (too many handshakes at once).
	AuthFailure(reason string)
}

// NopMetrics discards every counter. Embed it in a Metrics implementation to
// implement only the methods of interest.
type NopMetrics struct{}

// FramesSent implements Metrics.
func (NopMetrics) FramesSent(string, int, int) {}

// FramesReceived implements Metrics.
func (NopMetrics) FramesReceived(string, int, int) {}

// QueueFull implements Metrics.
func (NopMetrics) QueueFull(string) {}

// FramesDropped implements Metrics.
func (NopMetrics) FramesDropped(string, int) {}

// Reconnect implements Metrics.
func (NopMetrics) Reconnect(string) {}

// AuthFailure implements Metrics.
func (NopMetrics) AuthFailure(string) {}

// Credentials supply a transport's TLS identity and trust. Methods are
// called from the transport's goroutines, concurrently, at every handshake
// and every Config.ReverifyInterval, so they must be cheap; an
// implementation may reload files there (chatd/certs.Peer does, at most
// every few seconds). An error fails the handshake at hand.
type Credentials interface {
	// Certificate returns this node's certificate chain and private key.
	Certificate() (*tls.Certificate, error)
	// CAs returns the CAs a peer's certificate must chain to.
	CAs() (*x509.CertPool, error)
}
