package metrics

import "github.com/prometheus/client_golang/prometheus"

// Hooks are the collectors of the backend hooks (chatd/hooks). They live in
// a struct of their own, registered only when a hook is configured, so that
// a node without hooks shows none of their series.
type Hooks struct {
	// Calls counts hook calls by hook (connect, join, send) and result:
	// allow, deny, replace (a send hook that rewrote the text), and
	// failed_allow or failed_deny when the backend failed (down, timed
	// out, a bad answer, or the circuit breaker open) and the hook's
	// failure policy decided.
	Calls *prometheus.CounterVec
	// Failures counts failed attempts by hook and reason: timeout,
	// unreachable, status (a non-2xx answer), bad_reply, breaker_open.
	Failures *prometheus.CounterVec
	// Duration is how long a hook call took, retries included, by hook.
	Duration *prometheus.HistogramVec
	// BreakerState is each hook's circuit breaker: 0 closed, 1 half-open,
	// 2 open.
	BreakerState *prometheus.GaugeVec
}

// NewHooks creates the hook collectors and registers them on m's registry.
func NewHooks(m *Metrics) *Hooks {
	h := &Hooks{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_hook_calls_total",
			Help: "Backend hook calls, by hook (connect, join, send) and result (allow, deny, replace, failed_allow, failed_deny).",
		}, []string{"hook", "result"}),
		Failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_hook_failures_total",
			Help: "Failed backend hook attempts, by hook and reason (timeout, unreachable, status, bad_reply, breaker_open).",
		}, []string{"hook", "reason"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "chatd_hook_duration_seconds",
			Help:    "Duration of a backend hook call, retries included, by hook.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"hook"}),
		BreakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "chatd_hook_breaker_state",
			Help: "State of each backend hook's circuit breaker: 0 closed, 1 half-open, 2 open.",
		}, []string{"hook"}),
	}
	m.Registry.MustRegister(h.Calls, h.Failures, h.Duration, h.BreakerState)
	return h
}
