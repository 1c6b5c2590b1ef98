package store

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func TestAppendAndReadAcrossFlush(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(dir))
	newRoom(t, s, "lobby")
	appendN(t, s, "lobby", 1, 100, 1)
	// Flush: messages 1..100 go to a table, 101..150 stay in the memtable.
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "lobby", 101, 50, 1)

	tests := []struct {
		name   string
		read   func() (Page, error)
		lo, hi uint64
	}{
		{"read from start", func() (Page, error) { return s.Read("lobby", 1, 10) }, 1, 10},
		{"read across the boundary", func() (Page, error) { return s.Read("lobby", 95, 10) }, 95, 104},
		{"read to the end", func() (Page, error) { return s.Read("lobby", 140, 50) }, 140, 150},
		{"read past the end", func() (Page, error) { return s.Read("lobby", 151, 50) }, 1, 0},
		{"read from 0", func() (Page, error) { return s.Read("lobby", 0, 3) }, 1, 3},
		{"before across the boundary", func() (Page, error) { return s.ReadBefore("lobby", 105, 10) }, 95, 104},
		{"before near the start", func() (Page, error) { return s.ReadBefore("lobby", 4, 10) }, 1, 3},
		{"before above head", func() (Page, error) { return s.ReadBefore("lobby", 1000, 5) }, 146, 150},
		{"before 1", func() (Page, error) { return s.ReadBefore("lobby", 1, 5) }, 1, 0},
		{"last", func() (Page, error) { return s.Last("lobby", 60) }, 91, 150},
		{"last more than stored", func() (Page, error) { return s.Last("lobby", 500) }, 1, 150},
		{"limit 0", func() (Page, error) { return s.Read("lobby", 1, 0) }, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.read()
			if err != nil {
				t.Fatal(err)
			}
			checkRange(t, p, tc.lo, tc.hi, 1)
			if p.Oldest != 1 || p.Head != 150 || p.TooOld {
				t.Fatalf("page bounds %d..%d tooOld %v", p.Oldest, p.Head, p.TooOld)
			}
		})
	}
}

