package hub

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// ackFor is the owner's answer to a publish of the message seq of epoch.
func ackFor(epoch string, seq uint64) protocol.Ack {
	return protocol.Ack{Type: protocol.TypeAck, Room: "lobby", CID: "c", Seq: seq, MID: mid(epoch, seq), TS: int64(seq)}
}

// publish sends as c and returns the owner's reply function.
func publish(t *testing.T, h *Hub, r *fakeRouter, c *fakeConn, id string) func(protocol.Ack, error) {
	t.Helper()
	seen := len(r.publishCalls())
	h.Publish(c, id, "lobby", "c-"+id, "text of "+id, time.Now())
	calls := r.publishCalls()
	if len(calls) != seen+1 {
		t.Fatalf("%d Publish calls, want %d", len(calls), seen+1)
	}
	p := calls[seen]
	if p.room != "lobby" || p.user != c.user || p.cid != "c-"+id || p.text != "text of "+id {
		t.Fatalf("Publish(%s, %s, %s, %q), want lobby, %s, c-%s", p.room, p.user, p.cid, p.text, c.user, id)
	}
	return p.reply
}

// TestAckWaitsForItsMessage: the sender's connection gets its message
// before its ack. An ack that reaches the node before the message is held
// (and nothing else waits for it) until the message is delivered, then
// queued right after it; an ack whose message is here already goes at
// once. Errors and sends to rooms not joined are answered at once.
func TestAckWaitsForItsMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, bob := newConn("ann1", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann, bob)

		publish(t, h, r, ann, "s1")(ackFor("e1", 1), nil)
		ann.expect(t)
		h.Deliver(push("lobby", "e1", 1))
		ann.expect(t, "message e1-1", "ack s1 e1-1")
		bob.expect(t, "message e1-1")

		publish(t, h, r, ann, "s3")(ackFor("e1", 3), nil)
		h.Deliver(push("lobby", "e1", 2))
		ann.expect(t, "message e1-2")
		h.Deliver(push("lobby", "e1", 3))
		ann.expect(t, "message e1-3", "ack s3 e1-3")

		h.Deliver(push("lobby", "e1", 4))
		ann.expect(t, "message e1-4")
		publish(t, h, r, ann, "s4")(ackFor("e1", 4), nil)
		ann.expect(t, "ack s4 e1-4")

		publish(t, h, r, ann, "s5")(protocol.Ack{}, errors.New("owner unreachable"))
		ann.expect(t, "error unavailable id=s5 room=lobby")

		carl := newConn("carl1", "carl")
		h.Publish(carl, "s6", "lobby", "c6", "not joined", time.Now())
		carl.expect(t, "error not_joined id=s6 room=lobby")
		if n := len(r.publishCalls()); n != 4 {
			t.Fatalf("%d Publish calls, want 4: a send from a connection not in the room reached the owner", n)
		}
		bob.expect(t, msgs("e1", 2, 4)...)
	})
}

// TestAckWaitsForTheResyncThatBringsItsMessage: acks whose messages are
// missing or held behind a gap wait for the owner's State that fills the
// gap, and follow their messages.
func TestAckWaitsForTheResyncThatBringsItsMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann)

		h.Deliver(push("lobby", "e1", 2))
		synctest.Wait()
		resync := r.onlyNewSubscribe(t, 1)
		publish(t, h, r, ann, "s1")(ackFor("e1", 1), nil)
		publish(t, h, r, ann, "s2")(ackFor("e1", 2), nil)
		ann.expect(t)

		resync.reply(state("lobby", "e1", 1, 2, "ann"), nil)
		ann.expect(t, "message e1-1", "message e1-2", "ack s1 e1-1", "ack s2 e1-2")
	})
}

