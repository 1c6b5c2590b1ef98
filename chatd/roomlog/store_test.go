package roomlog

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/store"
)

// openStore opens a real store in a temporary directory (closed by the
// test's cleanup unless the test closes it).
func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(store.Options{Dir: dir, ReserveBytes: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// durableWatch collects OnDurable reports.
type durableWatch struct {
	mu   sync.Mutex
	upTo uint64
	err  error
	ch   chan struct{}
}

func (d *durableWatch) on(upTo uint64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.upTo = max(d.upTo, upTo)
	if err != nil {
		d.err = err
	}
	select {
	case d.ch <- struct{}{}:
	default:
	}
}

func (d *durableWatch) wait(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		d.mu.Lock()
		upTo, err := d.upTo, d.err
		d.mu.Unlock()
		if err != nil {
			t.Fatalf("durability failed: %v", err)
		}
		if upTo >= seq {
			return
		}
		select {
		case <-d.ch:
		case <-deadline:
			t.Fatalf("seq %d not durable in time (up to %d)", seq, upTo)
		}
	}
}

// TestStoredLogPagesAcrossTheMemoryBoundary: with a backing, the ring is a
// cache of the newest messages and older pages come from the store; paging
// back from the head returns every message exactly once, gapless, across
// the boundary; a reopened store gives back the same log (epoch, head, the
// dedupe window after Promote).
func TestStoredLogPagesAcrossTheMemoryBoundary(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	var dw durableWatch
	dw.ch = make(chan struct{}, 1)
	cfg := Config{HistorySize: 10, DedupeWindow: 20, Backing: st, OnDurable: dw.on}
	l := New("paged", cfg)
	if err := l.SetTerm(1, nil); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for i := 1; i <= n; i++ {
		if _, _, err := l.Append("ann", fmt.Sprint("c", i), fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	dw.wait(t, n)
	for _, limit := range []int{7, 10, 50} {
		next, got := uint64(0), uint64(n)
		for {
			msgs, more, err := l.Before(next, limit)
			if err != nil {
				t.Fatal(err)
			}
			for i := len(msgs) - 1; i >= 0; i-- {
				if msgs[i].Seq != got || msgs[i].Text != fmt.Sprint("m", got) {
					t.Fatalf("limit %d: got seq %d %q, want %d", limit, msgs[i].Seq, msgs[i].Text, got)
				}
				got--
			}
			if !more {
				break
			}
			next = msgs[0].Seq
		}
		if got != 0 {
			t.Fatalf("limit %d: paging stopped at %d, want every message down to 1", limit, got+1)
		}
	}
	epoch := l.Epoch()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	cfg.Backing = st
	back, ok, err := Load("paged", cfg)
	if err != nil || !ok {
		t.Fatalf("load = %v %v", ok, err)
	}
	if back.Epoch() != epoch || back.Head() != n || back.Term() != 1 || back.Oldest() != 1 {
		t.Fatalf("reloaded epoch %s head %d term %d oldest %d, want %s %d 1 1", back.Epoch(), back.Head(), back.Term(), back.Oldest(), epoch, n)
	}
	if err := back.Promote(); err != nil {
		t.Fatal(err)
	}
	if m, dup, _ := back.Append("ann", fmt.Sprint("c", n-5), "resent"); !dup || m.Seq != n-5 {
		t.Fatalf("resend after reload = seq %d dup %v, want the original %d", m.Seq, dup, n-5)
	}
	if _, ok, _ := Load("absent", cfg); ok {
		t.Fatal("loaded a room the store does not hold")
	}
}

// TestStoredReplicaFollows: a stored replica follows an owner through a
// divergence (truncate), chunks (done once durable) and survives reopening.
func TestStoredReplicaFollows(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	owner := New("r", Config{HistorySize: 100, DedupeWindow: 10})
	_ = owner.SetTerm(2, nil)
	for i := range 30 {
		owner.Append("ann", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	// The owner's term starts reach beyond where a replica that starts over
	// begins (a later term began at seq 10): the replica keeps only those
	// up to its head+1, and gets the rest with the messages.
	_ = owner.SetTerm(3, nil)
	for i := 30; i < 35; i++ {
		owner.Append("ann", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	rep := New("r", Config{HistorySize: 4, Backing: st})
	keep, reset := rep.Match(owner.Meta())
	if !reset {
		t.Fatalf("an empty copy of another epoch matched at %d", keep)
	}
	m := owner.Meta()
	m.Head = m.Oldest - 1
	if err := rep.Reset(m, nil); err != nil {
		t.Fatal(err)
	}
	if err := rep.SetTerm(owner.Term(), nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 16)
	for from := uint64(1); from <= owner.Head(); from += 8 {
		entries, err := owner.Read(from, 8)
		if err != nil {
			t.Fatal(err)
		}
		if err := rep.AppendEntries(entries, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	back, ok, err := Load("r", Config{HistorySize: 4, Backing: st})
	if err != nil || !ok || back.Head() != 35 || back.Epoch() != owner.Epoch() {
		t.Fatalf("reloaded replica: %v %v head %d", ok, err, back.Head())
	}
	if keep, reset := back.Match(owner.Meta()); reset || keep != 35 {
		t.Fatalf("reloaded replica matches at %d reset %v, want 35", keep, reset)
	}
	if got := texts(t, back); len(got) != 35 || got[0] != "1:m0@2" || got[29] != "30:m29@2" || got[34] != "35:m34@3" {
		t.Fatalf("reloaded replica holds %v", got)
	}
}
