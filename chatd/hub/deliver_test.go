package hub

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestDeliverInOrderOnce: pushes reach every local subscriber in sequence
// order, as the very frame the owner encoded (shared, not re-encoded); a
// message already delivered (the old and the new owner both pushing it
// around a move) is dropped; typing frames pass through; pushes for a room
// without local subscribers are dropped.
func TestDeliverInOrderOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann, bob)

		first := push("lobby", "e1", 1)
		h.Deliver(first)
		for _, s := range []uint64{2, 3, 2, 3, 1} {
			h.Deliver(push("lobby", "e1", s))
		}
		ann.expect(t, msgs("e1", 1, 3)...)
		bob.expect(t, msgs("e1", 1, 3)...)
		if got := ann.rawFrames()[1]; &got[0] != &first.Frame[0] {
			t.Fatal("the hub queued a copy of the owner's frame instead of the frame itself")
		}

		typing := protocol.Encode(protocol.Typing{Type: protocol.TypeTyping, Room: "lobby", Users: []string{"bob"}})
		h.Deliver(feed.Event{Kind: feed.KindTyping, Room: "lobby", Frame: typing})
		ann.expect(t, "typing lobby bob")
		bob.expect(t, "typing lobby bob")

		h.Deliver(push("elsewhere", "e1", 1))
		if n := h.RoomCount(); n != 1 {
			t.Fatalf("%d rooms, want 1: a push created a room", n)
		}
		synctest.Wait()
		if calls := r.subscribed(); len(calls) != 1 {
			t.Fatalf("Subscribe calls %v, want only the join's", calls)
		}
	})
}

// TestGapBufferedUntilTheMissingMessageArrives: a message ahead of the head
// is held back (and a resubscription asked for, once); when the missing
// message arrives, it and the held ones go out in order. The resubscription's
// late answer then brings nothing new.
func TestGapBufferedUntilTheMissingMessageArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 2), ann)

		h.Deliver(push("lobby", "e1", 5))
		h.Deliver(push("lobby", "e1", 4))
		ann.expect(t)
		synctest.Wait()
		resync := r.onlyNewSubscribe(t, 1)
		if resync.room != "lobby" || !slices.Equal(resync.users, []string{"ann"}) {
			t.Fatalf("resync Subscribe(%s, %v), want lobby with [ann]", resync.room, resync.users)
		}

		h.Deliver(push("lobby", "e1", 3))
		ann.expect(t, msgs("e1", 3, 5)...)

		resync.reply(state("lobby", "e1", 1, 5, "ann"), nil)
		ann.expect(t)
		h.Deliver(push("lobby", "e1", 6))
		ann.expect(t, msgs("e1", 6, 6)...)
	})
}

// TestResyncReplyFillsTheGap: the owner's answer to the resubscription
// fills the gap from its history, then the held messages follow, in
// order, each once; live pushes go on after it.
func TestResyncReplyFillsTheGap(t *testing.T) {
	t.Run("the reply has everything", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, r := newTestHub(Config{})
			ann := newConn("ann1", "ann")
			joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 2), ann)
			h.Deliver(push("lobby", "e1", 5))
			synctest.Wait()
			r.onlyNewSubscribe(t, 1).reply(state("lobby", "e1", 1, 5, "ann"), nil)
			ann.expect(t, msgs("e1", 3, 5)...)
			h.Deliver(push("lobby", "e1", 5))
			h.Deliver(push("lobby", "e1", 6))
			ann.expect(t, msgs("e1", 6, 6)...)
		})
	})
	t.Run("the held messages complete the reply", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h, r := newTestHub(Config{})
			ann := newConn("ann1", "ann")
			joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 2), ann)
			h.Deliver(push("lobby", "e1", 5))
			h.Deliver(push("lobby", "e1", 4))
			synctest.Wait()
			r.onlyNewSubscribe(t, 1).reply(state("lobby", "e1", 1, 3, "ann"), nil)
			ann.expect(t, msgs("e1", 3, 5)...)
			h.Deliver(push("lobby", "e1", 6))
			ann.expect(t, msgs("e1", 6, 6)...)
		})
	})
}

