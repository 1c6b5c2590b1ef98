package transport

import (
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
)

// maxFieldLen bounds the names, labels and addresses exchanged in the
// handshake: they are sent with a one-byte length, and a small bound means an
// unauthenticated client cannot make the acceptor buffer much.
const maxFieldLen = 255

// Config configures a Transport. NodeName, ListenAddr and Secret (or
// Insecure) are required; every other zero value means its default.
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

	// Secret is the cluster's shared secret. Only nodes holding it can
	// connect, in either direction. It should be at least 32 random bytes.
	Secret []byte

	// Insecure allows an empty Secret, for tests and development. The
	// handshake still runs (with an empty key), so names and labels are still
	// checked, but anyone who can reach the port can join.
	Insecure bool

	// ClusterLabel names the cluster. It is part of every proof, so nodes of
	// two clusters that happen to share a secret still cannot talk, and a
	// mismatch is logged as such.
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
	case len(cfg.Secret) == 0 && !cfg.Insecure:
		// A cluster without a secret accepts anyone who can reach the port;
		// that must be a decision, not a forgotten setting.
		return cfg, errors.New("transport: Config.Secret is required (set Config.Insecure to run without one, for tests only)")
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
	// Copy the secret so that a caller reusing its buffer cannot change the
	// key under a running transport.
	cfg.Secret = append([]byte(nil), cfg.Secret...)
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
	// AuthFailure counts rejected incoming connections and failed outbound
	// handshakes. reason is one of "label" (cluster label mismatch),
	// "credentials" (wrong secret), "wrong_node" (dialed a different node),
	// "protocol" (not this protocol or version), "timeout", "closed" (hung up
	// during the handshake) and "overload" (too many handshakes at once).
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
