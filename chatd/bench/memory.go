package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
)

// IdleReport is the server's memory once it is idle: after the rooms left
// its memory (when waited for) and a hold.
type IdleReport struct {
	// WaitedForRooms is true when the run waited until no node held a room
	// in memory (chatd_rooms_owned + chatd_rooms_replicated = 0, what
	// --room-idle-ttl leads to once nobody is in a room).
	WaitedForRooms bool `json:"waited_for_rooms"`
	// RoomsGone is true when that happened within the wait's limit.
	RoomsGone bool `json:"rooms_gone"`
	// RoomsInMemory is the count at the end of the wait (all nodes).
	RoomsInMemory uint64  `json:"rooms_in_memory"`
	WaitSeconds   float64 `json:"wait_seconds"`
	HoldSeconds   float64 `json:"hold_seconds"`
	// Server figures after the hold (from the server-stats source).
	RSSBytes        uint64 `json:"rss_bytes"`
	HeapInuseBytes  uint64 `json:"heap_inuse_bytes,omitempty"`
	StackInuseBytes uint64 `json:"stack_inuse_bytes,omitempty"`
	Goroutines      uint64 `json:"goroutines,omitempty"`
}

// metricsScraper reads chatd_rooms_* from every node's /metrics.
type metricsScraper struct {
	urls  []string // metrics endpoints, one per node
	nodes int      // the nodes (WebSocket URLs)
	stats *serverStats
}

func newMetricsScraper(opts Options, stats *serverStats) *metricsScraper {
	return &metricsScraper{urls: opts.MetricsURLs, nodes: len(opts.URLs), stats: stats}
}

// roomsInMemory sums the rooms every node holds in memory.
func (m *metricsScraper) roomsInMemory() (uint64, error) {
	if len(m.urls) != m.nodes {
		return 0, fmt.Errorf("%d --metrics-url for %d --url: give each node's metrics endpoint (its --admin-listen address), in the same order", len(m.urls), m.nodes)
	}
	var total uint64
	for _, u := range m.urls {
		v, err := m.stats.scrape(u)
		if err != nil {
			return 0, err
		}
		total += uint64(v["chatd_rooms_owned"] + v["chatd_rooms_replicated"])
	}
	return total, nil
}

// waitRoomsGone polls the nodes' metrics every poll until they hold at most
// maxRooms rooms in memory, or limit passes. It returns the last count and
// whether it got there.
func (m *metricsScraper) waitRoomsGone(ctx context.Context, maxRooms uint64, limit, poll time.Duration) (uint64, bool, error) {
	deadline := time.Now().Add(limit)
	for {
		n, err := m.roomsInMemory()
		if err != nil {
			return 0, false, fmt.Errorf("count the rooms in memory (needs /metrics): %w", err)
		}
		if n <= maxRooms {
			return n, true, nil
		}
		if time.Now().After(deadline) {
			return n, false, nil
		}
		if !client.Sleep(ctx, poll) {
			return n, false, ctx.Err()
		}
	}
}

// idleMemory waits (when wait > 0) for the rooms to leave the nodes'
// memory, then holds, then samples the first node's memory.
func (r *runState) idleMemory(ctx context.Context, wait, hold time.Duration) (*IdleReport, error) {
	if r.stats.source == "none" {
		return nil, errors.New("no server figures to read memory from: give --server-pid or make /metrics reachable")
	}
	rep := &IdleReport{}
	if wait > 0 {
		r.setPhase("waiting for the rooms to leave memory")
		start := time.Now()
		n, gone, err := newMetricsScraper(r.opts, r.stats).waitRoomsGone(ctx, 0, wait, time.Second)
		rep.WaitedForRooms, rep.RoomsGone, rep.RoomsInMemory = true, gone, n
		rep.WaitSeconds = time.Since(start).Seconds()
		if err != nil {
			return rep, err
		}
		if !gone {
			r.note("%d rooms were still in memory after waiting %v (is --room-idle-ttl shorter than the wait?)", n, wait)
		}
	}
	if hold > 0 {
		r.setPhase("holding idle")
		if !client.Sleep(ctx, hold) {
			return rep, ctx.Err()
		}
		rep.HoldSeconds = hold.Seconds()
	}
	s, err := r.stats.sample()
	if err != nil {
		return rep, fmt.Errorf("read the server's memory: %w", err)
	}
	rep.RSSBytes, rep.HeapInuseBytes, rep.StackInuseBytes, rep.Goroutines = s.RSSBytes, s.HeapInuseBytes, s.StackInuseBytes, s.Goroutines
	if !rep.WaitedForRooms {
		rep.RoomsInMemory = s.RoomsInMemory
	}
	return rep, nil
}

// httpOrigin maps ws://host:port/ws to http://host:port (wss to https).
func httpOrigin(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return ""
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

// readyz asks GET /readyz once.
func readyz(ctx context.Context, hc *http.Client, origin string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+"/readyz", nil)
	if err != nil {
		return false, fmt.Errorf("readyz request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}
