package hub

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestResubscribeChosenRooms: ResubscribeOwnedBy subscribes again exactly
// the live local rooms it is told to (with their local users), whatever
// the gap backoff; a room still waiting for its first State is left to its
// pending subscribe; ResubscribeAll takes every live local room.
func TestResubscribeChosenRooms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		for _, room := range []string{"a", "b", "c"} {
			joinReady(t, h, r, room, state(room, "e1", 1, 1), newConn(room+"1", "user-"+room))
		}
		h.Join(newConn("d1", "user-d"), JoinRequest{ID: "j", Room: "d"})
		h.Deliver(push("a", "e1", 3)) // a gap: a resubscribes, and its backoff starts
		synctest.Wait()
		seen := len(r.subscribeCalls())
		if got := r.subscribed()[seen-1]; got != "a" {
			t.Fatalf("last Subscribe for %s, want a (its gap)", got)
		}

		newCalls := func() []string {
			t.Helper()
			synctest.Wait()
			calls := r.subscribeCalls()[seen:]
			seen += len(calls)
			var got []string
			for _, c := range calls {
				got = append(got, c.room+":"+c.users[0])
			}
			slices.Sort(got)
			return got
		}
		chosen := map[string]bool{"a": true, "c": true, "d": true, "zzz": true}
		h.ResubscribeOwnedBy(func(room string) bool { return chosen[room] })
		if got := newCalls(); !slices.Equal(got, []string{"a:user-a", "c:user-c"}) {
			t.Fatalf("ResubscribeOwnedBy(a, c, d) subscribed %v, want a and c (d still waits for its first State)", got)
		}
		h.ResubscribeAll()
		if got := newCalls(); !slices.Equal(got, []string{"a:user-a", "b:user-b", "c:user-c"}) {
			t.Fatalf("ResubscribeAll subscribed %v, want a, b and c", got)
		}
		h.Resubscribe("nowhere")
		if got := newCalls(); len(got) != 0 {
			t.Fatalf("Resubscribe of a room that is not local subscribed %v", got)
		}
	})
}

// TestHistoryServedFromTheLocalCopy: a live local room answers history
// pages from its copy (what retention kept of it) without asking the
// owner: the newest limit messages before `before` (0 or past the head:
// from the head), with more=true while older ones are kept.
func TestHistoryServedFromTheLocalCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{HistorySize: 4})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann)
		for s := uint64(1); s <= 6; s++ {
			h.Deliver(push("lobby", "e1", s))
		}
		ann.take(t)
		for _, tc := range []struct {
			before uint64
			limit  int
			want   string
		}{
			{0, 2, "more=true [e1-5 e1-6]"},
			{5, 2, "more=false [e1-3 e1-4]"},
			{6, 2, "more=true [e1-4 e1-5]"},
			{3, 2, "more=false []"},
			{100, 10, "more=false [e1-3 e1-4 e1-5 e1-6]"},
		} {
			h.History(ann, "h", "lobby", tc.before, tc.limit)
			ann.expect(t, "history lobby id=h epoch=e1 head=6 oldest=3 "+tc.want)
		}
		if n := len(r.historyCalls()); n != 0 {
			t.Fatalf("%d History calls to the owner for a live local room", n)
		}
	})
}

// TestHistoryOfAStoredRoomBeyondTheLocalCopy: an owner with a store says
// how far back the room's history goes (State.Oldest); joined frames and
// pages report it, and a page older than the local copy is read from the
// owner (its disk).
func TestHistoryOfAStoredRoomBeyondTheLocalCopy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{HistorySize: 4})
		ann := newConn("ann1", "ann")
		st := state("lobby", "e1", 97, 100)
		st.Oldest = 1
		joinReady(t, h, r, "lobby", st, ann)
		h.History(ann, "h1", "lobby", 0, 2)
		ann.expect(t, "history lobby id=h1 epoch=e1 head=100 oldest=1 more=true [e1-99 e1-100]")
		h.History(ann, "h2", "lobby", 98, 3)
		if calls := r.historyCalls(); len(calls) != 1 {
			t.Fatalf("History calls %v: a page below the local copy (97..100) must be read from the owner", calls)
		}
		bob := newConn("bob1", "bob")
		h.Join(bob, JoinRequest{ID: "j", Room: "lobby"})
		if got := bob.take(t); len(got) != 1 || !strings.Contains(got[0], " head=100 oldest=1 ") {
			t.Fatalf("bob's join got %v, want a joined frame saying the history goes back to 1", got)
		}
	})
}

// TestHistoryAskedOfTheOwner: a room without a live local copy (not local,
// or still waiting for its State) is read from the owner, with the
// request's before and limit; the page goes back with the request's id,
// and a failure as unavailable.
func TestHistoryAskedOfTheOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann := newConn("ann1", "ann")
		h.Join(newConn("bob1", "bob"), JoinRequest{ID: "j", Room: "joining"})

		h.History(ann, "h1", "far", 7, 20)
		h.History(ann, "h2", "joining", 0, 5)
		h.History(ann, "h3", "far", 0, 1)
		calls := r.historyCalls()
		if len(calls) != 3 || calls[0].room != "far" || calls[0].before != 7 || calls[0].limit != 20 ||
			calls[1].room != "joining" || calls[1].before != 0 || calls[1].limit != 5 {
			t.Fatalf("History calls %+v", calls)
		}
		ann.expect(t)
		calls[0].reply(protocol.HistoryPage{Type: protocol.TypeHistory, Room: "far", Epoch: "e9", Head: 9, Oldest: 1, More: true, Messages: messages("far", "e9", 5, 6)}, nil)
		ann.expect(t, "history far id=h1 epoch=e9 head=9 oldest=1 more=true [e9-5 e9-6]")
		calls[1].reply(protocol.HistoryPage{Type: protocol.TypeHistory, Room: "joining", Messages: []protocol.Message{}}, nil)
		ann.expect(t, "history joining id=h2 epoch= head=0 oldest=0 more=false []")
		calls[2].reply(protocol.HistoryPage{}, errors.New("owner unreachable"))
		ann.expect(t, "error unavailable id=h3 room=far")
	})
}

