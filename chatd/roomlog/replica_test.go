package roomlog

import (
	"errors"
	"testing"
)

func TestApplySnapshotRestore(t *testing.T) {
	owner := New("r", Config{HistorySize: 3, DedupeWindow: 10})
	replica := New("r", Config{HistorySize: 3, DedupeWindow: 10})
	for i, cid := range []string{"a", "b", "c", "d", "e"} {
		m, _ := owner.Append("ann", cid, "t")
		if err := replica.Apply(m); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		if err := replica.Apply(m); err != nil {
			t.Fatalf("re-apply %d must be a no-op: %v", i, err)
		}
	}
	m, _ := owner.Append("ann", "f", "t")
	m.Seq += 1
	if err := replica.Apply(m); !errors.Is(err, ErrGap) {
		t.Fatalf("apply with a gap = %v", err)
	}
	snap := owner.Snapshot()
	if snap.Head != 6 || len(snap.Messages) != 3 || snap.Messages[0].Seq != 4 {
		t.Fatalf("snapshot = %+v", snap)
	}
	back, err := Restore(snap, Config{HistorySize: 3, DedupeWindow: 10})
	if err != nil {
		t.Fatal(err)
	}
	if back.Epoch() != owner.Epoch() || back.Head() != 6 || back.Oldest() != 4 {
		t.Fatalf("restored epoch %s head %d oldest %d", back.Epoch(), back.Head(), back.Oldest())
	}
	// The restored log continues the sequence and remembers recent cids.
	if again, dup := back.Append("ann", "f", "t"); !dup || again.Seq != 6 {
		t.Fatalf("resend after restore = %+v dup=%v", again, dup)
	}
	if next, dup := back.Append("ann", "g", "t"); dup || next.Seq != 7 {
		t.Fatalf("next after restore = %+v", next)
	}
	empty, err := Restore(Snapshot{Room: "r", Epoch: "e", Head: 9}, Config{HistorySize: 3})
	if err != nil || empty.Head() != 9 {
		t.Fatalf("restore of an emptied log: %v head %d", err, empty.Head())
	}
}
