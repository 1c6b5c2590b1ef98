package owner

import (
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// heldCounter is an Observer that counts held requests, as
// chatd_held_requests_total does.
type heldCounter struct {
	nopObserver
	held atomic.Int32
}

func (h *heldCounter) Held() { h.held.Add(1) }

// TestSeveralRequestsHeldUntilHandoffInOrder: every request that reaches a
// new owner while it waits for the previous owner's handoff is held, and
// once the handoff lands they run in arrival order on top of the handed-over
// log: a subscription (which then sees the handed-over history), new
// messages sequenced after it in the order they came, a resend of a
// handed-over message answered from the handed-over dedupe window, and a
// resend of a held message answered as its duplicate.
func TestSeveralRequestsHeldUntilHandoffInOrder(t *testing.T) {
	out := &recorder{}
	var obs heldCounter
	cfg := awaitingConfig(out, nil)
	cfg.Observe = &obs
	s := startService(t, cfg, out)

	var sub *feed.State
	s.Subscribe("r", "n1", []string{"cat"}, func(rep feed.State, err error) {
		if err != nil {
			t.Errorf("held subscribe: %v", err)
		}
		sub = &rep
	})
	// Answers are recorded in the order they are given.
	type answer struct {
		cid string
		ack protocol.Ack
		err error
	}
	var answers []answer
	publish := func(user, cid string) {
		s.Publish("r", user, cid, "text "+cid, func(ack protocol.Ack, err error) {
			answers = append(answers, answer{cid, ack, err})
		})
	}
	publish("ann", "a1")
	publish("bob", "b1")
	publish("ann", "a2")
	publish("bob", "x")  // a resend of a message the previous owner acknowledged
	publish("ann", "a1") // a resend of a held message
	publish("cat", "c1")
	if sub != nil || len(answers) != 0 {
		t.Fatalf("answered before the handoff: subscribe %+v, publishes %+v", sub, answers)
	}
	if got := obs.held.Load(); got != 7 {
		t.Fatalf("held %d requests, want 7 (1 subscribe, 6 publishes)", got)
	}
	if msgs := out.messages("n1"); len(msgs) != 0 {
		t.Fatalf("pushed %v before the handoff", msgs)
	}

	waitUntil(t, "the claim to ask the previous owner", func() bool { return len(out.claimsMade()) == 1 })
	prev := previousLog()
	handOver(t, s, &out.peerAnswers, prev)

	if sub == nil || sub.Epoch != prev.Epoch() || sub.Head != 2 || len(sub.Messages) != 2 {
		t.Fatalf("held subscribe answered %+v, want the handed-over epoch %s at head 2 with its 2 messages", sub, prev.Epoch())
	}
	want := []struct {
		cid string
		seq uint64
		dup bool
	}{{"a1", 3, false}, {"b1", 4, false}, {"a2", 5, false}, {"x", 1, true}, {"a1", 3, true}, {"c1", 6, false}}
	if len(answers) != len(want) {
		t.Fatalf("%d answers after the handoff, want %d: %+v", len(answers), len(want), answers)
	}
	for i, w := range want {
		a := answers[i]
		if a.err != nil || a.cid != w.cid || a.ack.Seq != w.seq || a.ack.Duplicate != w.dup || a.ack.CID != w.cid {
			t.Fatalf("answer %d = %s %+v %v, want %s seq %d duplicate %v", i, a.cid, a.ack, a.err, w.cid, w.seq, w.dup)
		}
	}
	// The subscribed node got the new messages once each, in order, after
	// the snapshot its subscription answered with.
	if got := out.messages("n1"); !slices.Equal(got, []uint64{3, 4, 5, 6}) {
		t.Fatalf("pushed %v to the subscribed node, want [3 4 5 6]", got)
	}
	// Nothing more was held once the room was ready.
	publish("ann", "a3")
	if got := obs.held.Load(); got != 7 || answers[len(answers)-1].ack.Seq != 7 {
		t.Fatalf("after the handoff: held %d, last answer %+v", got, answers[len(answers)-1])
	}
}
