package cluster_test

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/cluster"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/owner"
)

// countingConn stands in for a socket, so the benchmark measures the node's
// own cost of a message: route, sequence, store, commit, fan out to every
// local subscriber.
type countingConn struct {
	id, user string
	n        atomic.Int64
}

func (c *countingConn) SessionID() string { return c.id }
func (c *countingConn) UserID() string    { return c.user }
func (c *countingConn) Enqueue([]byte)    { c.n.Add(1) }

// BenchmarkPublishFanout publishes through a cluster of one (hub, router and
// owner, no sockets) to N subscribers.
func BenchmarkPublishFanout(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			m := metrics.New()
			h := hub.New(hub.Config{HistorySize: 1000, DedupeWindow: 1024, PresenceListMax: 100, TypingInterval: time.Second}, m, log)
			node := cluster.New(cluster.Config{Self: "bench", ReplicationFactor: 1, RouteTimeout: time.Second, CallTimeout: time.Second, HandoffGrace: time.Second, Metrics: m}, h,
				owner.Config{HistorySize: 1000, DedupeWindow: 1024, PresenceListMax: 100, RoomIdleTTL: time.Minute, TypingCoalesce: time.Millisecond, PresenceCoalesce: time.Second}, log)
			defer node.Close()
			conns := make([]*countingConn, subs)
			for i := range conns {
				conns[i] = &countingConn{id: fmt.Sprint("s", i), user: fmt.Sprint("u", i)}
				h.Join(conns[i], hub.JoinRequest{Room: "bench"})
			}
			start := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.Publish(conns[0], "", "bench", fmt.Sprint(i), "hello, world", start)
			}
			b.StopTimer()
			if got := conns[subs-1].n.Load(); got < int64(b.N) {
				b.Fatalf("last subscriber got %d frames for %d messages", got, b.N)
			}
			b.ReportMetric(float64(b.N)*float64(subs)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
