package hub

import (
	"slices"
	"testing"
	"testing/synctest"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// presence is the owner's push of a presence frame.
func presence(room string, count int, joined, left, present []string) feed.Event {
	return feed.Event{
		Kind: feed.KindPresence, Room: room, Count: count, Joined: joined, Left: left, Present: present,
		Frame: protocol.Encode(protocol.Presence{Type: protocol.TypePresence, Room: room, Count: count, Joined: joined, Left: left, Present: present}),
	}
}

// TestPresenceEvents: presence pushes reach every local subscriber, except
// that a user is not told of its own arrival (its joined frame listed it);
// the local presence copy follows the deltas, full lists and counts, and
// later joined frames show it (names up to PresenceListMax, a count past
// it).
func TestPresenceEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{PresenceListMax: 4})
		ann, ann2, bob := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0, "ann", "bob"), ann, ann2, bob)
		all := []*fakeConn{ann, ann2, bob}
		expectAll := func(want ...string) {
			t.Helper()
			for _, c := range all {
				c.expect(t, want...)
			}
		}
		joinAs := func(user, want string) {
			t.Helper()
			c := newConn(user+"1", user)
			h.Join(c, JoinRequest{ID: "j", Room: "lobby"})
			c.expect(t, want)
			h.Leave(c, "lobby")
		}

		h.Deliver(presence("lobby", 3, []string{"carl"}, nil, nil))
		expectAll("presence lobby count=3 joined=carl")

		h.Deliver(presence("lobby", 3, []string{"ann"}, nil, nil))
		ann.expect(t)
		ann2.expect(t)
		bob.expect(t, "presence lobby count=3 joined=ann")

		h.Deliver(presence("lobby", 2, nil, []string{"bob"}, nil))
		expectAll("presence lobby count=2 left=bob")
		joinAs("dan", "joined lobby id=j epoch=e1 head=0 oldest=1 count=3 present=ann,carl,dan")

		h.Deliver(presence("lobby", 2, nil, nil, []string{"ann", "zed"}))
		expectAll("presence lobby count=2 present=ann,zed")
		joinAs("fay", "joined lobby id=j epoch=e1 head=0 oldest=1 count=3 present=ann,fay,zed")

		h.Deliver(presence("lobby", 7, nil, nil, nil))
		expectAll("presence lobby count=7")
		joinAs("eve", "joined lobby id=j epoch=e1 head=0 oldest=1 count=8")
	})
}

// TestLeaveTellsTheOwner: a user's first connection in a room announces it
// (in the Subscribe, or as a presence change once the room is live); the
// last one out announces its departure; the last local subscriber out
// unsubscribes the node instead and drops the local room, so the next join
// subscribes again.
func TestLeaveTellsTheOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, ann2, bob := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann, ann2)
		h.Join(bob, JoinRequest{ID: "j", Room: "lobby"})
		bob2 := newConn("bob2", "bob")
		h.Join(bob2, JoinRequest{ID: "j", Room: "lobby"})
		bob.take(t) // their joined frames
		bob2.take(t)
		if got := r.presenceChanges(); !slices.Equal(got, []string{"lobby bob joined"}) {
			t.Fatalf("presence changes %v, want bob's arrival once", got)
		}

		if !h.Leave(ann, "lobby") {
			t.Fatal("Leave(ann1) = false")
		}
		if h.Leave(ann, "lobby") {
			t.Fatal("a second Leave(ann1) = true")
		}
		if h.Leave(ann, "nowhere") {
			t.Fatal("Leave of a room that is not local = true")
		}
		if got := r.presenceChanges(); len(got) != 1 {
			t.Fatalf("presence changes %v after a leave of a user still here", got)
		}
		h.Leave(ann2, "lobby")
		h.Leave(bob2, "lobby")
		if got := r.presenceChanges(); !slices.Equal(got, []string{"lobby bob joined", "lobby ann left"}) {
			t.Fatalf("presence changes %v, want ann's departure after bob's arrival", got)
		}

		h.Deliver(push("lobby", "e1", 1))
		for _, c := range []*fakeConn{ann, ann2, bob2} {
			c.expect(t)
		}
		bob.expect(t, "message e1-1")

		if !h.Leave(bob, "lobby") {
			t.Fatal("Leave(bob1) = false")
		}
		if got := r.unsubscribed(); !slices.Equal(got, []string{"lobby"}) {
			t.Fatalf("Unsubscribe calls %v, want [lobby]", got)
		}
		if got := r.presenceChanges(); len(got) != 2 {
			t.Fatalf("presence changes %v: the last subscriber's leave is an Unsubscribe, not a presence change", got)
		}
		if n := h.RoomCount(); n != 0 {
			t.Fatalf("%d rooms after the last leave, want 0", n)
		}
		h.Join(bob, JoinRequest{ID: "j", Room: "lobby"})
		if call := r.onlyNewSubscribe(t, 1); !slices.Equal(call.users, []string{"bob"}) {
			t.Fatalf("Subscribe after the room was dropped has users %v, want [bob]", call.users)
		}
	})
}