func TestRoomNamesDoNotMix(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	// "a" and "a\x00..." and "ab" share prefixes; their logs must stay apart.
	rooms := []string{"a", "ab", "a\x00", "b", "ä", string(make([]byte, MaxRoomLen))}
	for i, r := range rooms {
		newRoom(t, s, r)
		appendN(t, s, r, 1, i+1, 1)
	}
	for i, r := range rooms {
		p, err := s.Read(r, 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		checkRange(t, p, 1, uint64(i+1), 1)
	}
	for _, bad := range []string{"", string(make([]byte, MaxRoomLen+1)), "\xff"} {
		if err := s.Reset(bad, RoomMeta{}, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("Reset(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestAppendRules(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	newRoom(t, s, "r")
	appendN(t, s, "r", 1, 3, 2)
	tests := []struct {
		name string
		es   []Entry
		want error
	}{
		{"gap", entries(5, 1, 2), ErrInvalid},
		{"overlap", entries(3, 1, 2), ErrInvalid},
		{"empty", nil, ErrInvalid},
		{"term backwards", entries(4, 1, 1), ErrInvalid},
		{"gap inside", append(entries(4, 1, 2), entries(6, 1, 2)...), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Append("r", tc.es, nil); !errors.Is(err, tc.want) {
				t.Fatalf("Append = %v, want %v", err, tc.want)
			}
			if m, _ := s.Meta("r"); m.Head != 3 {
				t.Fatalf("head moved to %d", m.Head)
			}
		})
	}
	if err := s.Append("nowhere", entries(1, 1, 1), nil); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("Append to unknown room = %v", err)
	}
}

func TestTermsAndPromise(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(dir))
	newRoom(t, s, "r")
	appendN(t, s, "r", 1, 3, 1)
	appendN(t, s, "r", 4, 2, 3)
	appendN(t, s, "r", 6, 1, 3)
	es := append(entries(7, 1, 4), entries(8, 1, 6)...)
	durable(t, func(done func(error)) error { return s.Append("r", es, done) })
	m, _ := s.Meta("r")
	wantTerms := []TermStart{{1, 1}, {3, 4}, {4, 7}, {6, 8}}
	if !slices.Equal(m.Terms, wantTerms) || m.Term != 6 || m.Head != 8 {
		t.Fatalf("meta %+v, want terms %v term 6 head 8", m, wantTerms)
	}

	durable(t, func(done func(error)) error { return s.Promise("r", 7, done) })
	if err := s.Promise("r", 5, nil); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("Promise(5) after 7 = %v", err)
	}
	durable(t, func(done func(error)) error { return s.Promise("r", 7, done) }) // same: fine
	durable(t, func(done func(error)) error { return s.SetTerm("r", 7, done) })
	if err := s.SetTerm("r", 6, nil); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("SetTerm(6) after 7 = %v", err)
	}
	// A promise for a room not held creates it, empty.
	durable(t, func(done func(error)) error { return s.Promise("fresh", 9, done) })
	// Reset keeps the higher promise.
	durable(t, func(done func(error)) error {
		return s.Reset("r", RoomMeta{Epoch: "e2", Term: 2, Promised: 2, Head: 10}, done)
	})
	m, _ = s.Meta("r")
	if m.Promised != 7 || m.Head != 10 || m.Oldest != 11 || m.Epoch != "e2" {
		t.Fatalf("after reset: %+v", m)
	}

	// Truncation drops term starts after the cut.
	appendN(t, s, "r", 11, 2, 7)
	appendN(t, s, "r", 13, 2, 8)
	durable(t, func(done func(error)) error { return s.TruncateAfter("r", 12, done) })
	m, _ = s.Meta("r")
	if !slices.Equal(m.Terms, []TermStart{{7, 11}}) || m.Head != 12 || m.Term != 8 {
		t.Fatalf("after truncate: %+v", m)
	}
	want := m
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, testOptions(dir))
	got, ok := s2.Meta("r")
	if !ok || got.Epoch != want.Epoch || got.Term != want.Term || got.Promised != want.Promised || got.Head != want.Head || got.Oldest != want.Oldest || !slices.Equal(got.Terms, want.Terms) {
		t.Fatalf("after reopen %+v, want %+v", got, want)
	}
	if m, ok := s2.Meta("fresh"); !ok || m.Promised != 9 || m.Head != 0 || m.Oldest != 1 {
		t.Fatalf("fresh after reopen: %+v %v", m, ok)
	}
	p, err := s2.Read("r", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seqs(p.Entries), []uint64{11, 12}) || !p.TooOld {
		t.Fatalf("read after reopen: %v tooOld %v", seqs(p.Entries), p.TooOld)
	}
}

func TestTermHistoryBounded(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	newRoom(t, s, "r")
	for i := 1; i <= MaxTermHistory+10; i++ {
		appendN(t, s, "r", uint64(i), 1, uint64(i))
	}
	m, _ := s.Meta("r")
	if len(m.Terms) != MaxTermHistory || m.Terms[0] != (TermStart{11, 11}) || m.Terms[MaxTermHistory-1] != (TermStart{74, 74}) {
		t.Fatalf("terms %v", m.Terms)
	}
}

