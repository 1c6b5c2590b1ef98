package server

import (
	"net/http"
	"strconv"
	"sync"
)

// admission counts open connections per node and per client IP, so that a
// flood of connections is refused before the (relatively costly) WebSocket
// upgrade and one address cannot take every slot.
type admission struct {
	maxTotal int
	maxPerIP int

	mu    sync.Mutex
	total int
	perIP map[string]int
}

func newAdmission(maxTotal, maxPerIP int) *admission {
	return &admission{maxTotal: maxTotal, maxPerIP: maxPerIP, perIP: make(map[string]int)}
}

// refusal says why a connection was refused and how to answer.
type refusal struct {
	status int
	reason string
}

// acquire takes a slot for ip, or says why not. A successful acquire must be
// matched by release.
func (a *admission) acquire(ip string) *refusal {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.maxTotal > 0 && a.total >= a.maxTotal {
		return &refusal{http.StatusServiceUnavailable, "node_full"}
	}
	if a.maxPerIP > 0 && a.perIP[ip] >= a.maxPerIP {
		return &refusal{http.StatusTooManyRequests, "ip_limit"}
	}
	a.total++
	a.perIP[ip]++
	return nil
}

func (a *admission) release(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.perIP[ip]--; a.perIP[ip] <= 0 {
		delete(a.perIP, ip)
	}
}

func refuse(w http.ResponseWriter, ref *refusal, retryAfterSeconds int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	http.Error(w, "connection refused: "+ref.reason, ref.status)
}
