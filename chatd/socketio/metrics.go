package socketio

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringchat/ringchat/chatd/metrics"
)

// sioMetrics are the endpoint's own collectors; the operations it runs
// count in the node's shared ones (frames, errors, rate limiting, auth).
type sioMetrics struct {
	sessions   *prometheus.GaugeVec // transport
	upgrades   prometheus.Counter
	forwards   prometheus.Counter
	recoveries *prometheus.CounterVec // result
	packetsOut prometheus.Counter
}

func newMetrics(m *metrics.Metrics) *sioMetrics {
	sm := &sioMetrics{
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatd_socketio_sessions", Help: "Open Engine.IO sessions at /socket.io/, by transport (polling, websocket).",
		}, []string{"transport"}),
		upgrades: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_socketio_upgrades_total", Help: "Engine.IO sessions upgraded from long-polling to WebSocket.",
		}),
		forwards: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_socketio_forwards_total", Help: "Engine.IO requests forwarded to the node holding their session.",
		}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_socketio_recoveries_total", Help: "Socket.IO connection state recoveries asked for, by result (recovered, not_recovered).",
		}, []string{"result"}),
		packetsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_socketio_packets_sent_total", Help: "Engine.IO packets written to Socket.IO clients.",
		}),
	}
	for _, t := range []string{"polling", "websocket"} {
		sm.sessions.WithLabelValues(t)
	}
	for _, r := range []string{"recovered", "not_recovered"} {
		sm.recoveries.WithLabelValues(r)
	}
	m.Registry.MustRegister(sm.sessions, sm.upgrades, sm.forwards, sm.recoveries, sm.packetsOut)
	return sm
}
