// Package metrics defines chatd's Prometheus metrics in one place, so that
// names, labels and help texts are reviewed together and documented once
// (docs/configuration.md lists them).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every collector chatd updates. Fields are safe for
// concurrent use, as Prometheus collectors are.
type Metrics struct {
	// Registry is what /metrics serves.
	Registry *prometheus.Registry

	Connections         prometheus.Gauge
	SessionsParked      prometheus.Gauge
	ConnectionsAccepted prometheus.Counter
	ConnectionsRefused  *prometheus.CounterVec // reason
	Closes              *prometheus.CounterVec // code
	Rooms               prometheus.Gauge
	FramesIn            *prometheus.CounterVec // type
	FramesOut           prometheus.Counter
	WritesOut           prometheus.Counter
	MessagesStored      prometheus.Counter
	DirectMessages      prometheus.Counter
	Deliveries          prometheus.Counter
	QueueOverflows      prometheus.Counter
	AuthFailures        *prometheus.CounterVec // code
	RateLimited         prometheus.Counter
	ErrorFrames         *prometheus.CounterVec // code
	SendToAck           prometheus.Histogram

	// Cluster.
	Members         *prometheus.GaugeVec // state
	RoomsOwned      prometheus.Gauge
	ExpectedNodes   prometheus.Gauge
	RoomsReplicated prometheus.Gauge
	Forwards        *prometheus.CounterVec // op
	ReplicationTime prometheus.Histogram
	Handoffs        *prometheus.CounterVec // direction, result
	HeldRequests    prometheus.Counter
	ViewMismatches  prometheus.Counter
	ClaimTime       *prometheus.HistogramVec // fetched
	Fenced          prometheus.Counter
	Conflicts       prometheus.Counter
	Pauses          prometheus.Counter
	RoomsOutOfSync  prometheus.Gauge

	// Storage.
	StoreSyncTime    prometheus.Histogram
	StoreSyncWrites  prometheus.Histogram
	StoreRefused     *prometheus.CounterVec // reason
	StoreRetained    prometheus.Counter
	TransportFrames  *prometheus.CounterVec // direction
	TransportBytes   *prometheus.CounterVec // direction
	TransportDrops   *prometheus.CounterVec // reason
	TransportRedials prometheus.Counter
	TransportAuth    *prometheus.CounterVec // reason

	// Keys and certificates of the cluster.
	GossipKeys           prometheus.Gauge
	GossipKeyringReloads *prometheus.CounterVec // result
	PeerCertExpiry       prometheus.Gauge
	PeerTrustedCAs       prometheus.Gauge

	// Server API (/api/v1/ on the admin listener).
	APIRequests *prometheus.CounterVec // route, code
}

