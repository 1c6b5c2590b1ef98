// Package admin serves chatd's admin listener (--admin-listen): the admin
// API (/admin/cluster, /admin/ring, /admin/rooms), Go's profiles
// (/debug/pprof/, behind the same token), the Prometheus metrics and the
// health and readiness probes, on an address of their own and
// never on the client port. The admin API requires a bearer token from
// --admin-token-file; without a token file, configuration keeps the
// listener on loopback. The JSON documents are built here too
// (Documents), from small interfaces that the cluster node, the owner
// service, the hub and the membership satisfy, so this package does not
// import chatd/cluster.
package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// Views produce the admin API's JSON documents; Documents.Views makes
// them from a node's parts.
type Views struct {
	// Cluster is GET /admin/cluster: this node's view of the cluster.
	Cluster func() any
	// Ring is GET /admin/ring: every member's counts, asked over the
	// inter-node transport (one request per member).
	Ring func(ctx context.Context) any
	// Rooms is GET /admin/rooms: the rooms this node owns.
	Rooms func() any
}

// Ring fan-out limits: /admin/ring sends one inter-node request per
// member, so a node answers at most RingRate of them per second, with
// bursts of RingBurst; beyond that it answers 429 with Retry-After.
const (
	RingRate  rate.Limit = 2
	RingBurst int        = 4
)

// Config configures the admin listener's handler.
type Config struct {
	// Tokens, when set, are required by /admin/ (and by /metrics with
	// MetricsRequireToken). Nil leaves the API open: configuration allows
	// that only on loopback.
	Tokens *Tokens
	// MetricsRequireToken makes /metrics require a token too.
	MetricsRequireToken bool
	// Metrics serves /metrics.
	Metrics http.Handler
	// Probes serves /healthz and /readyz (the client port's handler).
	Probes http.Handler
	// Views produce the admin API's documents.
	Views Views
	// RingLimiter bounds /admin/ring's fan-out; nil means RingRate and
	// RingBurst.
	RingLimiter *rate.Limiter
}

// Handler returns the admin listener's handler.
func Handler(cfg Config) http.Handler {
	ring := cfg.RingLimiter
	if ring == nil {
		ring = rate.NewLimiter(RingRate, RingBurst)
	}
	api := http.NewServeMux()
	api.HandleFunc("GET /admin/cluster", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, cfg.Views.Cluster())
	})
	api.HandleFunc("GET /admin/ring", func(w http.ResponseWriter, r *http.Request) {
		res := ring.Reserve()
		if delay := res.Delay(); delay > 0 {
			res.Cancel()
			tooMany(w, delay)
			return
		}
		writeJSON(w, cfg.Views.Ring(r.Context()))
	})
	api.HandleFunc("GET /admin/rooms", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, cfg.Views.Rooms())
	})

	// Go's profiles, behind the admin token: a node that is stuck or slow
	// in production is diagnosed from its goroutines and profiles, not
	// from its logs alone. (Importing net/http/pprof also registers them on
	// http.DefaultServeMux, which chatd never serves.)
	debug := http.NewServeMux()
	debug.HandleFunc("GET /debug/pprof/", pprof.Index)
	debug.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	debug.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	debug.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	debug.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	mux := http.NewServeMux()
	mux.Handle("GET /admin/", cfg.guard(true, api))
	mux.Handle("GET /debug/pprof/", cfg.guard(true, debug))
	mux.Handle("GET /metrics", cfg.guard(cfg.MetricsRequireToken, cfg.Metrics))
	mux.Handle("GET /healthz", cfg.Probes)
	mux.Handle("GET /readyz", cfg.Probes)
	return mux
}

// guard requires a token on h when needed and tokens are configured.
// Every request under /admin/ is checked, unknown paths included, so an
// unauthenticated client learns nothing of which paths exist.
func (cfg Config) guard(needed bool, h http.Handler) http.Handler {
	if !needed || cfg.Tokens == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !cfg.Tokens.Authorized(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="chatd admin"`)
			http.Error(w, "admin API: missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tooMany answers 429 with the whole seconds to wait (at least 1).
func tooMany(w http.ResponseWriter, delay time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(delay, time.Second).Seconds()))))
	http.Error(w, "admin API: /admin/ring is rate limited (it asks every member); retry later", http.StatusTooManyRequests)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Server returns the admin listener's HTTP server: the same header and
// write deadlines as the client port, no WebSockets.
func Server(h http.Handler, headerTimeout, writeTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       headerTimeout,
		WriteTimeout:      writeTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
