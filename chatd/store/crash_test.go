package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash tests run a writer in a child process (this test binary, re-run
// with STORE_CRASH_CHILD set), which prints "room seq" once a write is
// reported durable, and kill it with SIGKILL.

const (
	crashChildEnv = "STORE_CRASH_CHILD"
	crashRooms    = 40
	crashWriters  = 4
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashRoom(i int) string { return fmt.Sprintf("room-%02d", i) }

// crashEntry is the deterministic content of a room's seq.
func crashEntry(room string, seq uint64) Entry {
	return Entry{Seq: seq, Term: 1, From: "u" + room, CID: fmt.Sprintf("%s-%d", room, seq),
		Text: fmt.Sprintf("%s message %d %s", room, seq, strings.Repeat("z", int(seq%50))), TS: int64(seq)}
}

// crashChild appends to crashRooms rooms from crashWriters goroutines until
// it is killed, printing each durable batch's last seq.
func crashChild(dir string) {
	opts := testOptions(dir)
	opts.MemTableBytes, _ = strconv.ParseInt(os.Getenv("STORE_CRASH_MEMTABLE"), 10, 64)
	s, err := Open(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, "ready")
	_ = w.Flush()
	var wg sync.WaitGroup
	for g := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			heads := map[string]uint64{}
			for i := g; i < crashRooms; i += crashWriters {
				r := crashRoom(i)
				m, ok := s.Meta(r)
				if !ok {
					if err := s.Reset(r, RoomMeta{Epoch: "e", Term: 1}, nil); err != nil {
						panic(err)
					}
				}
				heads[r] = m.Head
			}
			rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
			// With STORE_CRASH_WAIT each writer waits for its append to be
			// durable before the next, so little is unsynced at the kill.
			wait := os.Getenv("STORE_CRASH_WAIT") != ""
			for {
				durableNow := make(chan struct{})
				r := crashRoom(g + crashWriters*rng.IntN(crashRooms/crashWriters))
				n := 1 + rng.IntN(5)
				es := make([]Entry, n)
				for i := range es {
					es[i] = crashEntry(r, heads[r]+1+uint64(i))
				}
				last := es[n-1].Seq
				err := s.Append(r, es, func(err error) {
					defer close(durableNow)
					if err != nil {
						return
					}
					out.Lock()
					fmt.Fprintf(w, "%s %d\n", r, last)
					_ = w.Flush()
					out.Unlock()
				})
				if err != nil {
					panic(err)
				}
				heads[r] = last
				if wait {
					<-durableNow
				}
			}
		}()
	}
	wg.Wait()
}

// runCrashChild starts a writer on dir, lets it write until a random
// moment after it reported minDurable writes, kills it with SIGKILL and
// returns the highest seq reported durable per room.
func runCrashChild(t *testing.T, dir string, minDurable int, killWithin time.Duration, memtable int64, extraEnv ...string) map[string]uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprintf("STORE_CRASH_MEMTABLE=%d", memtable))
	cmd.Env = append(cmd.Env, extraEnv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	durable := map[string]uint64{}
	var mu sync.Mutex
	count := 0
	reached := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			seq, _ := strconv.ParseUint(f[1], 10, 64)
			mu.Lock()
			durable[f[0]] = max(durable[f[0]], seq)
			count++
			if count == minDurable {
				close(reached)
			}
			mu.Unlock()
		}
	}()
	select {
	case <-reached:
	case <-readDone:
		_ = cmd.Wait()
		t.Fatalf("child ended early: %s", stderr.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("child reported fewer than %d durable writes in 60s: %s", minDurable, stderr.String())
	}
	// The fault: a kill at a random moment while it writes.
	time.Sleep(time.Duration(rand.Int64N(int64(killWithin))))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	<-readDone
	mu.Lock()
	defer mu.Unlock()
	if count < minDurable {
		t.Fatalf("only %d durable writes", count)
	}
	return maps(durable)
}

