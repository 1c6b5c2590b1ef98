package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/socketio"
)

// Protocol label values.
const (
	protoNative   = "native"
	protoSocketIO = "socketio"
)

// protocolMetrics count connections per protocol: the native one at /ws
// and Socket.IO at /socket.io/ (an Engine.IO session, whatever its
// transport). Admission (node and per-IP caps) counts both together.
type protocolMetrics struct {
	open     *prometheus.GaugeVec   // protocol
	accepted *prometheus.CounterVec // protocol
	refused  *prometheus.CounterVec // protocol, reason
}

func newProtocolMetrics(m *metrics.Metrics) *protocolMetrics {
	p := &protocolMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatd_protocol_connections", Help: "Open client connections, by protocol (native: /ws; socketio: Engine.IO sessions at /socket.io/).",
		}, []string{"protocol"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_protocol_connections_accepted_total", Help: "Client connections accepted, by protocol.",
		}, []string{"protocol"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_protocol_connections_refused_total", Help: "Client connections refused before they opened, by protocol and reason (draining, node_full, ip_limit, upgrade).",
		}, []string{"protocol", "reason"}),
	}
	for _, proto := range []string{protoNative, protoSocketIO} {
		p.open.WithLabelValues(proto)
		p.accepted.WithLabelValues(proto)
	}
	m.Registry.MustRegister(p.open, p.accepted, p.refused)
	return p
}

// admitSocketIO applies the node's admission to a new Engine.IO session,
// whichever transport opens it: refused while draining (503), beyond the
// node's or the IP's cap (503, 429), with Retry-After. The slot is freed
// when the session ends.
func (s *Server) admitSocketIO(w http.ResponseWriter, r *http.Request) (func(), bool) {
	retry := max(int(s.cfg.RetryAfter/time.Second), 1)
	if s.draining.Load() {
		s.proto.refused.WithLabelValues(protoSocketIO, "draining").Inc()
		refuse(w, &refusal{http.StatusServiceUnavailable, "draining"}, retry)
		return nil, false
	}
	ip, _ := s.clients.resolve(r) // behind trusted proxies, the client they name
	if ref := s.admit.acquire(ip); ref != nil {
		s.proto.refused.WithLabelValues(protoSocketIO, ref.reason).Inc()
		refuse(w, ref, retry)
		return nil, false
	}
	s.proto.accepted.WithLabelValues(protoSocketIO).Inc()
	return func() { s.admit.release(ip) }, true
}

// socketIOClientAddr is the client address an Engine.IO session logs:
// what trusted proxies name, or the socket's peer.
func (s *Server) socketIOClientAddr(r *http.Request) string {
	if ip, proxied := s.clients.resolve(r); proxied {
		return ip
	}
	return r.RemoteAddr
}

// trackSocketIO registers an Engine.IO session with the shutdown, which
// closes it with 1012 like a native session (its client then reconnects,
// to any node, and recovers).
func (s *Server) trackSocketIO(c socketio.Conn, _ string) func() {
	s.sessions.Add(1)
	s.liveMu.Lock()
	s.live[c] = struct{}{}
	closing := s.closingAll
	s.liveMu.Unlock()
	s.proto.open.WithLabelValues(protoSocketIO).Inc()
	if closing {
		c.Close(protocol.CloseServiceRestart, restartReason)
	}
	return func() {
		s.liveMu.Lock()
		delete(s.live, c)
		s.liveMu.Unlock()
		s.proto.open.WithLabelValues(protoSocketIO).Dec()
		s.sessions.Done()
	}
}
