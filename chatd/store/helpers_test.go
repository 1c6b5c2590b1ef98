package store

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

// testLogger discards logs unless STORE_TEST_LOG is set.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func testOptions(dir string) Options {
	return Options{Dir: dir, Logger: testLogger(), ReserveBytes: -1}
}

func mustOpen(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", opts.Dir, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waiter collects done results.
type waiter chan error

func newWaiter() waiter { return make(waiter, 1) }

func (w waiter) done(err error) { w <- err }

// waitDone waits for a done callback; the window is generous because a
// loaded machine can take long over an fsync, and a hang is the failure.
func (w waiter) wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-w:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("done callback not called within 30s")
		return nil
	}
}

// durable runs a write and waits for its done callback.
func durable(t testing.TB, write func(done func(error)) error) {
	t.Helper()
	w := newWaiter()
	if err := write(w.done); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := w.wait(t); err != nil {
		t.Fatalf("done: %v", err)
	}
}

// entries makes n entries from seq first in term.
func entries(first uint64, n int, term uint64) []Entry {
	es := make([]Entry, n)
	for i := range es {
		seq := first + uint64(i)
		es[i] = Entry{
			Seq: seq, Term: term, From: fmt.Sprintf("user%d", seq%7), CID: fmt.Sprintf("c%d", seq),
			Text: fmt.Sprintf("message %d %s", seq, strings.Repeat("x", int(seq%13))), TS: 1_700_000_000_000 + int64(seq),
		}
	}
	return es
}

func newRoom(t testing.TB, s *Store, room string) {
	t.Helper()
	durable(t, func(done func(error)) error {
		return s.Reset(room, RoomMeta{Epoch: "e-" + room, Term: 1, Promised: 1}, done)
	})
}

func appendN(t testing.TB, s *Store, room string, first uint64, n int, term uint64) {
	t.Helper()
	durable(t, func(done func(error)) error { return s.Append(room, entries(first, n, term), done) })
}

func seqs(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// checkRange asserts that p holds exactly seqs lo..hi and that they carry
// what entries() put there.
func checkRange(t testing.TB, p Page, lo, hi uint64, term uint64) {
	t.Helper()
	if hi < lo {
		if len(p.Entries) != 0 {
			t.Fatalf("got %v, want none", seqs(p.Entries))
		}
		return
	}
	if uint64(len(p.Entries)) != hi-lo+1 {
		t.Fatalf("got %d entries %v, want %d..%d", len(p.Entries), seqs(p.Entries), lo, hi)
	}
	for i, e := range p.Entries {
		want := entries(lo+uint64(i), 1, term)[0]
		if e != want {
			t.Fatalf("entry %d = %+v, want %+v", i, e, want)
		}
	}
}

func isErr(err error, target error) bool { return errors.Is(err, target) }

func removeFile(name string) error { return os.Remove(name) }
