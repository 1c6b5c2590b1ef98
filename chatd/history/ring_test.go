package history

import (
	"testing"

	"github.com/ringchat/ringchat/chatd/protocol"
)

func fill(t *testing.T, r *Ring, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := r.Append(protocol.Message{Seq: r.Head() + 1}); err != nil {
			t.Fatal(err)
		}
	}
}

func seqs(ms []protocol.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func equal(a []uint64, b ...uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAppendRefusesGaps(t *testing.T) {
	r := NewRing(4)
	if err := r.Append(protocol.Message{Seq: 2}); err == nil {
		t.Fatal("append of seq 2 into an empty ring succeeded")
	}
	fill(t, r, 1)
	if err := r.Append(protocol.Message{Seq: 1}); err == nil {
		t.Fatal("duplicate seq accepted")
	}
}

func TestSinceAndWrap(t *testing.T) {
	r := NewRing(4)
	if ms, ok := r.Since(0); !ok || len(ms) != 0 {
		t.Fatalf("empty ring Since(0) = %v, %v", ms, ok)
	}
	fill(t, r, 10) // keeps 7..10
	if r.Oldest() != 7 || r.Head() != 10 || r.Len() != 4 {
		t.Fatalf("oldest %d head %d len %d", r.Oldest(), r.Head(), r.Len())
	}
	if ms, ok := r.Since(6); !ok || !equal(seqs(ms), 7, 8, 9, 10) {
		t.Fatalf("Since(6) = %v %v", seqs(ms), ok)
	}
	if ms, ok := r.Since(8); !ok || !equal(seqs(ms), 9, 10) {
		t.Fatalf("Since(8) = %v %v", seqs(ms), ok)
	}
	if _, ok := r.Since(5); ok {
		t.Fatal("Since(5) claims 6 is still kept")
	}
	if ms, ok := r.Since(10); !ok || len(ms) != 0 {
		t.Fatalf("Since(head) = %v %v", seqs(ms), ok)
	}
	if ms, ok := r.Since(99); !ok || len(ms) != 0 {
		t.Fatalf("Since(future) = %v %v", seqs(ms), ok)
	}
}

func TestBefore(t *testing.T) {
	r := NewRing(5)
	fill(t, r, 12) // keeps 8..12
	cases := []struct {
		before uint64
		limit  int
		want   []uint64
		more   bool
	}{
		{0, 2, []uint64{11, 12}, true},
		{0, 10, []uint64{8, 9, 10, 11, 12}, false},
		{11, 2, []uint64{9, 10}, true},
		{10, 2, []uint64{8, 9}, false},
		{8, 5, nil, false},
		{3, 5, nil, false},
		{50, 1, []uint64{12}, true},
		{0, 0, nil, false},
	}
	for _, c := range cases {
		ms, more := r.Before(c.before, c.limit)
		if !equal(seqs(ms), c.want...) || more != c.more {
			t.Errorf("Before(%d,%d) = %v more=%v, want %v more=%v", c.before, c.limit, seqs(ms), more, c.want, c.more)
		}
	}
}

func TestGrowsOnDemand(t *testing.T) {
	r := NewRing(1000)
	fill(t, r, 3)
	if cap(r.buf) > 16 {
		t.Fatalf("ring of 3 messages reserved %d slots", cap(r.buf))
	}
}

func BenchmarkAppend(b *testing.B) {
	r := NewRing(1000)
	m := protocol.Message{Text: "hello"}
	for i := 0; i < b.N; i++ {
		m.Seq = r.Head() + 1
		_ = r.Append(m)
	}
}

func TestRestart(t *testing.T) {
	r := NewRing(3)
	fill(t, r, 5)
	r.Restart(41)
	if r.Len() != 0 || r.Head() != 41 || r.Oldest() != 42 {
		t.Fatalf("after restart: len %d head %d oldest %d", r.Len(), r.Head(), r.Oldest())
	}
	if err := r.Append(protocol.Message{Seq: 42}); err != nil {
		t.Fatal(err)
	}
	fill(t, r, 3)
	if got := seqs(r.All()); !equal(got, 43, 44, 45) {
		t.Fatalf("All = %v", got)
	}
}

func TestDropBefore(t *testing.T) {
	r := NewRing(4)
	for seq := uint64(1); seq <= 6; seq++ {
		if err := r.Append(protocol.Message{Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	r.DropBefore(5)
	if r.Oldest() != 5 || r.Len() != 2 || r.Head() != 6 {
		t.Fatalf("after DropBefore(5): oldest %d len %d head %d", r.Oldest(), r.Len(), r.Head())
	}
	if msgs, ok := r.Since(4); !ok || len(msgs) != 2 || msgs[0].Seq != 5 {
		t.Fatalf("Since(4) = %v %v", msgs, ok)
	}
	if err := r.Append(protocol.Message{Seq: 7}); err != nil || r.Oldest() != 5 || r.Len() != 3 {
		t.Fatalf("append after a drop: %v oldest %d len %d", err, r.Oldest(), r.Len())
	}
	r.DropBefore(100)
	if r.Len() != 0 || r.Head() != 7 || r.Oldest() != 8 {
		t.Fatalf("after dropping all: len %d head %d oldest %d", r.Len(), r.Head(), r.Oldest())
	}
	if err := r.Append(protocol.Message{Seq: 8}); err != nil || r.Len() != 1 {
		t.Fatalf("append after dropping all: %v len %d", err, r.Len())
	}
}
