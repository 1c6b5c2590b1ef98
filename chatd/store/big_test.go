package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The big-data benchmarks build a store once under $STORE_BENCH_DIR (default
// the system temp dir) and reuse it across runs:
//
//	STORE_BENCH_BIG=1 go test -run '^$' -bench 'Open1M|ColdRead' -benchtime 1x ./chatd/store
//	STORE_BENCH_10M=1 go test -run '^$' -bench 'IdleRSS10M' -benchtime 1x -timeout 60m ./chatd/store

// bigStore returns the directory of a store with rooms × perRoom messages
// of 100-byte texts, building it if it is not there yet.
func bigStore(b *testing.B, rooms, perRoom int) string {
	b.Helper()
	base := os.Getenv("STORE_BENCH_DIR")
	if base == "" {
		base = os.TempDir()
	}
	dir := filepath.Join(base, fmt.Sprintf("ringchat-store-bench-%dx%d", rooms, perRoom))
	if _, err := os.Stat(filepath.Join(dir, "BUILT")); err == nil {
		return dir
	}
	_ = os.RemoveAll(dir)
	start := time.Now()
	s, err := Open(Options{Dir: dir, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	text := strings.Repeat("m", 100)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := w; r < rooms; r += workers {
				room := fmt.Sprintf("room-%06d", r)
				if err := s.Reset(room, RoomMeta{Epoch: "e" + room, Term: 1, Promised: 1}, nil); err != nil {
					b.Error(err)
					return
				}
				ts := time.Now().UnixMilli()
				for seq := 1; seq <= perRoom; seq += 100 {
					es := make([]Entry, min(100, perRoom-seq+1))
					for i := range es {
						es[i] = Entry{Seq: uint64(seq + i), Term: 1, From: fmt.Sprint("user", i%10), CID: fmt.Sprint("c", seq+i), Text: text, TS: ts}
					}
					done := newWaiter()
					if err := s.Append(room, es, done.done); err != nil {
						b.Error(err)
						return
					}
					if err := done.wait(b); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "BUILT"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d rooms × %d messages in %v", rooms, perRoom, time.Since(start).Round(time.Second))
	return dir
}

// dropPageCache asks the kernel to drop clean cached pages (root only), so
// that reads really go to the disk. It reports whether it could.
func dropPageCache() bool {
	exec.Command("sync").Run()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200) == nil
}

// BenchmarkOpen1M measures the time from Open to ready (metadata index
// built and checked) for 1,000,000 messages in 10,000 rooms.
func BenchmarkOpen1M(b *testing.B) {
	bigEnv(b, "STORE_BENCH_BIG")
	dir := bigStore(b, 10_000, 100)
	cold := dropPageCache()
	b.ResetTimer()
	var worst time.Duration
	for range b.N {
		t0 := time.Now()
		s, err := Open(Options{Dir: dir, Logger: testLogger()})
		if err != nil {
			b.Fatal(err)
		}
		worst = max(worst, time.Since(t0))
		if st := s.Stats(); st.Rooms != 10_000 || st.Messages != 1_000_000 {
			b.Fatalf("stats %+v", st)
		}
		b.StopTimer()
		_ = s.Close()
		b.StartTimer()
	}
	b.ReportMetric(worst.Seconds(), "worst-s")
	b.Logf("page cache dropped before the first open: %v", cold)
}

// BenchmarkColdRead measures a page of 50 messages from rooms not in the
// block cache: the store is reopened (empty cache) and the OS page cache
// dropped (when root), then each read goes to a different room.
func BenchmarkColdRead(b *testing.B) {
	bigEnv(b, "STORE_BENCH_BIG")
	dir := bigStore(b, 10_000, 100)
	s, err := Open(Options{Dir: dir, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	cold := dropPageCache()
	rooms := rand.Perm(10_000)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		room := fmt.Sprintf("room-%06d", rooms[i%len(rooms)])
		before := uint64(1 + rand.IntN(100))
		t0 := time.Now()
		p, err := s.ReadBefore(room, before+1, 50)
		lat = append(lat, time.Since(t0))
		if err != nil || len(p.Entries) != int(min(before, 50)) {
			b.Fatalf("room %s: %v, %d entries", room, err, len(p.Entries))
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	b.Logf("page cache dropped: %v; %d reads", cold, len(lat))
}

const rssChildEnv = "STORE_RSS_CHILD"

func init() {
	if dir := os.Getenv(rssChildEnv); dir != "" {
		rssChild(dir)
		os.Exit(0)
	}
}

// rssChild opens the store, lets it settle idle and prints its memory.
func rssChild(dir string) {
	t0 := time.Now()
	s, err := Open(Options{Dir: dir, Logger: testLogger()})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	opened := time.Since(t0)
	st := s.Stats()
	time.Sleep(3 * time.Second) // idle: what an idle node holds
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("open %v rooms %d messages %d disk %d heap_inuse %d sys %d rss %d\n",
		opened.Round(time.Millisecond), st.Rooms, st.Messages, st.DiskBytes, ms.HeapInuse, ms.Sys, vmRSS())
	_ = s.Close()
}

func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// BenchmarkIdleRSS10M states the resident memory of a process holding an
// open store of 10,000,000 messages in 100,000 rooms, idle.
func BenchmarkIdleRSS10M(b *testing.B) {
	bigEnv(b, "STORE_BENCH_10M")
	dir := bigStore(b, 100_000, 100)
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		b.Logf("%s", strings.TrimSpace(string(out)))
		f := strings.Fields(string(out))
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "rss" {
				rss, _ := strconv.ParseFloat(f[i+1], 64)
				b.ReportMetric(rss/(1<<20), "rss-MiB")
			}
		}
	}
}