// New creates the collectors and registers them, plus the Go runtime and
// process collectors, on a fresh registry. A fresh registry per server keeps
// several in-process servers (as the tests run) from colliding.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_connections", Help: "Open WebSocket connections.",
		}),
		SessionsParked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_sessions_parked", Help: "WebSocket connections idle with no goroutine reading them: their socket is armed on the readiness poller (--park-idle-readers).",
		}),
		ConnectionsAccepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_connections_accepted_total", Help: "WebSocket upgrades accepted.",
		}),
		ConnectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_connections_refused_total", Help: "Connections refused before the upgrade, by reason.",
		}, []string{"reason"}),
		Closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_connection_closes_total", Help: "Connections closed by the server, by WebSocket close code.",
		}, []string{"code"}),
		Rooms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_rooms", Help: "Rooms with subscribers on this node.",
		}),
		FramesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_frames_received_total", Help: "Client frames accepted for handling (after the rate limit), by frame type; \"invalid\" for undecodable ones.",
		}, []string{"type"}),
		FramesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_frames_sent_total", Help: "Server frames written to connections.",
		}),
		WritesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_websocket_writes_total", Help: "WebSocket messages written (each may batch several frames).",
		}),
		MessagesStored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_messages_total", Help: "Room messages accepted and sequenced (duplicates excluded).",
		}),
		DirectMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_direct_messages_total", Help: "Direct messages accepted (duplicates excluded).",
		}),
		Deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_deliveries_total", Help: "Messages queued to connections (one per message per subscriber).",
		}),
		QueueOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_queue_overflows_total", Help: "Connections closed because their outgoing queue overflowed.",
		}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_auth_failures_total", Help: "Refused hellos, by auth error code.",
		}, []string{"code"}),
		RateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_rate_limited_total", Help: "Client frames refused by the per-connection rate limit.",
		}),
		ErrorFrames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_error_frames_total", Help: "Error frames sent, by error code.",
		}, []string{"code"}),
		SendToAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chatd_send_ack_seconds",
			Help:    "Time from reading a send frame to queueing its ack.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16), // 50µs .. 1.6s
		}),
		Members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatd_cluster_members", Help: "Cluster members this node sees, by state (joining, active, draining).",
		}, []string{"state"}),
		RoomsOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_rooms_owned", Help: "Rooms this node owns (sequences and stores).",
		}),
		ExpectedNodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_expected_nodes", Help: "Cluster size the quorum rule applies (--expected-nodes or --expected-nodes-file; 0: no rule).",
		}),
		RoomsReplicated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_rooms_replicated", Help: "Rooms this node keeps a replica of.",
		}),
		Forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_forwards_total", Help: "Requests sent to other nodes, by operation.",
		}, []string{"op"}),
		ReplicationTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chatd_replication_seconds",
			Help:    "Time from sequencing a message to its storage on every replica.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		Handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_handoffs_total", Help: "Room handoffs, by direction (out, in) and result (ok, failed).",
		}, []string{"direction", "result"}),
		HeldRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_held_requests_total", Help: "Requests held while a room waited for its handoff, then applied in order.",
		}),
		ViewMismatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_forwards_view_mismatch_total", Help: "Forwarded requests whose sender's view of the active members differed from this node's.",
		}),
		ClaimTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chatd_room_claim_seconds",
			Help:    "Time from becoming a room's owner to serving it (promises collected, newest copy fetched when fetched=true).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
		}, []string{"fetched"}),
		Fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_rooms_fenced_total", Help: "Rooms this node gave up because another node owns them in a newer term (a refused write showed it).",
		}),
		Conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_replication_conflicts_total", Help: "Replicated messages refused because the copy held another message at the same sequence number (should stay 0).",
		}),
		RoomsOutOfSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_rooms_out_of_sync", Help: "Rooms this node owns that do not have their full number of copies yet (being claimed, or a replica still syncing).",
		}),
		StoreSyncTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chatd_store_sync_seconds",
			Help:    "Time of one group commit of the message store (WAL and watermark fsync).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		StoreSyncWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chatd_store_sync_writes",
			Help:    "Writes made durable by one group commit of the message store.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		StoreRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_store_writes_refused_total", Help: "Writes the message store refused, by reason (full, failed, closed).",
		}, []string{"reason"}),
		StoreRetained: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_store_retention_removed_total", Help: "Messages removed by retention (--history-retention, --history-max-messages).",
		}),
		Pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_pauses_total", Help: "Times this node noticed it had been paused or suspected by the cluster, and claimed its rooms again.",
		}),
		TransportFrames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_transport_frames_total", Help: "Inter-node frames, by direction (sent, received).",
		}, []string{"direction"}),
		TransportBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_transport_bytes_total", Help: "Inter-node bytes, by direction (sent, received).",
		}, []string{"direction"}),
		TransportDrops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_transport_dropped_total", Help: "Inter-node frames not delivered, by reason (queue_full, connection_lost).",
		}, []string{"reason"}),
		TransportRedials: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_transport_reconnects_total", Help: "Inter-node connections re-established after a failure.",
		}),
		TransportAuth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_transport_auth_failures_total", Help: "Inter-node handshakes refused, and streams closed for a certificate no longer valid or a record that failed its integrity check, by reason.",
		}, []string{"reason"}),
		GossipKeys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_gossip_keys", Help: "Gossip encryption keys installed (the keyring of --gossip-keyring-file).",
		}),
		GossipKeyringReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_gossip_keyring_reloads_total", Help: "Changes of --gossip-keyring-file, by result: applied, or error (the keyring in use is kept).",
		}, []string{"result"}),
		PeerCertExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_peer_tls_cert_expiry_timestamp_seconds", Help: "When this node's inter-node certificate in use expires (Unix time).",
		}),
		PeerTrustedCAs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_peer_tls_trusted_cas", Help: "CA certificates in the inter-node CA bundle in use (--peer-tls-ca-file).",
		}),
		APIRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_api_requests_total", Help: "Server API requests (/api/v1/ on the admin listener), by route (its pattern, or other) and HTTP status code.",
		}, []string{"route", "code"}),
	}
	m.Registry.MustRegister(
		m.Members, m.RoomsOwned, m.ExpectedNodes, m.RoomsReplicated, m.Forwards, m.ReplicationTime, m.Handoffs, m.HeldRequests, m.ViewMismatches,
		m.ClaimTime, m.Fenced, m.Conflicts, m.Pauses, m.RoomsOutOfSync,
		m.StoreSyncTime, m.StoreSyncWrites, m.StoreRefused, m.StoreRetained,
		m.TransportFrames, m.TransportBytes, m.TransportDrops, m.TransportRedials, m.TransportAuth,
		m.GossipKeys, m.GossipKeyringReloads, m.PeerCertExpiry, m.PeerTrustedCAs,
		m.APIRequests,
	)
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Connections, m.SessionsParked, m.ConnectionsAccepted, m.ConnectionsRefused, m.Closes, m.Rooms,
		m.FramesIn, m.FramesOut, m.WritesOut, m.MessagesStored, m.DirectMessages,
		m.Deliveries, m.QueueOverflows, m.AuthFailures, m.RateLimited, m.ErrorFrames, m.SendToAck,
	)
	return m
}

// TransportMetrics adapts Metrics to the transport's counters hooks.
type TransportMetrics struct{ M *Metrics }

// FramesSent counts frames written to a peer.
func (t TransportMetrics) FramesSent(_ string, frames, bytes int) {
	t.M.TransportFrames.WithLabelValues("sent").Add(float64(frames))
	t.M.TransportBytes.WithLabelValues("sent").Add(float64(bytes))
}

// FramesReceived counts frames read from a peer.
func (t TransportMetrics) FramesReceived(_ string, frames, bytes int) {
	t.M.TransportFrames.WithLabelValues("received").Add(float64(frames))
	t.M.TransportBytes.WithLabelValues("received").Add(float64(bytes))
}

// QueueFull counts frames refused because a peer's queue was full.
func (t TransportMetrics) QueueFull(string) { t.M.TransportDrops.WithLabelValues("queue_full").Inc() }

// FramesDropped counts queued frames lost with a connection.
func (t TransportMetrics) FramesDropped(_ string, frames int) {
	t.M.TransportDrops.WithLabelValues("connection_lost").Add(float64(frames))
}

// Reconnect counts re-established connections.
func (t TransportMetrics) Reconnect(string) { t.M.TransportRedials.Inc() }

// AuthFailure counts refused handshakes.
func (t TransportMetrics) AuthFailure(reason string) { t.M.TransportAuth.WithLabelValues(reason).Inc() }
