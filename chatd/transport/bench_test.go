package transport

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkPushThroughput measures one-way 100-byte pushes from a to b over
// loopback, end to end: the clock stops when b has handled the last one. A
// full queue is backpressure: the sender yields and retries, as a real
// sender would shed or slow down.
func BenchmarkPushThroughput(b *testing.B) {
	var got atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	nb := startNode(b, "b", HandlerFuncs{
		Push: func(Peer, []byte) {
			if got.Add(1) == target {
				close(done)
			}
		},
		Request: func(_ Peer, _ []byte, r Reply) { _ = r.OK(nil) },
	}, nil)
	na := startNode(b, "a", nil, nil)
	// Connect before the clock starts.
	if _, err := na.Call(context.Background(), nb.peer, nil); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 100)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for {
			err := na.Send(nb.peer, payload)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) {
				b.Fatal(err)
			}
			runtime.Gosched()
		}
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}

// BenchmarkRequestReply measures request/reply round trips with 100-byte
// payloads: one at a time (latency), and with up to 256 outstanding
// (throughput, as when a node forwards many clients' messages to an owner).
func BenchmarkRequestReply(b *testing.B) {
	echo := HandlerFuncs{Request: func(_ Peer, p []byte, r Reply) { _ = r.OK(p) }}
	setup := func(b *testing.B) (*testNode, Peer) {
		nb := startNode(b, "b", echo, nil)
		na := startNode(b, "a", echo, nil)
		if _, err := na.Call(context.Background(), nb.peer, nil); err != nil {
			b.Fatal(err)
		}
		return na, nb.peer
	}
	payload := make([]byte, 100)

	b.Run("sequential", func(b *testing.B) {
		na, to := setup(b)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := na.Call(context.Background(), to, payload); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})

	b.Run("pipelined", func(b *testing.B) {
		na, to := setup(b)
		window := make(chan struct{}, 256)
		var failed atomic.Int64
		onReply := func(_ []byte, err error) {
			if err != nil {
				failed.Add(1)
			}
			<-window
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			window <- struct{}{}
			na.Request(to, payload, 0, onReply)
		}
		for range cap(window) {
			window <- struct{}{} // every slot back: all answered
		}
		b.StopTimer()
		if n := failed.Load(); n > 0 {
			b.Fatalf("%d requests failed", n)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
	})
}
