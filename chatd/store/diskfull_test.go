package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// smallFS mounts a tmpfs of size bytes for the test, or skips when this
// machine cannot mount one.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (needs root): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return filepath.Join(dir, "store")
}

// fill writes a file until the filesystem is full and returns its name.
func fill(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(filepath.Dir(dir), name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatalf("filling: %v", err)
			}
			return p
		}
	}
}

// tracker records what was reported durable.
type tracker struct {
	mu      sync.Mutex
	durable map[string]uint64
	failed  int
}

// appendOne appends a batch of fullBatch messages from seq on and records
// them as durable when done says so.
func (tr *tracker) appendOne(s *Store, room string, seq uint64) error {
	es := make([]Entry, fullBatch)
	for i := range es {
		es[i] = fullEntry(room, seq+uint64(i))
	}
	last := es[len(es)-1].Seq
	return s.Append(room, es, func(err error) {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if err != nil {
			tr.failed++
			return
		}
		tr.durable[room] = max(tr.durable[room], last)
	})
}

const fullBatch = 16

// fullEntry is crashEntry with a 1 KiB text that does not compress, to
// fill a disk quickly.
func fullEntry(room string, seq uint64) Entry {
	e := crashEntry(room, seq)
	rng := rand.New(rand.NewPCG(seq, uint64(len(room))))
	b := make([]byte, 1000)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	e.Text = string(b)
	return e
}

// waitFree waits until the filesystem has at least n bytes free: deleted
// tables go away shortly after the compaction that obsoleted them.
func waitFree(t *testing.T, dir string, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		free, err := freeBytes(dir)
		if err != nil {
			t.Fatal(err)
		}
		if free >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes free after 30s, want %d", free, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeUntilFull appends to a few rooms until a write is refused, and
// returns the refusal.
func writeUntilFull(t *testing.T, s *Store, tr *tracker, limit int) error {
	t.Helper()
	for i := range limit {
		room := crashRoom(i % 8)
		m, ok := s.Meta(room)
		if !ok {
			if err := s.Reset(room, RoomMeta{Epoch: "e", Term: 1}, nil); err != nil {
				return err
			}
		}
		if err := tr.appendOne(s, room, m.Head+1); err != nil {
			return err
		}
	}
	return nil
}

func syncPoint(t *testing.T, s *Store) {
	t.Helper()
	durable(t, s.Sync)
}

func TestDiskFull(t *testing.T) {
	dir := smallFS(t, "24m")
	opts := testOptions(dir)
	opts.ReserveBytes = 6 << 20
	opts.MemTableBytes = 2 << 20
	opts.CacheBytes = 1 << 20
	s := mustOpen(t, opts)
	tr := &tracker{durable: map[string]uint64{}}

	// 1. The store fills the disk itself: refused above the reserve.
	err := writeUntilFull(t, s, tr, 1_000_000)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "room-") || !strings.Contains(err.Error(), "bytes free") {
		t.Fatalf("writing until full: %v, want ErrFull naming the room and the free bytes", err)
	}
	t.Logf("refused: %v", err)
	free, _ := freeBytes(dir)
	if free <= 0 || s.space.engineFull.Load() {
		t.Fatalf("the filesystem itself filled up (%d free, engine met ENOSPC: %v): the reserve did not hold", free, s.space.engineFull.Load())
	}
	if _, err := os.Stat(filepath.Join(dir, ballastName)); err != nil {
		t.Fatalf("the ballast was used: %v", err)
	}
	syncPoint(t, s)
	checkReadable(t, s, tr)

	// 2. Space comes back (a room is deleted and compacted away): writes
	// are accepted again without a restart.
	for i := range 4 {
		durable(t, func(done func(error)) error { return s.Delete(crashRoom(i), done) })
		delete(tr.durable, crashRoom(i))
	}
	if err := s.db.Compact(t.Context(), msgLower, msgUpper, false); err != nil {
		t.Fatal(err)
	}
	waitFree(t, dir, opts.ReserveBytes+(1<<20))
	s.space.at = s.space.at.AddDate(-1, 0, 0) // no need to wait for the next look
	if err := tr.appendOne(s, crashRoom(5), mustMeta(t, s, crashRoom(5)).Head+1); err != nil {
		t.Fatalf("write after space came back: %v", err)
	}
	syncPoint(t, s)

	// 3. Another process fills the disk between two checks: Pebble meets
	// ENOSPC, gets the ballast's space, and the store turns full.
	filler := fill(t, dir, "filler")
	statFree = func(string) (int64, error) { return 1 << 40, nil } // the stale look
	err = writeUntilFull(t, s, tr, 20_000)
	statFree = freeBytes
	if !errors.Is(err, ErrFull) {
		t.Fatalf("writing onto a full disk: %v, want ErrFull", err)
	}
	t.Logf("refused: %v", err)
	if !s.space.engineFull.Load() {
		t.Fatal("Pebble never met the full disk: the test did not exercise the ballast")
	}
	if f := s.failure(); f != nil {
		t.Fatalf("the engine failed: %v", f)
	}
	syncPoint(t, s)
	checkReadable(t, s, tr)

	// 4. The filler goes: writes resume, the ballast is back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	s.space.at = s.space.at.AddDate(-1, 0, 0)
	if err := tr.appendOne(s, crashRoom(6), mustMeta(t, s, crashRoom(6)).Head+1); err != nil {
		t.Fatalf("write after the filler went: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ballastName)); err != nil {
		t.Fatalf("ballast not re-made: %v", err)
	}
	syncPoint(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkReopened(t, opts, tr)
}

func mustMeta(t *testing.T, s *Store, room string) RoomMeta {
	t.Helper()
	m, ok := s.Meta(room)
	if !ok {
		t.Fatalf("no room %s", room)
	}
	return m
}

func checkReadable(t *testing.T, s *Store, tr *tracker) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for room, head := range tr.durable {
		p, err := s.Last(room, 1)
		if err != nil || len(p.Entries) != 1 || p.Entries[0].Seq < head {
			t.Fatalf("read %s while full: %v %v (durable through %d)", room, err, p.Entries, head)
		}
	}
}

func checkReopened(t *testing.T, opts Options, tr *tracker) {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for room, head := range tr.durable {
		m, ok := s.Meta(room)
		if !ok || m.Head < head {
			t.Fatalf("room %s: head %d after reopen, %d was durable", room, m.Head, head)
		}
		p, err := s.Read(room, m.Oldest, int(m.Count()))
		if err != nil || uint64(len(p.Entries)) != m.Count() {
			t.Fatalf("room %s: %v, %d of %d", room, err, len(p.Entries), m.Count())
		}
		for _, e := range p.Entries {
			if e != fullEntry(room, e.Seq) {
				t.Fatalf("room %s: %+v", room, e)
			}
		}
	}
	t.Logf("after reopen: %d rooms intact (%s)", len(tr.durable), fmt.Sprint(s.Stats().Messages, " messages"))
}
