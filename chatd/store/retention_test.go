package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock for retention by age.
type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func TestRetentionByCount(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir)
	opts.MaxMessages = 30
	opts.RetentionInterval = time.Hour // passes are run by hand
	s := mustOpen(t, opts)
	newRoom(t, s, "r")
	appendN(t, s, "r", 1, 100, 1)
	rs := s.RunRetention(t.Context())
	if rs.Err != nil || rs.Removed != 70 || rs.Rooms != 1 {
		t.Fatalf("pass: %+v", rs)
	}
	m, _ := s.Meta("r")
	if m.Oldest != 71 || m.Head != 100 {
		t.Fatalf("meta after retention %+v", m)
	}
	p, err := s.Read("r", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !p.TooOld || p.Entries[0].Seq != 71 {
		t.Fatalf("read below oldest: tooOld %v first %d", p.TooOld, p.Entries[0].Seq)
	}
	p, _ = s.ReadBefore("r", 75, 10)
	if !p.TooOld || len(p.Entries) != 4 || p.Entries[0].Seq != 71 {
		t.Fatalf("page before 75: tooOld %v %v", p.TooOld, seqs(p.Entries))
	}
	p, _ = s.ReadBefore("r", 100, 10)
	if p.TooOld || len(p.Entries) != 10 {
		t.Fatalf("page before 100: tooOld %v %v", p.TooOld, seqs(p.Entries))
	}
	_ = s.Close()
	s2 := mustOpen(t, opts)
	if m, _ := s2.Meta("r"); m.Oldest != 71 {
		t.Fatalf("oldest after reopen: %+v", m)
	}
}

func TestRetentionByAgeWithSkew(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(1_000_000)
	opts := testOptions(t.TempDir())
	opts.MaxAge = time.Minute
	opts.RetentionInterval = time.Hour
	opts.Now = clock.now
	s := mustOpen(t, opts)
	newRoom(t, s, "r")
	// Timestamps (seconds): 1..10 at t=100s, 11 from a node whose clock is
	// ahead (t=300s), 12..20 at t=200s (clock back).
	var es []Entry
	for seq := uint64(1); seq <= 20; seq++ {
		ts := int64(100_000)
		switch {
		case seq == 11:
			ts = 300_000
		case seq > 11:
			ts = 200_000
		}
		es = append(es, Entry{Seq: seq, Term: 1, Text: "x", TS: ts})
	}
	durable(t, func(done func(error)) error { return s.Append("r", es, done) })

	pass := func(nowSec int64) RoomMeta {
		clock.ms.Store(nowSec * 1000)
		if rs := s.RunRetention(t.Context()); rs.Err != nil {
			t.Fatal(rs.Err)
		}
		m, _ := s.Meta("r")
		return m
	}
	if m := pass(150); m.Oldest != 1 {
		t.Fatalf("at 150s nothing is a minute old, oldest %d", m.Oldest)
	}
	if m := pass(170); m.Oldest != 11 {
		t.Fatalf("at 170s 1..10 are old, 11 is not: oldest %d", m.Oldest)
	}
	// 12..20 are old at 270s, but 11 (ahead) is not: they wait behind it.
	if m := pass(270); m.Oldest != 11 {
		t.Fatalf("at 270s 11 is young, oldest %d", m.Oldest)
	}
	if m := pass(361); m.Oldest != 21 || m.Count() != 0 {
		t.Fatalf("at 361s everything is old: %+v", m)
	}
	// An emptied room keeps its head: the next message is 21.
	appendN(t, s, "r", 21, 1, 1)
}

