package rendezvous

import (
	"slices"
	"testing"
)

// TestGoldenScores pins the rendezvous scores and the orders they give:
// every node of a cluster must compute the same owner for a room, so a
// change to the hash (or to its mixer) silently splits a cluster of mixed
// versions. A deliberate change updates these values together with the
// inter-node protocol version (chatd/rpc.Version).
func TestGoldenScores(t *testing.T) {
	for _, tc := range []struct {
		node, room string
		want       uint64
	}{
		{"chatd-0", "lobby", 6583729072396257900},
		{"chatd-1", "lobby", 15047488981440216439},
		{"chatd-2", "room-42", 1039527446093969489},
		{"", "", 5705415379283624141},
	} {
		if got := score(tc.node, tc.room); got != tc.want {
			t.Errorf("score(%q, %q) = %d, want %d", tc.node, tc.room, got, tc.want)
		}
	}
	for room, want := range map[string][]string{
		"lobby":   {"chatd-1", "chatd-4", "chatd-0", "chatd-3", "chatd-2"},
		"general": {"chatd-3", "chatd-0", "chatd-2", "chatd-4", "chatd-1"},
		"b":       {"chatd-2", "chatd-1", "chatd-0", "chatd-3", "chatd-4"},
	} {
		if got := Owners(room, nodes(5), 5); !slices.Equal(got, want) {
			t.Errorf("Owners(%q) = %q, want %q", room, got, want)
		}
	}
}
