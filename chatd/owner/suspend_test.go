package owner

import (
	"slices"
	"testing"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// suspendFixture is a node "a" that owns room "r" with two committed
// messages, taken over from its replica copy (written by "b" in term 1,
// epoch of snap), with a subscriber on itself; "b" is its one peer and
// answers claims as claim says (nil: granted, no copy).
func suspendFixture(t *testing.T) (*Service, *recorder, *roomlog.Log) {
	t.Helper()
	out := &recorder{}
	cfg := testConfig(nil)
	cfg.View = newFakeView(nil, "b")
	s := startService(t, cfg, out)
	l := roomlog.New("r", roomlog.Config{HistorySize: 10, DedupeWindow: 10})
	_ = l.SetTerm(1, nil)
	l.Append("bob", "x", "one")
	l.Append("bob", "y", "two")
	if err := installCopy(s, "b", l); err != nil {
		t.Fatal(err)
	}
	subscribed := make(chan feed.State, 1)
	s.Subscribe("r", "a", []string{"ann"}, func(rep feed.State, err error) {
		if err != nil {
			t.Errorf("subscribe: %v", err)
		}
		subscribed <- rep
	})
	if rep := <-subscribed; rep.Head != 2 || rep.Epoch != l.Epoch() {
		t.Fatalf("subscribe answered %+v, want the replica copy's head 2 of epoch %s", rep, l.Epoch())
	}
	return s, out, l
}

// TestSuspendTakesTheMajoritysNewerCopy: a node that regains its quorum
// after a partition (or notices it was paused) holds requests for the rooms
// it owns until the members answer its claim; the majority's newer copy is
// fetched, the held message is sequenced after the majority's, and the
// node's own subscribers get the messages they missed.
func TestSuspendTakesTheMajoritysNewerCopy(t *testing.T) {
	s, out, majority := suspendFixture(t)        // b's copy: the same log, then b went on
	_ = majority.SetTerm(s.Promised("r")+1, nil) // b took the room over while a was cut off
	majority.Append("cat", "m3", "three")
	majority.Append("cat", "m4", "four")
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) {
		if req.Term <= majority.Term() {
			return ClaimReply{Refused: refusedStale, Promised: majority.Term()}, nil
		}
		return ClaimReply{Promised: req.Term, Handing: true, Copy: copyInfo(majority)}, nil
	}
	out.fetch = fetchFrom(map[string]*roomlog.Log{"b": majority}, map[string][]string{"b": {"cat"}})
	if got := s.Suspend(); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("Suspend = %v, want [r]", got)
	}
	reply, ch := replies()
	s.Publish("r", "ann", "late", "after the heal", reply)
	p := next(t, ch)
	if p.err != nil || p.ack.Seq != 5 || p.ack.Duplicate {
		t.Fatalf("held publish answered %+v, %v; want seq 5 after the majority's 4", p.ack, p.err)
	}
	if got := out.messages("a"); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Errorf("this node's subscribers got %v, want the missed 3, 4 and then 5", got)
	}
	if got := out.messages("b"); !slices.Equal(got, []uint64{3, 4, 5}) {
		t.Errorf("node b got %v, want 3, 4 (dropped there as duplicates) and 5", got)
	}
	if got := s.Promised("r"); got <= majority.Term() {
		t.Errorf("the room runs in term %d, want above the majority's %d", got, majority.Term())
	}
}

// TestSuspendCarriesOnWhenNoPeerHasTheRoom: when no member holds a newer
// copy the claim ends and the held message goes on the node's own log, in a
// new term.
func TestSuspendCarriesOnWhenNoPeerHasTheRoom(t *testing.T) {
	s, out, _ := suspendFixture(t)
	before := s.Promised("r")
	s.Suspend()
	reply, ch := replies()
	s.Publish("r", "ann", "late", "after the heal", reply)
	if p := next(t, ch); p.err != nil || p.ack.Seq != 3 {
		t.Fatalf("held publish answered %+v, %v; want seq 3", p.ack, p.err)
	}
	if got := out.messages("a"); !slices.Equal(got, []uint64{3}) {
		t.Errorf("pushed %v, want [3]", got)
	}
	if got := s.Promised("r"); got <= before {
		t.Errorf("term %d after the claim, want above %d", got, before)
	}
}
