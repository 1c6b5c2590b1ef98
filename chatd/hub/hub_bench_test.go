package hub

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/ringchat/ringchat/chatd/metrics"
)

// countingConn stands in for a socket: it measures the hub's own cost of
// fan-out (sequencing, encoding once, queueing to every subscriber).
type countingConn struct {
	id, user string
	n        atomic.Int64
}

func (c *countingConn) SessionID() string    { return c.id }
func (c *countingConn) UserID() string       { return c.user }
func (c *countingConn) Enqueue(frame []byte) { c.n.Add(1) }

func benchHub() *Hub {
	cfg := DefaultConfig()
	return New(cfg, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func BenchmarkPublishFanout(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			h := benchHub()
			conns := make([]*countingConn, subs)
			for i := range conns {
				conns[i] = &countingConn{id: fmt.Sprint("s", i), user: fmt.Sprint("u", i)}
				h.Join(conns[i], JoinRequest{Room: "bench"})
			}
			pub := conns[0]
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.Publish(pub, "", "bench", fmt.Sprint(i), "hello, world"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*float64(subs)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

func TestJoinLeavePresenceCounts(t *testing.T) {
	h := benchHub()
	a1 := &countingConn{id: "a1", user: "a"}
	a2 := &countingConn{id: "a2", user: "a"}
	b1 := &countingConn{id: "b1", user: "b"}
	for _, c := range []*countingConn{a1, a2, b1} {
		h.Join(c, JoinRequest{Room: "r"})
	}
	r := h.lookup("r", false)
	if len(r.users) != 2 || len(r.subs) != 3 {
		t.Fatalf("users %d subs %d", len(r.users), len(r.subs))
	}
	r.mu.Unlock()
	if !h.Leave(a1, "r") || h.Leave(a1, "r") {
		t.Fatal("leave should succeed once")
	}
	r = h.lookup("r", false)
	if r.users["a"] != 1 || len(r.subs) != 2 || r.index[b1] >= len(r.subs) || r.subs[r.index[a2]] != a2 {
		t.Fatalf("after leave: users %v subs %d", r.users, len(r.subs))
	}
	r.mu.Unlock()
}
