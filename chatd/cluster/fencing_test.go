package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// TestClusterPausedOwnerCannotAckWithAStaleView is issue 11's freeze, made
// deterministic: the room's owner stops (its view frozen: it still sees
// itself owning the room), the two others declare it dead and the replica
// takes the room over and goes on. The frozen owner then gets a message
// from one of its clients. It must not acknowledge it at a sequence number
// the new owner already used (nor at all, while it is not a member in the
// others' eyes); once the views agree again the room comes back to it with
// every message the new owner acknowledged, in order.
func TestClusterPausedOwnerCannotAckWithAStaleView(t *testing.T) {
	// A short route timeout: the frozen owner's request retries for that
	// long before its client is told "unavailable".
	nodes := startNodesWith(t, 3*time.Second, "node-a", "node-b", "node-c")
	a, b := nodes["node-a"], nodes["node-b"]
	all := []string{"node-a", "node-b", "node-c"}
	room := roomOwned([]string{"node-a", "node-b"}, all, []string{"node-b", "node-c"})
	setViews(nodes, all...)

	first := waitFor(t, publishVia(a, room, "ann", "c1", "before the freeze"), "ack of the first message")
	if first.err != nil || first.ack.Seq != 1 {
		t.Fatalf("first message answered %+v, %v", first.ack, first.err)
	}
	if got := rendezvous.Owners(room, all, 3); got[1] != "node-b" {
		t.Fatalf("room %s replicates to %v, want node-b first", room, got)
	}

	// node-a freezes: node-b and node-c declare it dead. node-b, the
	// replica, takes the room over and acknowledges seq 2.
	setViewsOf(nodes, []string{"node-b", "node-c"}, "node-b", "node-c")
	second := waitFor(t, publishVia(b, room, "bob", "c2", "while node-a is frozen"), "ack at the new owner")
	if second.err != nil || second.ack.Seq != 2 || ackEpoch(second.ack) != ackEpoch(first.ack) {
		t.Fatalf("new owner answered %+v, %v; want seq 2 in the same epoch", second.ack, second.err)
	}

	// node-a wakes up with its old view and a client's message queued.
	stale := waitFor(t, publishVia(a, room, "ann", "c3", "queued during the freeze"), "answer at the frozen owner")
	if stale.err == nil {
		t.Fatalf("the frozen owner acknowledged %+v with a stale view (node-b used seq 2 for another message)", stale.ack)
	}
	if !errors.Is(stale.err, ErrUnavailable) {
		t.Fatalf("frozen owner answered %v, want unavailable (the client resends)", stale.err)
	}

	// The views agree again: node-a owns the room again and takes it back
	// with node-b's messages; the resend is acknowledged after them (as a
	// duplicate when the first attempt, held by node-a's claim, got there
	// first: the client had been told "unavailable", not refused).
	setViews(nodes, all...)
	resent := waitFor(t, publishVia(a, room, "ann", "c3", "queued during the freeze"), "ack of the resend")
	if resent.err != nil || resent.ack.Seq != 3 {
		t.Fatalf("resend answered %+v, %v; want seq 3, after node-b's 2", resent.ack, resent.err)
	}
	subs := make(chan feed.State, 1)
	a.Subscribe(room, []string{"cat"}, func(st feed.State, err error) {
		if err != nil {
			t.Errorf("subscribe: %v", err)
		}
		subs <- st
	})
	st := waitFor(t, subs, "the room's state")
	want := []string{"before the freeze", "while node-a is frozen", "queued during the freeze"}
	if st.Epoch != ackEpoch(first.ack) || st.Head != 3 || len(st.Messages) != 3 {
		t.Fatalf("room state %+v, want epoch %s head 3", st, ackEpoch(first.ack))
	}
	for i, m := range st.Messages {
		if m.Seq != uint64(i+1) || m.Text != want[i] {
			t.Fatalf("message %d = %d %q, want %d %q", i, m.Seq, m.Text, i+1, want[i])
		}
	}
}
