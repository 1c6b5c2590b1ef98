package roomlog

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// follow brings dst up to src the way a sync does: Match, then truncate or
// reset, then the missing entries in chunks of chunk.
func follow(t *testing.T, dst, src *Log, chunk int) {
	t.Helper()
	keep, reset := dst.Match(src.Meta())
	if reset {
		m := src.Meta()
		m.Head = m.Oldest - 1
		if err := dst.Reset(m, nil); err != nil {
			t.Fatal(err)
		}
		keep = m.Head
	} else if err := dst.TruncateAfter(keep, nil); err != nil {
		t.Fatal(err)
	}
	if err := dst.SetTerm(src.Term(), nil); err != nil {
		t.Fatal(err)
	}
	for from := keep + 1; from <= src.Head(); from += uint64(chunk) {
		entries, err := src.Read(from, chunk)
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.AppendEntries(entries, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func texts(t *testing.T, l *Log) []string {
	t.Helper()
	entries, err := l.Read(l.Oldest(), int(l.Head()-l.Oldest()+1))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%d:%s@%d", e.Msg.Seq, e.Msg.Text, e.Term))
	}
	return out
}

func TestApplyFollowsAndRefuses(t *testing.T) {
	owner := New("r", Config{HistorySize: 3, DedupeWindow: 10})
	_ = owner.SetTerm(1, nil)
	replica := New("r", Config{HistorySize: 3, DedupeWindow: 10})
	follow(t, replica, owner, 10)
	for i, cid := range []string{"a", "b", "c", "d", "e"} {
		m, _, _ := owner.Append("ann", cid, "t"+cid)
		if err := replica.Apply(1, m, nil); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		if err := replica.Apply(1, m, nil); err != nil {
			t.Fatalf("re-apply %d must be a no-op: %v", i, err)
		}
	}
	m, _, _ := owner.Append("ann", "f", "tf")
	gap := m
	gap.Seq++
	if err := replica.Apply(1, gap, nil); !errors.Is(err, ErrGap) {
		t.Fatalf("apply with a gap = %v", err)
	}
	other := m
	other.Seq, other.Text = 5, "another message"
	if err := replica.Apply(1, other, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("a different message at a held seq = %v, want ErrConflict", err)
	}
	// Promoted, the replica answers a resend with the original sequence.
	if err := replica.Apply(1, m, nil); err != nil {
		t.Fatal(err)
	}
	if err := replica.Promote(); err != nil {
		t.Fatal(err)
	}
	if again, dup, _ := replica.Append("ann", "f", "tf"); !dup || again.Seq != 6 {
		t.Fatalf("resend after promotion = %+v dup=%v", again, dup)
	}
}

// TestMatchFindsTheDivergence: a copy that took messages of a term its
// owner never got to commit (the owner was replaced) is cut back to where
// the new owner's log departs from it, and only the rest is sent.
func TestMatchFindsTheDivergence(t *testing.T) {
	cfg := Config{HistorySize: 100, DedupeWindow: 10}
	a := New("r", cfg) // the term-1 owner
	_ = a.SetTerm(1, nil)
	for i := range 4 {
		a.Append("ann", fmt.Sprint("a", i), fmt.Sprint("one-", i+1))
	}
	b := New("r", cfg) // a replica of it
	follow(t, b, a, 2)
	a.Append("ann", "a4", "uncommitted 5") // a's, never replicated
	_ = a.SetTerm(3, nil)                  // a claimed again, wrote 6 in term 3, was fenced
	a.Append("ann", "a5", "stale 6")

	// b took over in term 2 and wrote 5, 6, 7; then term 4 wrote 8.
	_ = b.SetTerm(2, nil)
	_ = b.Promote()
	for i := range 3 {
		b.Append("bob", fmt.Sprint("b", i), fmt.Sprint("two-", i+5))
	}
	_ = b.SetTerm(4, nil)
	b.Append("bob", "b3", "four-8")

	if keep, reset := a.Match(b.Meta()); reset || keep != 4 {
		t.Fatalf("a.Match(b) = keep %d reset %v, want keep 4 (a's 5 and 6 were never b's)", keep, reset)
	}
	follow(t, a, b, 2)
	want := []string{"1:one-1@1", "2:one-2@1", "3:one-3@1", "4:one-4@1", "5:two-5@2", "6:two-6@2", "7:two-7@2", "8:four-8@4"}
	if got := texts(t, a); !slices.Equal(got, want) {
		t.Fatalf("a after following b = %v, want %v", got, want)
	}
	if keep, reset := a.Match(b.Meta()); reset || keep != 8 {
		t.Fatalf("a.Match(b) after following = %d %v, want 8", keep, reset)
	}
	// Another epoch cannot be bridged; neither can a gap older than the
	// source keeps.
	if _, reset := New("r", cfg).Match(b.Meta()); !reset {
		t.Fatal("a copy of another epoch matched")
	}
	small := New("r", Config{HistorySize: 2})
	follow(t, small, b, 8)
	late := New("r", cfg)
	_ = late.Reset(Meta{Epoch: b.Epoch(), Term: 2, Head: 3, Terms: []TermStart{{Term: 1, Seq: 1}}}, nil)
	if _, reset := late.Match(small.Meta()); !reset {
		t.Fatalf("a copy at 3 matched a source that keeps only %d..%d", small.Oldest(), small.Head())
	}
}