// TestHeldAckOfAConnectionThatLeft: a connection that left the room no
// longer gets its messages, so its acks wait for nothing: one held is
// released at the next delivery, one arriving after the leave goes at once.
func TestHeldAckOfAConnectionThatLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann, ann2, bob := newConn("ann1", "ann"), newConn("ann2", "ann"), newConn("bob1", "bob")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 1), ann, ann2, bob)

		publish(t, h, r, ann, "s3")(ackFor("e1", 3), nil)
		reply4 := publish(t, h, r, ann2, "s4")
		if !h.Leave(ann, "lobby") || !h.Leave(ann2, "lobby") {
			t.Fatal("Leave of a subscribed connection reported false")
		}
		reply4(ackFor("e1", 4), nil)
		ann2.expect(t, "ack s4 e1-4")

		ann.expect(t)
		h.Deliver(push("lobby", "e1", 2))
		ann.expect(t, "ack s3 e1-3")
		bob.expect(t, "message e1-2")
	})
}

// TestHeldAckOfTheOldEpochReleasedWhenTheRoomRestarts: an ack of an epoch
// the room left will never see its message: it goes out when the copy
// restarts, after the joined frame that tells the client to reload.
func TestHeldAckOfTheOldEpochReleasedWhenTheRoomRestarts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 3, "ann"), ann)

		publish(t, h, r, ann, "s5")(ackFor("e1", 5), nil)
		ann.expect(t)
		h.Deliver(push("lobby", "e2", 1))
		ann.expect(t, "joined lobby id= epoch=e2 head=0 oldest=1 count=1 recovered=false", "message e2-1", "ack s5 e1-5")
	})
}

// TestAckOfTheNewEpochWaitsForTheRestart: the room restarted in a new epoch
// (every copy was lost) and the sender's ack of the new epoch reaches this
// node before the copy here learnt of the restart: the ack waits for its
// message in the new epoch, after the joined frame of the restart.
func TestAckOfTheNewEpochWaitsForTheRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, r := newTestHub(Config{})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 3, "ann"), ann)

		publish(t, h, r, ann, "s1")(ackFor("e2", 1), nil)
		ann.expect(t)
		// A last message of the old epoch, still on its way here: the
		// ack of the new epoch keeps waiting.
		h.Deliver(push("lobby", "e1", 4))
		ann.expect(t, "message e1-4")
		h.Deliver(push("lobby", "e2", 1))
		ann.expect(t, "joined lobby id= epoch=e2 head=0 oldest=1 count=1 recovered=false", "message e2-1", "ack s1 e2-1")
	})
}

// TestHeldAckSentAfterAckHoldMax: an ack whose message never comes is sent
// anyway once it has waited AckHoldMax: not before, and (on the bubble's
// clock, which moves only when everything waits) exactly then. Its message,
// arriving later, is delivered without a second ack.
func TestHeldAckSentAfterAckHoldMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hold = 50 * time.Millisecond
		h, r := newTestHub(Config{AckHoldMax: hold})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann)
		<-ann.queued // the joined frame's signal

		start := time.Now()
		publish(t, h, r, ann, "s2")(ackFor("e1", 2), nil)
		time.Sleep(hold - time.Nanosecond)
		synctest.Wait()
		ann.expect(t)

		<-ann.queued
		if waited := time.Since(start); waited != hold {
			t.Fatalf("the held ack went out after %v, want AckHoldMax (%v)", waited, hold)
		}
		ann.expect(t, "ack s2 e1-2")

		h.Deliver(push("lobby", "e1", 1))
		h.Deliver(push("lobby", "e1", 2))
		ann.expect(t, msgs("e1", 1, 2)...)
	})
}

// TestEveryHeldAckSentWithinAckHoldMax: AckHoldMax bounds the wait of every
// held ack, not only of the first one held.
func TestEveryHeldAckSentWithinAckHoldMax(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hold = 50 * time.Millisecond
		h, r := newTestHub(Config{AckHoldMax: hold})
		ann := newConn("ann1", "ann")
		joinReady(t, h, r, "lobby", state("lobby", "e1", 1, 0), ann)
		<-ann.queued

		start := time.Now()
		publish(t, h, r, ann, "s2")(ackFor("e1", 2), nil)
		time.Sleep(hold / 2)
		publish(t, h, r, ann, "s3")(ackFor("e1", 3), nil)

		<-ann.queued
		ann.expect(t, "ack s2 e1-2")
		<-ann.queued
		ann.expect(t, "ack s3 e1-3")
		if waited := time.Since(start) - hold/2; waited != hold {
			t.Fatalf("the second held ack went out after %v, want AckHoldMax (%v)", waited, hold)
		}
	})
}
