package api_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// BenchmarkAPIPublish posts messages through the server API of real chatd
// processes with their own --data-dir (every ack durable on
// min(2, nodes) disks), from 16 concurrent callers spread over 64 rooms
// and over every node (a call to a node that does not own the room is
// forwarded, as a load balancer would make it). It reports the throughput
// and the latency of a call, p50 and p99 (docs/benchmarks.md):
//
//	go test -run '^$' -bench BenchmarkAPIPublish -benchtime 20000x ./chatd/api/
func BenchmarkAPIPublish(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			keys := filepath.Join(b.TempDir(), "keys")
			if err := os.WriteFile(keys, []byte(keyA+"\n"), 0o600); err != nil {
				b.Fatal(err)
			}
			c := chatdtest.StartProcessClusterWith(b, nodes, chatdtest.DataDirs(b.TempDir()),
				"--expected-nodes", strconv.Itoa(nodes), "--replication-factor", strconv.Itoa(min(2, nodes)), "--api-key-file", keys, "--log-level", "warn")
			var bases []string
			for _, n := range c.Nodes {
				bases = append(bases, "http://"+n.AdminAddr)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			post := func(base, room string, i int64) (time.Duration, error) {
				body := fmt.Appendf(nil, `{"user":"bench","text":"message %d of a benchmark, about a hundred bytes long: lorem ipsum dolor sit amet"}`, i)
				req, _ := http.NewRequest(http.MethodPost, base+messagesPath(room), bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+keyA)
				req.Header.Set("Content-Type", "application/json")
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					return 0, err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return 0, fmt.Errorf("status %d", resp.StatusCode)
				}
				return time.Since(start), nil
			}
			const rooms = 64
			for r := range rooms { // claim every room first
				if _, err := post(bases[r%len(bases)], fmt.Sprint("bench-", r), 0); err != nil {
					b.Fatal(err)
				}
			}
			var (
				mu   sync.Mutex
				lats = make([]time.Duration, 0, b.N)
				seq  atomic.Int64
				errs atomic.Int64
			)
			b.SetParallelism(8) // 16 callers on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					i := seq.Add(1)
					d, err := post(bases[int(i)%len(bases)], fmt.Sprint("bench-", i%rooms), i)
					if err != nil {
						errs.Add(1)
						continue
					}
					mine = append(mine, d)
				}
				mu.Lock()
				lats = append(lats, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			if n := errs.Load(); n > 0 {
				b.Fatalf("%d calls failed", n)
			}
			slices.Sort(lats)
			b.ReportMetric(float64(len(lats))/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}
