package roomlog

import (
	"testing"
	"time"
)

func TestAppendSequencesAndDedupes(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	l := New("lobby", Config{HistorySize: 10, DedupeWindow: 2, Now: func() time.Time { return now }})
	a, dup := l.Append("ann", "c1", "hi")
	if dup || a.Seq != 1 || a.TS != now.UnixMilli() || a.MID != l.Epoch()+"-1" {
		t.Fatalf("first append = %+v dup=%v", a, dup)
	}
	again, dup := l.Append("ann", "c1", "hi (resent)")
	if !dup || again.Seq != 1 || again.MID != a.MID {
		t.Fatalf("resend = %+v dup=%v, want original seq 1", again, dup)
	}
	// Same cid from another sender is a different message.
	b, dup := l.Append("bob", "c1", "yo")
	if dup || b.Seq != 2 {
		t.Fatalf("other sender's c1 = %+v dup=%v", b, dup)
	}
	// The window holds two pairs: a third pushes ann/c1 out.
	if _, dup := l.Append("bob", "c2", "x"); dup {
		t.Fatal("new cid reported as duplicate")
	}
	if m, dup := l.Append("ann", "c1", "hi"); dup || m.Seq != 4 {
		t.Fatalf("evicted cid = %+v dup=%v, want a new message seq 4", m, dup)
	}
	if l.Head() != 4 {
		t.Fatalf("head = %d", l.Head())
	}
}

func TestSinceChecksEpoch(t *testing.T) {
	l := New("r", Config{HistorySize: 3, DedupeWindow: 10})
	for i := 0; i < 5; i++ {
		l.Append("u", string(rune('a'+i)), "t")
	}
	if ms, ok := l.Since(l.Epoch(), 2); !ok || len(ms) != 3 || ms[0].Seq != 3 {
		t.Fatalf("Since(2) = %v %v", ms, ok)
	}
	if _, ok := l.Since(l.Epoch(), 1); ok {
		t.Fatal("Since(1) claims seq 2 is kept")
	}
	if _, ok := l.Since("other", 4); ok {
		t.Fatal("a foreign epoch was accepted")
	}
	if other := New("r", Config{}); other.Epoch() == l.Epoch() {
		t.Fatal("two incarnations share an epoch")
	}
}
