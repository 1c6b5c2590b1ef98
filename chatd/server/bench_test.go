package server_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// BenchmarkFanoutLoopback measures end-to-end fan-out through real sockets:
// one publisher, N subscribers reading in this same process. Client and
// server share the machine, so treat the figure as a relative one; chatbench
// (docs/benchmarks.md) measures with the two pinned to separate cores.
func BenchmarkFanoutLoopback(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			srv := chatdtest.Start(b, "--rate", "1000000", "--rate-burst", "1000000", "--max-connections-per-ip", "0")
			pub := chatdtest.Connect(b, srv.URL, "pub")
			pub.Join("bench")
			readers := make([]*chatdtest.Client, subs)
			for i := range readers {
				readers[i] = chatdtest.Connect(b, srv.URL, fmt.Sprint("sub", i))
				readers[i].Join("bench")
			}
			// The publisher's own acks and messages must be read too, or its
			// queue would overflow and the server would close it (4008).
			go func() {
				for {
					if _, err := pub.Read(); err != nil {
						return
					}
				}
			}()
			var wg sync.WaitGroup
			b.ResetTimer()
			for _, r := range readers {
				wg.Add(1)
				go func(r *chatdtest.Client) {
					defer wg.Done()
					for got := 0; got < b.N; {
						f, err := r.Read()
						if err != nil {
							b.Error(err)
							return
						}
						if f.Type == protocol.TypeMessage {
							got++
						}
					}
				}(r)
			}
			go func() {
				for i := 0; i < b.N; i++ {
					if err := pub.Send(protocol.ClientFrame{Type: protocol.TypeSend, Room: "bench", CID: fmt.Sprint(i), Text: "hello from the benchmark"}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
			wg.Wait()
			b.ReportMetric(float64(b.N)*float64(subs)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
