package hub

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
)

// TestJoinWaitsForTheOwnersState: the first local join of a room subscribes
// this node at the owner (with the joining user); further joins wait with
// it, a new user among them announced as a presence change; nothing is
// answered, and no push applied, before the owner's State. The State
// answers every waiting join from the owner's copy: its epoch, head and
// oldest, its presence with the joiner added (the owner has not echoed the
// arrival yet) and counted.
func TestJoinWaitsForTheOwnersState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, ann2, bob := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob")
		h.Join(ann, JoinRequest{ID: "j1", Room: "lobby"})
		h.Join(ann2, JoinRequest{ID: "j2", Room: "lobby"})
		h.Join(bob, JoinRequest{ID: "j3", Room: "lobby"})
		synctest.Wait()

		calls := r.subscribeCalls()
		if len(calls) != 1 || calls[0].room != "lobby" || !slices.Equal(calls[0].users, []string{"ann"}) {
			t.Fatalf("Subscribe calls %v, want one for lobby with users [ann]", r.subscribed())
		}
		if got := r.presenceChanges(); !slices.Equal(got, []string{"lobby bob joined"}) {
			t.Fatalf("presence changes %v, want only bob's arrival (ann's travels in the Subscribe)", got)
		}
		h.Deliver(push("lobby", "e1", 6)) // before the State: ignored, the State carries it
		for _, c := range []*fakeConn{ann, ann2, bob} {
			c.expect(t)
		}

		calls[0].reply(state("lobby", "e1", 3, 6, "carl"), nil)
		ann.expect(t, "joined lobby id=j1 epoch=e1 head=6 oldest=3 count=2 present=ann,carl")
		ann2.expect(t, "joined lobby id=j2 epoch=e1 head=6 oldest=3 count=2 present=ann,carl")
		bob.expect(t, "joined lobby id=j3 epoch=e1 head=6 oldest=3 count=2 present=bob,carl")

		// A user the owner already lists is not added or counted again.
		carl := newConn("carl1", "carl")
		h.Join(carl, JoinRequest{ID: "j4", Room: "lobby"})
		carl.expect(t, "joined lobby id=j4 epoch=e1 head=6 oldest=3 count=1 present=carl")
		if got := r.presenceChanges(); !slices.Equal(got, []string{"lobby bob joined", "lobby carl joined"}) {
			t.Fatalf("presence changes %v", got)
		}

		// Live pushes go on from the head.
		h.Deliver(push("lobby", "e1", 7))
		for _, c := range []*fakeConn{ann, ann2, bob, carl} {
			c.expect(t, msgs("e1", 7, 7)...)
		}
		synctest.Wait()
		if n := len(r.subscribeCalls()); n != 1 {
			t.Fatalf("%d Subscribe calls, want 1", n)
		}
	})
}

// TestJoinedListsPresenceUpToPresenceListMax: the joined frame lists the
// users while the count (joiner included) is at most PresenceListMax, and
// carries only the count past it.
func TestJoinedListsPresenceUpToPresenceListMax(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   feed.State
		want string
	}{
		{"two present, the joiner makes three", state("r", "e1", 1, 0, "x", "y"), "joined r id=j epoch=e1 head=0 oldest=1 count=3 present=ann,x,y"},
		{"three present, the joiner makes four", state("r", "e1", 1, 0, "x", "y", "z"), "joined r id=j epoch=e1 head=0 oldest=1 count=4"},
		{"three present, the joiner among them", state("r", "e1", 1, 0, "ann", "x", "y"), "joined r id=j epoch=e1 head=0 oldest=1 count=3 present=ann,x,y"},
		{"a count-only room", feed.State{Epoch: "e1", Head: 0, Oldest: 1, Count: 500}, "joined r id=j epoch=e1 head=0 oldest=1 count=501"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h, r := newTestHub(Config{PresenceListMax: 3})
				ann := newConn("ann1", "ann")
				h.Join(ann, JoinRequest{ID: "j", Room: "r"})
				r.onlyNewSubscribe(t, 0).reply(tc.st, nil)
				ann.expect(t, tc.want)
			})
		})
	}
}

// TestJoinResumesFromTheLocalCopy: a join with since and the room's epoch
// replays exactly the messages after since, right after a joined frame
// with recovered=true; a gap older than the local copy, or another epoch,
// is recovered=false with nothing replayed; a join without since carries
// no recovered member.
func TestJoinResumesFromTheLocalCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{HistorySize: 3})
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), newConn("w", "watcher"))
		for s := uint64(1); s <= 5; s++ {
			h.Deliver(push("lobby", "e1", s))
		}
		// The local copy keeps 3..5.
		for i, tc := range []struct {
			name  string
			since *uint64
			epoch string
			want  []string
		}{
			{"the whole copy", ptr[uint64](2), "e1", append([]string{"recovered=true"}, msgs("e1", 3, 5)...)},
			{"a gap older than the copy", ptr[uint64](1), "e1", []string{"recovered=false"}},
			{"the last message", ptr[uint64](4), "e1", append([]string{"recovered=true"}, msgs("e1", 5, 5)...)},
			{"nothing missed", ptr[uint64](5), "e1", []string{"recovered=true"}},
			{"another epoch", ptr[uint64](4), "e0", []string{"recovered=false"}},
			{"no since", nil, "", []string{""}},
		} {
			user := string(rune('a' + i))
			c := newConn("c-"+user, user)
			h.Join(c, JoinRequest{ID: "j", Room: "lobby", Since: tc.since, Epoch: tc.epoch})
			joined := "joined lobby id=j epoch=e1 head=5 oldest=3 count=1 present=" + user
			if tc.want[0] != "" {
				joined += " " + tc.want[0]
			}
			want := append([]string{joined}, tc.want[1:]...)
			if got := c.take(t); !slices.Equal(got, want) {
				t.Errorf("%s: got\n\t%s\nwant\n\t%s", tc.name, lines(got), lines(want))
			}
		}
	})
}