func TestResetTruncateDelete(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(dir))
	newRoom(t, s, "r")
	appendN(t, s, "r", 1, 20, 1)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	durable(t, func(done func(error)) error { return s.TruncateAfter("r", 15, done) })
	p, _ := s.Read("r", 1, 100)
	checkRange(t, p, 1, 15, 1)
	if err := s.TruncateAfter("r", 0, nil); err != nil { // everything: allowed
		t.Fatal(err)
	}
	p, _ = s.Read("r", 1, 100)
	checkRange(t, p, 1, 0, 1)
	appendN(t, s, "r", 1, 5, 1)

	// Reset drops the messages: a new log from 100.
	durable(t, func(done func(error)) error { return s.Reset("r", RoomMeta{Epoch: "x", Term: 1, Head: 99}, done) })
	appendN(t, s, "r", 100, 3, 1)
	p, _ = s.Read("r", 1, 100)
	checkRange(t, p, 100, 102, 1)
	if err := s.Reset("r", RoomMeta{Head: 5, Oldest: 3}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reset to a non-empty log = %v", err)
	}
	if err := s.TruncateAfter("r", 50, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("truncate below oldest = %v", err)
	}

	durable(t, func(done func(error)) error { return s.Delete("r", done) })
	if _, ok := s.Meta("r"); ok {
		t.Fatal("deleted room still has metadata")
	}
	if _, err := s.Read("r", 1, 10); !errors.Is(err, ErrNoRoom) {
		t.Fatalf("read deleted room: %v", err)
	}
	// Re-created, it has none of the old messages.
	newRoom(t, s, "r")
	appendN(t, s, "r", 1, 2, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, testOptions(dir))
	p, err := s2.Read("r", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkRange(t, p, 1, 2, 1)
	if st := s2.Stats(); st.Rooms != 1 || st.Messages != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDoneOrderAndAsync(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	const rooms, per = 8, 50
	for r := range rooms {
		newRoom(t, s, fmt.Sprint("r", r))
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	inCall := false
	for i := range rooms * per {
		room := fmt.Sprint("r", i%rooms)
		seq := uint64(i/rooms + 1)
		wg.Add(1)
		mu.Lock()
		inCall = true
		err := s.Append(room, entries(seq, 1, 1), func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if inCall {
				t.Error("done called inside the write call")
			}
			if err != nil {
				t.Error(err)
			}
			order = append(order, i)
			wg.Done()
		})
		inCall = false
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if !slices.IsSorted(order) || len(order) != rooms*per {
		t.Fatalf("done order not write order: %v", order)
	}
	if st := s.Stats(); st.Syncs >= uint64(rooms*per) {
		t.Logf("no grouping at all: %d syncs for %d writes", st.Syncs, rooms*per)
	}
}

func TestOpenRefusals(t *testing.T) {
	t.Run("another format", func(t *testing.T) {
		dir := t.TempDir()
		s := mustOpen(t, testOptions(dir))
		_ = s.Close()
		if err := writeFileSync(dir+"/"+formatFileName, []byte("ringchat chatd store, format 2\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(testOptions(dir)); !errors.Is(err, ErrFormat) {
			t.Fatalf("Open = %v, want ErrFormat", err)
		}
	})
	t.Run("not a store", func(t *testing.T) {
		dir := t.TempDir()
		if err := writeFileSync(dir+"/notes.txt", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(testOptions(dir)); !errors.Is(err, ErrFormat) {
			t.Fatalf("Open = %v, want ErrFormat", err)
		}
	})
	t.Run("locked", func(t *testing.T) {
		dir := t.TempDir()
		mustOpen(t, testOptions(dir))
		_, err := Open(testOptions(dir))
		if !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open = %v, want ErrLocked", err)
		}
	})
	t.Run("watermark missing", func(t *testing.T) {
		dir := t.TempDir()
		s := mustOpen(t, testOptions(dir))
		newRoom(t, s, "r")
		_ = s.Close()
		if err := removeFile(dir + "/" + syncedFileName); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(testOptions(dir)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open = %v, want ErrCorrupt", err)
		}
	})
}

func TestClosedStore(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	newRoom(t, s, "r")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append("r", entries(1, 1, 1), nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if _, err := s.Read("r", 1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestDoneAfterSync checks that a write is reported durable only once the
// WAL sync and the SYNCED watermark cover it. (A kill -9 cannot show a
// missing fsync: the kernel keeps what a killed process wrote.)
func TestDoneAfterSync(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	const rooms, per = 4, 200
	for r := range rooms {
		newRoom(t, s, fmt.Sprint("r", r))
	}
	var wg sync.WaitGroup
	for i := range rooms * per {
		room := fmt.Sprint("r", i%rooms)
		wg.Add(1)
		var num atomic.Uint64
		err := s.Append(room, entries(uint64(i/rooms+1), 1, 1), func(err error) {
			defer wg.Done()
			if synced := s.durableNum.Load(); err != nil || synced < num.Load() {
				t.Errorf("write %d reported durable (err %v) with the watermark at %d", num.Load(), err, synced)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		s.mu.RLock()
		num.Store(s.writeNum) // this write's number: appends here are sequential
		s.mu.RUnlock()
	}
	wg.Wait()
}