// TestDirectMessageResendDeduped: a dm is handed to the router once per
// (sender, cid). A resend while the first is in flight (from any connection
// of the sender) waits and gets the ack as a duplicate, after the first
// ack; a resend after it gets the duplicate at once. The same cid from
// another sender is another message.
func TestDirectMessageResendDeduped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, ann2, bob := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob")

		h.DirectMessage(ann, "d1", "bob", "x1", "hello")
		calls := r.dmCalls()
		if len(calls) != 1 || calls[0].to != "bob" || calls[0].from != "ann" || calls[0].except != "ann1" {
			t.Fatalf("DirectMessage calls %+v, want one to bob from ann except ann1", calls)
		}
		var dm frame
		if err := json.Unmarshal(calls[0].frame, &dm); err != nil || dm.Type != protocol.TypeDM ||
			dm.From != "ann" || dm.To != "bob" || dm.CID != "x1" || dm.Text != "hello" || dm.MID == "" {
			t.Fatalf("dm frame %s (%v)", calls[0].frame, err)
		}
		dmMID := dm.MID

		h.DirectMessage(ann, "d2", "bob", "x1", "hello")
		h.DirectMessage(ann2, "d3", "bob", "x1", "hello")
		ann.expect(t)
		ann2.expect(t)
		calls[0].reply(2)
		ann.expect(t, "ack d1 "+dmMID+" delivered=2", "ack d2 "+dmMID+" delivered=2 duplicate")
		ann2.expect(t, "ack d3 "+dmMID+" delivered=2 duplicate")

		h.DirectMessage(ann, "d4", "bob", "x1", "hello")
		ann.expect(t, "ack d4 "+dmMID+" delivered=2 duplicate")
		if n := len(r.dmCalls()); n != 1 {
			t.Fatalf("%d DirectMessage calls, want 1: a resend was delivered again", n)
		}

		h.DirectMessage(bob, "d5", "ann", "x1", "hello")
		h.DirectMessage(ann, "d6", "bob", "x2", "hello")
		if n := len(r.dmCalls()); n != 3 {
			t.Fatalf("%d DirectMessage calls, want 3: the same cid from bob, or a new cid, is a new message", n)
		}
	})
}

// TestDeliverDirect: a dm reaches every connection of the recipient and the
// sender's other connections, never twice; a dm to oneself reaches the
// sending connection too. Register queues the welcome first; unregistered
// connections get nothing.
func TestDeliverDirect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTestHub(Config{})
		ann, ann2, bob, bob2, carl := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob"), newConn("bob2", "bob"), newConn("carl1", "carl")
		all := []*fakeConn{ann, ann2, bob, bob2, carl}
		for _, c := range all {
			h.Register(c, protocol.Encode(protocol.Welcome{Type: protocol.TypeWelcome, ID: "w-" + c.id, User: c.user}))
			c.expect(t, "welcome w-"+c.id)
		}
		frame := protocol.Encode(protocol.DirectMessage{Type: protocol.TypeDM, MID: "dm-1", From: "ann", To: "bob", Text: "hi"})
		const got = "dm dm-1 ann->bob cid="
		expect := func(n, want int, who ...*fakeConn) {
			t.Helper()
			if n != want {
				t.Fatalf("DeliverDirect reported %d recipient connections, want %d", n, want)
			}
			for _, c := range all {
				if slices.Contains(who, c) {
					c.expect(t, got)
				} else {
					c.expect(t)
				}
			}
		}
		expect(h.DeliverDirect("bob", "ann", "ann1", frame), 2, bob, bob2, ann2)
		expect(h.DeliverDirect("ann", "ann", "ann1", frame), 2, ann, ann2)
		h.Unregister(bob2)
		expect(h.DeliverDirect("bob", "ann", "ann2", frame), 1, bob, ann)
		expect(h.DeliverDirect("nobody", "ann", "ann1", frame), 0, ann2)
	})
}

// TestTypingLimitedPerUser: typing needs the room joined; a user's signals
// closer than TypingInterval are dropped here, each user on its own.
func TestTypingLimitedPerUser(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		h, r := newTestHub(Config{TypingInterval: interval})
		ann, ann2, bob := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann, ann2, bob)
		if e := h.Typing(newConn("carl1", "carl"), "lobby"); e == nil || e.Code != protocol.CodeNotJoined || e.Room != "lobby" {
			t.Fatalf("typing in a room not joined: %+v, want not_joined", e)
		}
		if e := h.Typing(ann, "nowhere"); e == nil || e.Code != protocol.CodeNotJoined {
			t.Fatalf("typing in a room that is not local: %+v, want not_joined", e)
		}
		for _, c := range []*fakeConn{ann, ann2, bob, ann} {
			if e := h.Typing(c, "lobby"); e != nil {
				t.Fatalf("typing: %v", e)
			}
		}
		time.Sleep(interval - time.Nanosecond)
		h.Typing(ann, "lobby")
		time.Sleep(time.Nanosecond)
		h.Typing(ann2, "lobby")
		r.mu.Lock()
		got := slices.Clone(r.typing)
		r.mu.Unlock()
		if want := []string{"lobby ann", "lobby bob", "lobby ann"}; !slices.Equal(got, want) {
			t.Fatalf("typing signals passed on %v, want %v", got, want)
		}
	})
}