// TestRetentionFreesDisk measures that disk usage falls once retention
// removed most messages and the pass compacted the range.
func TestRetentionFreesDisk(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.MaxMessages = 100
	opts.RetentionInterval = time.Hour
	opts.MemTableBytes = 1 << 20
	s := mustOpen(t, opts)
	const rooms, per = 50, 1000
	for r := range rooms {
		room := fmt.Sprint("room-", r)
		newRoom(t, s, room)
		for i := 0; i < per; i += 100 {
			es := make([]Entry, 100)
			for j := range es {
				es[j] = Entry{Seq: uint64(i + j + 1), Term: 1, From: "u", Text: fmt.Sprintf("%0100d", i+j), TS: 1}
			}
			durable(t, func(done func(error)) error { return s.Append(room, es, done) })
		}
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Compact(t.Context(), msgLower, msgUpper, false); err != nil {
		t.Fatal(err)
	}
	tables := func() (live, wal uint64) {
		m := s.db.Metrics()
		return m.Table.Local.LiveSize, m.WAL.PhysicalSize + m.WAL.ObsoletePhysicalSize
	}
	before := s.Stats().DiskBytes
	tb, wb := tables()
	rs := s.RunRetention(t.Context())
	if rs.Err != nil || rs.Removed != rooms*(per-100) || !rs.Compacted {
		t.Fatalf("pass: %+v", rs)
	}
	after := s.Stats().DiskBytes
	ta, wa := tables()
	t.Logf("disk usage %d bytes before retention, %d after (removed %d of %d messages); tables %d → %d, WAL %d → %d", before, after, rs.Removed, rooms*per, tb, ta, wb, wa)
	// The tables are what retention frees; the WAL files (recycled, at
	// most a few memtables) do not grow with the data.
	if ta > tb/5 {
		t.Fatalf("table bytes %d → %d: did not fall to a fifth after removing 90%% of the messages", tb, ta)
	}
}

// TestConcurrentWritersAndRetention runs writers on many rooms, readers
// and the background retention pass at once (run it with -race).
func TestConcurrentWritersAndRetention(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.MaxMessages = 50
	opts.RetentionInterval = 5 * time.Millisecond
	opts.MemTableBytes = 256 << 10
	s := mustOpen(t, opts)
	const writers, roomsPer, rounds = 8, 4, 60
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg, readers sync.WaitGroup
	errs := make(chan error, 100)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			heads := make([]uint64, roomsPer)
			for i := range roomsPer {
				if err := s.Reset(fmt.Sprintf("w%d-r%d", w, i), RoomMeta{Epoch: "e", Term: 1}, nil); err != nil {
					errs <- err
					return
				}
			}
			for n := range rounds {
				i := n % roomsPer
				room := fmt.Sprintf("w%d-r%d", w, i)
				es := entries(heads[i]+1, 5, 1)
				done := newWaiter()
				if err := s.Append(room, es, done.done); err != nil {
					errs <- err
					return
				}
				heads[i] += 5
				if n%10 == 9 {
					if err := done.wait(t); err != nil {
						errs <- err
						return
					}
				}
				if n == rounds/2 && i == 0 {
					// A reshape while retention runs.
					if err := s.TruncateAfter(room, heads[i]-2, nil); err != nil {
						errs <- err
						return
					}
					heads[i] -= 2
				}
			}
		}()
	}
	// Readers check every page they get is gapless and within bounds.
	for r := range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for n := 0; ctx.Err() == nil; n++ {
				room := fmt.Sprintf("w%d-r%d", (n+r)%writers, n%roomsPer)
				p, err := s.Last(room, 20)
				if err != nil {
					if isErr(err, ErrNoRoom) {
						continue
					}
					errs <- err
					return
				}
				for i, e := range p.Entries {
					if e.Seq < p.Oldest || e.Seq > p.Head || (i > 0 && e.Seq != p.Entries[i-1].Seq+1) {
						errs <- fmt.Errorf("room %s: bad page %v (bounds %d..%d)", room, seqs(p.Entries), p.Oldest, p.Head)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	durable(t, s.Sync)
	if rs := s.RunRetention(t.Context()); rs.Err != nil {
		t.Fatal(rs.Err)
	}
	for room, m := range s.Rooms() {
		if m.Count() > opts.MaxMessages {
			t.Errorf("room %s keeps %d messages, max %d", room, m.Count(), opts.MaxMessages)
		}
		p, err := s.Read(room, m.Oldest, 1000)
		if err != nil || uint64(len(p.Entries)) != m.Count() {
			t.Fatalf("room %s: %v, %d entries for %+v", room, err, len(p.Entries), m)
		}
	}
}
