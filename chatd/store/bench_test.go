package store

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAppendDurable measures the sustained durable append rate: many
// rooms, concurrent writers (each owning its rooms, as the owner's per-room
// locks do), one 100-byte message per Append, and the time from Append to
// its done callback.
func BenchmarkAppendDurable(b *testing.B) {
	for _, writers := range []int{16, 64, 256} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchAppend(b, writers, 1000)
		})
	}
}

func benchAppend(b *testing.B, writers, rooms int) {
	dir := b.TempDir()
	opts := testOptions(dir)
	opts.ReserveBytes = 0 // the real check, as in production
	obs := &syncObserver{}
	opts.Observer = obs
	s := mustOpen(b, opts)
	for r := range rooms {
		newRoom(b, s, fmt.Sprint("room-", r))
	}
	text := strings.Repeat("t", 100)
	var lat []time.Duration
	var latMu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Writer w owns rooms w, w+writers, ...; it keeps a bounded
			// number of appends in flight, as a node's owner does.
			inflight := make(chan struct{}, 8)
			heads := map[int]uint64{}
			my := []time.Duration{}
			var myMu sync.Mutex
			for i := w; ; i += writers {
				if next.Add(1) > int64(b.N) {
					break
				}
				r := i % rooms
				if r%writers != w%writers {
					r = w % rooms
				}
				heads[r]++
				inflight <- struct{}{}
				t0 := time.Now()
				e := []Entry{{Seq: heads[r], Term: 1, From: "user", CID: "cid", Text: text, TS: t0.UnixMilli()}}
				err := s.Append(fmt.Sprint("room-", r), e, func(err error) {
					if err != nil {
						b.Error(err)
					}
					myMu.Lock()
					my = append(my, time.Since(t0))
					myMu.Unlock()
					<-inflight
				})
				if err != nil {
					b.Error(err)
					<-inflight
					break
				}
			}
			for range cap(inflight) {
				inflight <- struct{}{}
			}
			latMu.Lock()
			lat = append(lat, my...)
			latMu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	st := s.Stats()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	if l := obs.sorted(); len(l) > 0 {
		b.ReportMetric(float64(l[len(l)/2].Microseconds()), "sync-p50-µs")
		b.ReportMetric(float64(l[len(l)*99/100].Microseconds()), "sync-p99-µs")
	}
	if st.Syncs > 0 {
		b.ReportMetric(float64(st.SyncedWrites)/float64(st.Syncs), "writes/sync")
	}
}

// bigEnv gates the benchmarks that build large stores.
func bigEnv(b *testing.B, name string) {
	if os.Getenv(name) == "" {
		b.Skipf("set %s=1 to run (builds a large store)", name)
	}
}

// syncObserver records group commit latencies.
type syncObserver struct {
	nopObserver
	mu  sync.Mutex
	lat []time.Duration
}

func (o *syncObserver) GroupCommit(d time.Duration, _, _ int, _ error) {
	o.mu.Lock()
	o.lat = append(o.lat, d)
	o.mu.Unlock()
}

func (o *syncObserver) sorted() []time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := slices.Clone(o.lat)
	slices.Sort(l)
	return l
}

// BenchmarkAppendPaced measures Append-to-done latency at a steady offered
// rate (open loop: appends are issued on a clock, whatever the latency),
// 1,000 rooms, one 100-byte message per Append. b.N is the message count.
func BenchmarkAppendPaced(b *testing.B) {
	for _, rate := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			opts := testOptions(b.TempDir())
			opts.ReserveBytes = 0
			s := mustOpen(b, opts)
			const rooms = 1000
			for r := range rooms {
				newRoom(b, s, fmt.Sprint("room-", r))
			}
			text := strings.Repeat("t", 100)
			heads := make([]uint64, rooms)
			lat := make([]time.Duration, b.N)
			var wg sync.WaitGroup
			interval := time.Second / time.Duration(rate)
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				// Issue message i at start + i*interval.
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				r := i % rooms
				heads[r]++
				t0 := time.Now()
				wg.Add(1)
				err := s.Append(fmt.Sprint("room-", r), []Entry{{Seq: heads[r], Term: 1, From: "u", CID: "c", Text: text, TS: t0.UnixMilli()}}, func(err error) {
					lat[i] = time.Since(t0)
					wg.Done()
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			st := s.Stats()
			b.ReportMetric(float64(st.SyncedWrites)/float64(max(st.Syncs, 1)), "writes/sync")
		})
	}
}
