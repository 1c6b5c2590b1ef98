package hub

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// localOwner is a Router that answers as an owner on this very node does:
// at once, on the caller's goroutine, pushing a message into the hub before
// it answers its sender. Every call first checks that the hub holds no
// room's lock (and not its room map's): the one rule that lets a local
// owner push into the hub under its own lock without a deadlock.
type localOwner struct {
	fakeRouter
	t    *testing.T
	h    *Hub
	head uint64
}

func (o *localOwner) checkUnlocked(op string) {
	o.t.Helper()
	if !o.h.mu.TryRLock() {
		o.t.Fatalf("%s called with the hub's room map locked", op)
	}
	rooms := slices.Collect(maps.Values(o.h.rooms))
	o.h.mu.RUnlock()
	for _, r := range rooms {
		if !r.mu.TryLock() {
			// Fatal, not Error: the answer would deadlock on that lock.
			o.t.Fatalf("%s called with room %s locked", op, r.name)
		}
		r.mu.Unlock()
	}
}

func (o *localOwner) Subscribe(room string, users []string, reply func(feed.State, error)) {
	o.checkUnlocked("Subscribe")
	o.fakeRouter.Subscribe(room, users, reply)
	reply(state(room, "e1", 1, o.head), nil)
}

func (o *localOwner) Unsubscribe(room string) {
	o.checkUnlocked("Unsubscribe")
	o.fakeRouter.Unsubscribe(room)
}

func (o *localOwner) PresenceChange(room, user string, joined bool) {
	o.checkUnlocked("PresenceChange")
	o.fakeRouter.PresenceChange(room, user, joined)
}

func (o *localOwner) Publish(room, user, cid, text string, reply func(protocol.Ack, error)) {
	o.checkUnlocked("Publish")
	o.head++
	o.h.Deliver(push(room, "e1", o.head))
	reply(ackFor("e1", o.head), nil)
}

func (o *localOwner) History(room string, before uint64, limit int, reply func(protocol.HistoryPage, error)) {
	o.checkUnlocked("History")
	reply(protocol.HistoryPage{Type: protocol.TypeHistory, Room: room, Messages: []protocol.Message{}}, nil)
}

func (o *localOwner) Typing(room, user string) {
	o.checkUnlocked("Typing")
	o.fakeRouter.Typing(room, user)
}

func (o *localOwner) DirectMessage(to, from, exceptSession string, frame []byte, reply func(int)) {
	o.checkUnlocked("DirectMessage")
	reply(o.h.DeliverDirect(to, from, exceptSession, frame))
}

// TestLocalOwnerAnsweringAtOnce: with an owner on this node, which answers
// on the caller's goroutine, every operation completes within its call, the
// sender still gets its message before its ack, and the hub never calls
// the router while it holds a room's lock.
func TestLocalOwnerAnsweringAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTestHub(Config{})
		o := &localOwner{t: t, h: h}
		h.SetRouter(o)
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		for _, c := range []*fakeConn{ann, bob} {
			h.Register(c, protocol.Encode(protocol.Welcome{Type: protocol.TypeWelcome, ID: "w"}))
			c.expect(t, "welcome w")
		}

		h.Join(ann, JoinRequest{ID: "j1", Room: "lobby"})
		ann.expect(t, "joined lobby id=j1 epoch=e1 head=0 oldest=1 count=1 present=ann")
		h.Join(bob, JoinRequest{ID: "j2", Room: "lobby"})
		bob.expect(t, "joined lobby id=j2 epoch=e1 head=0 oldest=1 count=1 present=bob")

		h.Publish(ann, "s1", "lobby", "c1", "hi", h.now())
		ann.expect(t, "message e1-1", "ack s1 e1-1")
		bob.expect(t, "message e1-1")

		h.History(ann, "h1", "far", 0, 10)
		ann.expect(t, "history far id=h1 epoch= head=0 oldest=0 more=false []")
		if e := h.Typing(ann, "lobby"); e != nil {
			t.Fatal(e)
		}

		h.DirectMessage(ann, "d1", "bob", "x1", "psst")
		if got := bob.take(t); len(got) != 1 || !strings.HasPrefix(got[0], "dm ") || !strings.HasSuffix(got[0], " ann->bob cid=x1") {
			t.Fatalf("bob got %v, want the dm", got)
		}
		if got := ann.take(t); len(got) != 1 || !strings.HasPrefix(got[0], "ack d1 ") || !strings.HasSuffix(got[0], " delivered=1") {
			t.Fatalf("dm answered %v, want its ack with delivered=1", got)
		}

		h.Leave(ann, "lobby")
		h.Leave(bob, "lobby")
		if got := o.presenceChanges(); !slices.Equal(got, []string{"lobby bob joined", "lobby ann left"}) {
			t.Fatalf("presence changes %v", got)
		}
		if got := o.unsubscribed(); !slices.Equal(got, []string{"lobby"}) {
			t.Fatalf("Unsubscribe calls %v", got)
		}
	})
}