func maps(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// verifyDurable opens dir and checks every reported-durable seq is there,
// each room gapless from Oldest to Head with the right contents.
func verifyDurable(t *testing.T, dir string, durable map[string]uint64) (total uint64) {
	t.Helper()
	s, err := Open(testOptions(dir))
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	for r, want := range durable {
		m, ok := s.Meta(r)
		if !ok || m.Head < want {
			t.Fatalf("room %s: head %d (held %v), but %d was reported durable", r, m.Head, ok, want)
		}
	}
	for r, m := range s.Rooms() {
		next := m.Oldest
		for next <= m.Head {
			p, err := s.Read(r, next, 500)
			if err != nil {
				t.Fatalf("room %s read from %d: %v", r, next, err)
			}
			if len(p.Entries) == 0 {
				t.Fatalf("room %s: nothing at %d, head %d", r, next, m.Head)
			}
			for _, e := range p.Entries {
				if e.Seq != next || e != crashEntry(r, next) {
					t.Fatalf("room %s: got %+v at %d", r, e, next)
				}
				next++
			}
		}
		// Nothing is stored after Head.
		if p, err := s.Read(r, m.Head+1, 1); err != nil || len(p.Entries) != 0 {
			t.Fatalf("room %s: entries after head %d: %v %v", r, m.Head, p.Entries, err)
		}
		total += m.Count()
	}
	return total
}

func TestKill9Loop(t *testing.T) {
	if testing.Short() {
		t.Skip("kill -9 loop skipped in -short")
	}
	dir := t.TempDir()
	iterations := 20
	deadline := time.Now().Add(90 * time.Second)
	all := map[string]uint64{}
	for i := range iterations {
		if time.Now().After(deadline) {
			t.Logf("stopping after %d iterations (time bound)", i)
			break
		}
		// A small memtable in odd iterations, so that kills also land
		// during flushes and compactions.
		memtable := int64(0)
		if i%2 == 1 {
			memtable = 256 << 10
		}
		got := runCrashChild(t, dir, 200, 300*time.Millisecond, memtable)
		for r, v := range got {
			all[r] = max(all[r], v)
		}
		total := verifyDurable(t, dir, all)
		t.Logf("iteration %d: %d rooms reported, %d messages stored", i, len(got), total)
	}
}

// lastWAL returns the newest WAL file of a store directory.
func lastWAL(t *testing.T, dir string) string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(logs) == 0 {
		t.Fatal("no WAL file")
	}
	slices.Sort(logs)
	return logs[len(logs)-1]
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		in, err := os.Open(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		_ = in.Close()
		_ = out.Close()
	}
	return dst
}

// TestTornWAL kills a writer, then cuts its active WAL short by various
// amounts: each copy must either open with everything reported durable, or
// be refused with ErrCorrupt. Cuts deep into synced records must be
// refused: that is the watermark guard at work (Pebble itself takes a WAL
// that ends early for a crash and recovers what is left).
func TestTornWAL(t *testing.T) {
	dir := t.TempDir()
	durable := runCrashChild(t, dir, 2000, 50*time.Millisecond, 0, "STORE_CRASH_WAIT=1")
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			info, _ := e.Info()
			t.Logf("%s %d", e.Name(), info.Size())
		}
	}
	wal := lastWAL(t, dir)
	st, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	size := st.Size()
	t.Logf("active WAL %s: %d bytes", filepath.Base(wal), size)
	cuts := []int64{1, 3, 7, 64, 1000, size / 2, size - 40_000}
	refused := 0
	for _, cut := range cuts {
		if cut <= 0 || cut >= size {
			continue
		}
		t.Run(fmt.Sprintf("cut %d bytes", cut), func(t *testing.T) {
			cp := copyDir(t, dir)
			if err := os.Truncate(filepath.Join(cp, filepath.Base(wal)), size-cut); err != nil {
				t.Fatal(err)
			}
			s, err := Open(testOptions(cp))
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open refused with %v, want ErrCorrupt", err)
				}
				t.Logf("refused: %v", err)
				refused++
				return
			}
			_ = s.Close()
			verifyDurable(t, cp, durable)
		})
	}
	// The writers waited for each append to be durable, so at most a few
	// KiB at the end of the WAL were unsynced: cutting half of a WAL of
	// more than 32 KiB removes synced writes, which must be refused.
	if refused == 0 && size > 32<<10 {
		t.Fatal("no cut was refused: the deep cuts remove synced writes and must be")
	}
}
