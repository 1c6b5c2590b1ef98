package rendezvous

import (
	"fmt"
	"math"
	"slices"
	"testing"
)

func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("chatd-%d", i)
	}
	return out
}

func TestOwnersDeterministicAndOrderFree(t *testing.T) {
	ns := nodes(5)
	rev := slices.Clone(ns)
	slices.Reverse(rev)
	for i := 0; i < 100; i++ {
		room := fmt.Sprint("room-", i)
		a, b := Owners(room, ns, 3), Owners(room, rev, 3)
		if !slices.Equal(a, b) {
			t.Fatalf("%s: owners depend on input order: %v vs %v", room, a, b)
		}
		if Owner(room, ns) != a[0] {
			t.Fatalf("%s: Owner %s != Owners[0] %s", room, Owner(room, ns), a[0])
		}
		if len(a) != 3 || a[0] == a[1] || a[1] == a[2] || a[0] == a[2] {
			t.Fatalf("%s: owners %v not distinct", room, a)
		}
	}
	if Owners("r", nil, 2) != nil || Owner("r", nil) != "" || len(Owners("r", ns[:1], 3)) != 1 {
		t.Fatal("edge cases")
	}
}

// TestBalance measures how evenly 100,000 rooms spread, and fails if the
// busiest node holds more than 5% above the average. The figure is quoted in
// docs/architecture.md.
func TestBalance(t *testing.T) {
	const rooms = 100000
	for _, n := range []int{3, 5, 10} {
		ns := nodes(n)
		count := map[string]int{}
		for i := 0; i < rooms; i++ {
			count[Owner(fmt.Sprint("room-", i), ns)]++
		}
		maxLoad := 0
		for _, c := range count {
			maxLoad = max(maxLoad, c)
		}
		ratio := float64(maxLoad) / (float64(rooms) / float64(n))
		t.Logf("%d nodes: max/avg = %.3f", n, ratio)
		if ratio > 1.05 {
			t.Errorf("%d nodes: max/avg %.3f > 1.05", n, ratio)
		}
	}
}

// TestMinimalMovement: when a node joins, only rooms that move to the new
// node change owner (about 1/(N+1) of them); when it leaves, only its rooms
// move. Replica lists shift the same minimal way.
func TestMinimalMovement(t *testing.T) {
	const rooms = 20000
	before := nodes(4)
	after := append(slices.Clone(before), "chatd-new")
	moved := 0
	for i := 0; i < rooms; i++ {
		room := fmt.Sprint("room-", i)
		a, b := Owner(room, before), Owner(room, after)
		if a != b {
			if b != "chatd-new" {
				t.Fatalf("%s moved from %s to %s, not to the new node", room, a, b)
			}
			moved++
		}
	}
	share := float64(moved) / rooms
	if math.Abs(share-0.2) > 0.02 {
		t.Fatalf("%.3f of rooms moved, want about 1/5", share)
	}
}

func BenchmarkOwner(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		ns := nodes(n)
		b.Run(fmt.Sprint("nodes=", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				_ = Owner("some-room-name", ns)
			}
		})
	}
}
