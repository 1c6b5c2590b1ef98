package owner

import (
	"slices"
	"testing"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// suspendFixture is a node that owns room "r" with two committed messages,
// taken over from its replica copy (epoch of snap), and a subscriber on
// itself.
func suspendFixture(t *testing.T) (*Service, *recorder, roomlog.Snapshot) {
	t.Helper()
	out := &recorder{}
	s := startService(t, testConfig(nil), out)
	l := roomlog.New("r", roomlog.Config{HistorySize: 10, DedupeWindow: 10})
	l.Append("bob", "x", "one")
	l.Append("bob", "y", "two")
	snap := l.Snapshot()
	if err := s.SyncReplica(snap); err != nil {
		t.Fatal(err)
	}
	s.Subscribe("r", "a", []string{"ann"}, create, func(rep feed.State, err error) {
		if err != nil || rep.Head != 2 {
			t.Fatalf("subscribe: %+v %v", rep, err)
		}
	})
	return s, out, snap
}

// TestSuspendTakesTheMajoritysNewerCopy: a node that regains its quorum
// after a partition holds requests for the rooms it owns until the peers
// answer; the majority's owner hands over the room it went on with, the held
// message is sequenced after the majority's, and the node's own subscribers
// get the messages they missed.
func TestSuspendTakesTheMajoritysNewerCopy(t *testing.T) {
	s, out, snap := suspendFixture(t)
	if got := s.Suspend(create); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("Suspend = %v, want [r]", got)
	}
	var acks []protocol.Ack
	s.Publish("r", "ann", "late", "after the heal", create, func(ack protocol.Ack, err error) {
		if err != nil {
			t.Errorf("held publish: %v", err)
		}
		acks = append(acks, ack)
	})
	if len(acks) != 0 {
		t.Fatalf("a suspended room sequenced a message on its stale copy: %+v", acks)
	}

	majority, err := roomlog.Restore(snap, roomlog.Config{HistorySize: 10, DedupeWindow: 10})
	if err != nil {
		t.Fatal(err)
	}
	majority.Append("cat", "m3", "three")
	majority.Append("cat", "m4", "four")
	if err := s.AcceptHandoff(HandoffState{Snapshot: majority.Snapshot(), Nodes: map[string][]string{"b": {"cat"}}}); err != nil {
		t.Fatal(err)
	}
	if len(acks) != 1 || acks[0].Seq != 5 || acks[0].Duplicate {
		t.Fatalf("held publish acked %+v, want seq 5 after the majority's 4", acks)
	}
	if got := out.messages("a"); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Errorf("this node's subscribers got %v, want the missed 3, 4 and then 5", got)
	}
	if got := out.messages("b"); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Errorf("node b got %v, want 3, 4 (dropped there as duplicates) and 5", got)
	}
}

// TestSuspendCarriesOnWhenNoPeerHasTheRoom: when no peer holds a newer copy
// the wait ends and the held message goes on the node's own log.
func TestSuspendCarriesOnWhenNoPeerHasTheRoom(t *testing.T) {
	s, out, _ := suspendFixture(t)
	s.Suspend(create)
	var acks []protocol.Ack
	s.Publish("r", "ann", "late", "after the heal", create, func(ack protocol.Ack, err error) {
		if err != nil {
			t.Errorf("held publish: %v", err)
		}
		acks = append(acks, ack)
	})
	s.EndWait("r")
	if len(acks) != 1 || acks[0].Seq != 3 {
		t.Fatalf("acks %+v, want seq 3", acks)
	}
	if got := out.messages("a"); !slices.Equal(got, []uint64{3}) {
		t.Errorf("pushed %v, want [3]", got)
	}
}
