package roomlog

import (
	"testing"
	"time"
)

func appendOK(t *testing.T, l *Log, sender, cid, text string) (seq uint64, dup bool) {
	t.Helper()
	m, dup, err := l.Append(sender, cid, text)
	if err != nil {
		t.Fatalf("append %s/%s: %v", sender, cid, err)
	}
	return m.Seq, dup
}

func TestAppendSequencesAndDedupes(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	l := New("lobby", Config{HistorySize: 10, DedupeWindow: 2, Now: func() time.Time { return now }})
	a, dup, err := l.Append("ann", "c1", "hi")
	if err != nil || dup || a.Seq != 1 || a.TS != now.UnixMilli() || a.MID != l.Epoch()+"-1" {
		t.Fatalf("first append = %+v dup=%v err=%v", a, dup, err)
	}
	again, dup, _ := l.Append("ann", "c1", "hi (resent)")
	if !dup || again.Seq != 1 || again.MID != a.MID {
		t.Fatalf("resend = %+v dup=%v, want original seq 1", again, dup)
	}
	// Same cid from another sender is a different message.
	if seq, dup := appendOK(t, l, "bob", "c1", "yo"); dup || seq != 2 {
		t.Fatalf("other sender's c1 = %d dup=%v", seq, dup)
	}
	// The window holds two pairs: a third pushes ann/c1 out.
	if _, dup := appendOK(t, l, "bob", "c2", "x"); dup {
		t.Fatal("new cid reported as duplicate")
	}
	if seq, dup := appendOK(t, l, "ann", "c1", "hi"); dup || seq != 4 {
		t.Fatalf("evicted cid = %d dup=%v, want a new message seq 4", seq, dup)
	}
	if l.Head() != 4 || l.Durable() != 4 {
		t.Fatalf("head %d durable %d, want 4 and 4 (memory only)", l.Head(), l.Durable())
	}
}

func TestSinceChecksEpoch(t *testing.T) {
	l := New("r", Config{HistorySize: 3, DedupeWindow: 10})
	for i := 0; i < 5; i++ {
		appendOK(t, l, "u", string(rune('a'+i)), "t")
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
	if l.Oldest() != 3 {
		t.Fatalf("oldest %d, want 3 (the ring keeps 3)", l.Oldest())
	}
}