// TestLeaveWhileTheJoinWaitsForTheOwner: a connection that leaves (or
// closes: the session leaves all its rooms) while its join still waits for
// the owner must not be subscribed by the owner's late answer.
func TestLeaveWhileTheJoinWaitsForTheOwner(t *testing.T) {
	t.Run("others stay", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, r := newTestHub(Config{})
			ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
			h.Join(ann, JoinRequest{ID: "j1", Room: "lobby"})
			h.Join(bob, JoinRequest{ID: "j2", Room: "lobby"})
			h.Leave(ann, "lobby")
			r.onlyNewSubscribe(t, 0).reply(state("lobby", "e1", 1, 0, "ann", "bob"), nil)
			h.Deliver(push("lobby", "e1", 1))
			// The cancelled join is answered, and nothing more comes.
			ann.expect(t, "error not_joined id=j1 room=lobby")
			if got := h.Stats(); len(got) != 1 || got[0].Subscribers != 1 || got[0].Users != 1 {
				t.Fatalf("room stats %+v, want bob alone", got)
			}
			if got := r.presenceChanges(); !slices.Contains(got, "lobby ann left") {
				t.Fatalf("presence changes %v: the owner, told of ann in the Subscribe, never heard she left", got)
			}
		})
	})
	t.Run("nobody stays", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, r := newTestHub(Config{})
			ann := newConn("ann1", "ann")
			h.Join(ann, JoinRequest{ID: "j1", Room: "lobby"})
			h.Leave(ann, "lobby")
			if got := r.unsubscribed(); len(got) != 0 {
				t.Fatalf("Unsubscribe %v before the owner answered the Subscribe: it could overtake it", got)
			}
			r.onlyNewSubscribe(t, 0).reply(state("lobby", "e1", 1, 0, "ann"), nil)
			ann.expect(t, "error not_joined id=j1 room=lobby")
			if n := h.RoomCount(); n != 0 {
				t.Fatalf("%d rooms, want 0: the room's only connection left", n)
			}
			synctest.Wait() // the unsubscription is made off the reply's goroutine
			if got := r.unsubscribed(); !slices.Equal(got, []string{"lobby"}) {
				t.Fatalf("Unsubscribe calls %v, want [lobby]", got)
			}
		})
	})
}

// TestJoinTwiceWhileSubscribingCountsTheUserOnce: a connection may join a
// room it is joining again (a pipelined join); its user still counts once,
// so its leave announces the user's departure.
func TestJoinTwiceWhileSubscribingCountsTheUserOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		h.Join(ann, JoinRequest{ID: "j1", Room: "lobby"})
		h.Join(ann, JoinRequest{ID: "j2", Room: "lobby"})
		h.Join(bob, JoinRequest{ID: "j3", Room: "lobby"})
		r.onlyNewSubscribe(t, 0).reply(state("lobby", "e1", 1, 0), nil)
		ann.expect(t,
			"joined lobby id=j1 epoch=e1 head=0 oldest=1 count=1 present=ann",
			"joined lobby id=j2 epoch=e1 head=0 oldest=1 count=1 present=ann")
		h.Leave(ann, "lobby")
		if got := r.presenceChanges(); !slices.Equal(got, []string{"lobby bob joined", "lobby ann left"}) {
			t.Fatalf("presence changes %v, want ann's departure after bob's arrival", got)
		}
		if got := h.Stats(); len(got) != 1 || got[0].Users != 1 {
			t.Fatalf("room stats %+v, want one user (bob)", got)
		}
	})
}

// TestPresenceBatchWithoutOwnArrival: an owner's batch can name several
// arrivals; each arriving user gets the frame without its own name, and
// nothing when its arrival was the batch's only change.
func TestPresenceBatchWithoutOwnArrival(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, ann2, bob, carl := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob"), newConn("carl1", "carl")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0, "ann", "bob", "carl"), ann, ann2, bob, carl)

		h.Deliver(presence("lobby", 4, []string{"ann", "bob", "dan"}, []string{"eve"}, nil))
		ann.expect(t, "presence lobby count=4 joined=bob,dan left=eve")
		ann2.expect(t, "presence lobby count=4 joined=bob,dan left=eve")
		bob.expect(t, "presence lobby count=4 joined=ann,dan left=eve")
		carl.expect(t, "presence lobby count=4 joined=ann,bob,dan left=eve")

		h.Deliver(presence("lobby", 4, []string{"carl"}, nil, nil))
		carl.expect(t)
		ann.expect(t, "presence lobby count=4 joined=carl")
	})
}

// TestResubscribeAnnouncesPresenceItMissed: when a re-subscription's answer
// (a new owner, after a move) lists other users than the local copy, local
// subscribers are told the difference; an answer that agrees sends nothing.
func TestResubscribeAnnouncesPresenceItMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{PresenceListMax: 3})
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0, "ann", "bob", "carl"), ann, bob)
		resubscribe := func(st feed.State) {
			t.Helper()
			seen := len(r.subscribeCalls())
			h.Resubscribe("lobby")
			synctest.Wait() // the subscribe goes out on its own goroutine
			r.onlyNewSubscribe(t, seen).reply(st, nil)
		}

		resubscribe(state("lobby", "e1", 1, 0, "ann", "bob", "carl"))
		ann.expect(t)
		bob.expect(t)

		resubscribe(state("lobby", "e1", 1, 0, "ann", "bob", "dan"))
		ann.expect(t, "presence lobby count=3 joined=dan left=carl")
		bob.expect(t, "presence lobby count=3 joined=dan left=carl")

		big := state("lobby", "e1", 1, 0)
		big.Count = 9 // count mode: no list
		resubscribe(big)
		ann.expect(t, "presence lobby count=9")
		resubscribe(big)
		ann.expect(t)

		resubscribe(state("lobby", "e1", 1, 0, "ann", "bob"))
		ann.expect(t, "presence lobby count=2 present=ann,bob")
		bob.expect(t, "presence lobby count=9", "presence lobby count=2 present=ann,bob")
	})
}