// TestResyncBackoff: gaps ask the owner again at most once per
// resyncBackoff; a failed resubscription changes nothing, and the next gap
// after the backoff asks again. (Time is the bubble's: sleeping moves its
// clock, instantly.)
func TestResyncBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 1), ann)

		h.Deliver(push("lobby", "e1", 3))
		synctest.Wait()
		first := r.onlyNewSubscribe(t, 1)

		h.Deliver(push("lobby", "e1", 4))
		time.Sleep(resyncBackoff - time.Nanosecond)
		h.Deliver(push("lobby", "e1", 5))
		synctest.Wait()
		if n := len(r.subscribeCalls()); n != 2 {
			t.Fatalf("%d Subscribe calls within the backoff, want 2 (the join's and one resync)", n)
		}
		first.reply(feed.State{}, errors.New("owner moving"))
		ann.expect(t)

		time.Sleep(time.Nanosecond)
		h.Deliver(push("lobby", "e1", 6))
		synctest.Wait()
		r.onlyNewSubscribe(t, 2).reply(state("lobby", "e1", 1, 6, "ann"), nil)
		ann.expect(t, msgs("e1", 2, 6)...)
	})
}

// TestResyncReplyBeyondWhatItCanFill: when the owner no longer keeps the
// messages this node missed, the owner's copy replaces the local one and
// the subscribers get a joined frame without id, recovered=false, with the
// new head and oldest and no presence list; resumes and live messages then
// work from the new copy.
func TestResyncReplyBeyondWhatItCanFill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{HistorySize: 10})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 2), ann)
		h.Deliver(push("lobby", "e1", 9))
		synctest.Wait()
		r.onlyNewSubscribe(t, 1).reply(state("lobby", "e1", 6, 10, "ann", "x"), nil)
		ann.expect(t, "joined lobby id= epoch=e1 head=10 oldest=6 count=2 recovered=false")

		h.Deliver(push("lobby", "e1", 9))
		h.Deliver(push("lobby", "e1", 11))
		ann.expect(t, msgs("e1", 11, 11)...)

		dan, eve := newConn("dan1", "dan"), newConn("eve1", "eve")
		h.Join(dan, JoinRequest{ID: "j", Room: "lobby", Since: ptr[uint64](5), Epoch: "e1"})
		dan.expect(t, append([]string{"joined lobby id=j epoch=e1 head=11 oldest=6 count=3 present=ann,dan,x recovered=true"}, msgs("e1", 6, 11)...)...)
		h.Join(eve, JoinRequest{ID: "j", Room: "lobby", Since: ptr[uint64](4), Epoch: "e1"})
		eve.expect(t, "joined lobby id=j epoch=e1 head=11 oldest=6 count=3 present=ann,eve,x recovered=false")
	})
}

// TestEpochRestartOnSeqOne: the first message of a new epoch restarts the
// local copy there: subscribers get a joined frame (no id, head 0,
// recovered=false) and then the message; no resubscription is needed, and
// resumes from the old epoch are not recovered.
func TestEpochRestartOnSeqOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 3, "ann", "bob"), ann, bob)

		h.Deliver(push("lobby", "e2", 1))
		for _, c := range []*fakeConn{ann, bob} {
			c.expect(t, "joined lobby id= epoch=e2 head=0 oldest=1 count=2 recovered=false", "message e2-1")
		}
		h.Deliver(push("lobby", "e2", 2))
		ann.expect(t, msgs("e2", 2, 2)...)
		synctest.Wait()
		if n := len(r.subscribeCalls()); n != 1 {
			t.Fatalf("%d Subscribe calls, want only the join's", n)
		}

		old, cur := newConn("carl1", "carl"), newConn("dan1", "dan")
		h.Join(old, JoinRequest{ID: "j", Room: "lobby", Since: ptr[uint64](3), Epoch: "e1"})
		old.expect(t, "joined lobby id=j epoch=e2 head=2 oldest=1 count=3 present=ann,bob,carl recovered=false")
		h.Join(cur, JoinRequest{ID: "j", Room: "lobby", Since: ptr[uint64](1), Epoch: "e2"})
		cur.expect(t, "joined lobby id=j epoch=e2 head=2 oldest=1 count=3 present=ann,bob,dan recovered=true", "message e2-2")
	})
}

// TestNewEpochPastSeqOneResyncs: a message of a new epoch that is not its
// first does not restart the copy by itself: the hub asks the owner, whose
// State restarts it (joined, recovered=false) and fills it from 1.
func TestNewEpochPastSeqOneResyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 3, "ann"), ann)

		h.Deliver(push("lobby", "e2", 4))
		ann.expect(t)
		synctest.Wait()
		r.onlyNewSubscribe(t, 1).reply(state("lobby", "e2", 1, 4, "ann"), nil)
		ann.expect(t, append([]string{"joined lobby id= epoch=e2 head=0 oldest=1 count=1 recovered=false"}, msgs("e2", 1, 4)...)...)
		h.Deliver(push("lobby", "e2", 4))
		h.Deliver(push("lobby", "e2", 5))
		ann.expect(t, msgs("e2", 5, 5)...)
	})
}
