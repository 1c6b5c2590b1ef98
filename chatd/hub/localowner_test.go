package hub

import (
	"maps"
	"slices"
	"strings"
	"sync"
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

// lockedOwner is a local owner that answers under a lock of its own, as
// chatd's owner service answers under the room's lock (and, when a claim
// ends, its service lock): any Router call the hub makes from inside an
// answer would wait for that lock for good. Its calls record their order.
type lockedOwner struct {
	fakeRouter
	t     *testing.T
	mu    sync.Mutex // the owner's own lock, held while it answers
	calls []string   // "subscribe lobby", "unsubscribe lobby", in order
}

func (o *lockedOwner) enter(op, room string) bool {
	if !o.mu.TryLock() {
		o.t.Errorf("%s %s called from inside one of the owner's answers: an owner on this node would deadlock", op, room)
		return false
	}
	defer o.mu.Unlock()
	o.fakeRouter.mu.Lock()
	o.calls = append(o.calls, op+" "+room)
	o.fakeRouter.mu.Unlock()
	return true
}

func (o *lockedOwner) Subscribe(room string, users []string, reply func(feed.State, error)) {
	if o.enter("subscribe", room) {
		o.fakeRouter.Subscribe(room, users, reply)
	}
}

func (o *lockedOwner) Unsubscribe(room string) {
	if o.enter("unsubscribe", room) {
		o.fakeRouter.Unsubscribe(room)
	}
}

func (o *lockedOwner) PresenceChange(room, user string, joined bool) {
	if o.enter("presence", room) {
		o.fakeRouter.PresenceChange(room, user, joined)
	}
}

// answer makes the owner's answer to call under its lock.
func (o *lockedOwner) answer(call *subscribeCall, st feed.State) {
	o.mu.Lock()
	defer o.mu.Unlock()
	call.reply(st, nil)
}

func (o *lockedOwner) order() []string {
	o.fakeRouter.mu.Lock()
	defer o.fakeRouter.mu.Unlock()
	return slices.Clone(o.calls)
}

// TestNoRouterCallFromInsideAnOwnersAnswer: every join of a room leaves
// while its owner, on this node, holds the subscription (it is claiming
// the room); when the owner answers, under its own lock, the hub must undo
// the subscription without calling the owner from inside that answer (chatd
// deadlocked there after every pod of a cluster was deleted at once: the
// room's requests hung on every node), and a join that comes right after
// subscribes only once the undo is done, so the undo cannot overtake it.
func TestNoRouterCallFromInsideAnOwnersAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newTestHub(Config{})
		o := &lockedOwner{t: t}
		h.SetRouter(o)
		ann := newConn("ann1", "ann")
		h.Join(ann, JoinRequest{ID: "j1", Room: "lobby"})
		h.Leave(ann, "lobby")
		ann.expect(t, "error not_joined id=j1 room=lobby")
		first := o.onlyNewSubscribe(t, 0)

		// The owner answers, under its lock; meanwhile bob joins.
		o.answer(first, state("lobby", "e1", 1, 0, "ann"))
		bob := newConn("bob1", "bob")
		h.Join(bob, JoinRequest{ID: "j2", Room: "lobby"})
		synctest.Wait()
		o.answer(o.onlyNewSubscribe(t, 1), state("lobby", "e1", 1, 0, "bob"))
		bob.expect(t, "joined lobby id=j2 epoch=e1 head=0 oldest=1 count=1 present=bob")
		if got := o.order(); !slices.Equal(got, []string{"subscribe lobby", "unsubscribe lobby", "subscribe lobby"}) {
			t.Fatalf("calls to the owner %v, want the undo between the two subscriptions", got)
		}
	})
}
