package transport

import (
	"crypto/x509"
	"errors"
	"net"
	"time"
)

// reverifyLoop checks the certificates of live streams every
// ReverifyInterval (see Config.ReverifyInterval) until Close.
func (t *Transport) reverifyLoop() {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.ReverifyInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
			t.reverify(time.Now())
		}
	}
}

// liveStream is a stream to re-verify: the peer's chain, the usage it was
// accepted for, and the connection to close if it no longer passes.
type liveStream struct {
	peer      string
	direction string
	conn      net.Conn
	chain     []*x509.Certificate
	usage     x509.ExtKeyUsage
}

// reverify closes every stream whose peer certificate no longer verifies
// against the current CAs at now. Asking for the credentials also lets them
// reload their files, so a renewed certificate of ours is picked up even
// while no connection is being made.
func (t *Transport) reverify(now time.Time) {
	if _, err := t.cfg.Credentials.Certificate(); err != nil {
		t.log.Error("transport cannot read its certificate", "err", err)
	}
	pool, err := t.cfg.Credentials.CAs()
	if err != nil {
		t.log.Error("transport cannot read its trusted CAs; live streams left as they are", "err", err)
		return
	}
	var live []liveStream
	t.mu.RLock()
	for _, s := range t.incoming {
		live = append(live, liveStream{peer: s.from.Name, direction: "incoming", conn: s.conn, chain: s.chain, usage: x509.ExtKeyUsageClientAuth})
	}
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	t.mu.RUnlock()
	for _, p := range peers {
		p.mu.Lock()
		if p.state == stateConnected && p.conn != nil {
			live = append(live, liveStream{peer: p.name, direction: "outgoing", conn: p.conn, chain: p.chain, usage: x509.ExtKeyUsageServerAuth})
		}
		p.mu.Unlock()
	}
	for _, s := range live {
		// Incoming streams were checked against the name the peer claimed,
		// outgoing ones against the name dialed: both are the peer's name.
		if err := verifyPeer(s.chain, pool, s.usage, s.peer, now); err != nil {
			t.metrics.AuthFailure("certificate")
			t.log.Warn("transport closing stream: the peer's certificate is no longer valid", "peer", s.peer, "direction", s.direction, "err", err)
			_ = s.conn.Close()
		}
	}
}

// isBadRecord reports whether err is crypto/tls's refusal of a record that
// failed authentication ("local error: tls: bad record MAC").
func isBadRecord(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "local error" && op.Err != nil && op.Err.Error() == "tls: bad record MAC"
}