// TestResumeAheadOfTheLocalCopyWaitsForIt: a client that comes from a node
// that was ahead (its own died, or lagged less) resumes from a position this
// node's copy has not reached. Answering at once would rewind it (joined with
// the lower head, recovered) and send it the messages it already has. Its
// answer waits for the copy to reach its position, asking the owner at once
// and again while the owner cannot be reached; past CatchUpMax it is
// answered from what there is (the position may be made up).
func TestResumeAheadOfTheLocalCopyWaitsForIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{AckHoldMax: time.Second, CatchUpMax: 10 * time.Second})
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 5), newConn("w", "watcher"))
		ann := newConn("ann1", "ann")
		h.Join(ann, JoinRequest{ID: "j", Room: "lobby", Since: ptr[uint64](7), Epoch: "e1"})
		synctest.Wait()
		ann.expect(t) // nothing yet: the local copy is at 5
		// The owner cannot be reached: asked again after the backoff.
		r.onlyNewSubscribe(t, 1).reply(feed.State{}, errors.New("owner unavailable"))
		time.Sleep(resyncBackoff)
		synctest.Wait()
		resync := r.onlyNewSubscribe(t, 2)
		ann.expect(t)
		h.Deliver(push("lobby", "e1", 6))
		ann.expect(t)
		h.Deliver(push("lobby", "e1", 7))
		ann.expect(t, "joined lobby id=j epoch=e1 head=7 oldest=1 count=1 present=ann recovered=true")
		h.Deliver(push("lobby", "e1", 8))
		ann.expect(t, msgs("e1", 8, 8)...)
		resync.reply(state("lobby", "e1", 1, 8), nil)
		ann.expect(t)

		// The owner's copy is at 8, below bob's 9: bob waits CatchUpMax,
		// then is answered from what there is.
		bob := newConn("bob1", "bob")
		h.Join(bob, JoinRequest{ID: "j", Room: "lobby", Since: ptr[uint64](9), Epoch: "e1"})
		synctest.Wait()
		r.onlyNewSubscribe(t, 3).reply(state("lobby", "e1", 1, 8), nil)
		bob.expect(t)
		time.Sleep(10*time.Second - time.Millisecond)
		synctest.Wait()
		bob.expect(t)
		time.Sleep(time.Millisecond)
		synctest.Wait()
		bob.expect(t, "joined lobby id=j epoch=e1 head=8 oldest=1 count=1 present=bob recovered=true")
	})
}

// TestJoinResumesFromTheOwnersState: a resume that waits for the owner is
// answered from the State: replayed when the State still has every
// message after since, recovered=false otherwise.
func TestJoinResumesFromTheOwnersState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		h.Join(ann, JoinRequest{ID: "j1", Room: "lobby", Since: ptr[uint64](3), Epoch: "e1"})
		h.Join(bob, JoinRequest{ID: "j2", Room: "lobby", Since: ptr[uint64](1), Epoch: "e1"})
		r.onlyNewSubscribe(t, 0).reply(state("lobby", "e1", 3, 6), nil)
		ann.expect(t, append([]string{"joined lobby id=j1 epoch=e1 head=6 oldest=3 count=1 present=ann recovered=true"}, msgs("e1", 4, 6)...)...)
		bob.expect(t, "joined lobby id=j2 epoch=e1 head=6 oldest=3 count=1 present=bob recovered=false")
	})
}

// TestSubscribeFailureAnswersEveryWaitingJoin: when the owner cannot be
// reached, every waiting join gets unavailable with its id and room, its
// OnFail runs, the room is dropped, and the next join starts afresh.
func TestSubscribeFailureAnswersEveryWaitingJoin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		failed := 0
		onFail := func() { failed++ }
		h.Join(ann, JoinRequest{ID: "j1", Room: "lobby", OnFail: onFail})
		h.Join(bob, JoinRequest{ID: "j2", Room: "lobby", OnFail: onFail})
		r.onlyNewSubscribe(t, 0).reply(feed.State{}, errors.New("owner unreachable"))
		ann.expect(t, "error unavailable id=j1 room=lobby")
		bob.expect(t, "error unavailable id=j2 room=lobby")
		if failed != 2 {
			t.Fatalf("OnFail ran %d times, want 2", failed)
		}
		if n := h.RoomCount(); n != 0 {
			t.Fatalf("%d rooms after the failed subscribe, want 0", n)
		}
		h.Deliver(push("lobby", "e1", 1))
		ann.expect(t)

		h.Join(ann, JoinRequest{ID: "j3", Room: "lobby"})
		call := r.onlyNewSubscribe(t, 1)
		if !slices.Equal(call.users, []string{"ann"}) {
			t.Fatalf("new Subscribe with users %v, want [ann]", call.users)
		}
		call.reply(state("lobby", "e1", 1, 1), nil)
		ann.expect(t, "joined lobby id=j3 epoch=e1 head=1 oldest=1 count=1 present=ann")
	})
}
