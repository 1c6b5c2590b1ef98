package server_test

// Node-wide limits that keep one client, or many, from exhausting a node:
// the cap on rooms (--max-rooms-per-node, error node_rooms_full) and the
// DM dedupe windows, one per sender (--dedupe-window).

import (
	"fmt"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

func TestNodeRoomCap(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-rooms-per-node", "2")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	ann.Join("r1")
	bob.Join("r2")
	// A third room, from either client, is refused with the documented
	// code, naming the request and the room.
	for i, c := range []*chatdtest.Client{ann, bob} {
		id := fmt.Sprint("j", i)
		c.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: id, Room: "r3"})
		e := c.ExpectError(protocol.CodeNodeRoomsFull)
		if e.ID != id || e.Room != "r3" {
			t.Fatalf("refusal %+v, want id %s, room r3", e, id)
		}
	}
	srv.WaitMetric(t, `chatd_error_frames_total{code="node_rooms_full"}`, 2)
	// Rooms the node serves stay open to everyone, and the refused join
	// did not use up one of the connection's rooms: ann still chats.
	ann.Join("r2")
	bob.Join("r1")
	if ack := ann.Say("r1", "c1", "still here"); ack.Seq != 1 {
		t.Fatalf("ack %+v", ack)
	}
	if m := bob.NextMessage(); m.Text != "still here" {
		t.Fatalf("bob got %+v", m)
	}
	// Once a room has no client left on the node, its place is free again.
	for _, c := range []*chatdtest.Client{ann, bob} {
		c.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l", Room: "r2"})
		c.Expect(protocol.TypeLeft)
	}
	chatdtest.Eventually(t, chatdtest.Timeout, "r3 joinable once r2 is empty", func() (bool, string) {
		ann.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "again", Room: "r3"})
		f := ann.Next()
		if f.Type == protocol.TypeJoined {
			return true, ""
		}
		return false, string(f.Raw)
	})
}

// dmAck sends a DM to a user with no connection and returns its ack.
func dmAck(t *testing.T, c *chatdtest.Client, id, cid string) protocol.Ack {
	t.Helper()
	c.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: id, To: "nobody-home", CID: cid, Text: "x"})
	var ack protocol.Ack
	c.ExpectDecode(protocol.TypeAck, &ack)
	if ack.ID != id || ack.CID != cid {
		t.Fatalf("ack %+v for id %s cid %s", ack, id, cid)
	}
	return ack
}

// Each sender has a DM dedupe window of its own: a flood of new ids from
// many senders does not make the node forget a quiet user's id, so her
// resend is still recognised; her own window holds --dedupe-window ids.
func TestDMDedupePerSender(t *testing.T) {
	t.Parallel()
	const window = 2 // per sender; the node holds 16 times as many
	srv := chatdtest.Start(t, "--dedupe-window", fmt.Sprint(window), "--rate", "100000", "--rate-burst", "100000")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	first := dmAck(t, ann, "a1", "ann-1")
	if first.Duplicate {
		t.Fatalf("first send a duplicate: %+v", first)
	}
	// Three times the node's total, from senders holding a full window
	// each (more than ann's one id).
	senders := 3 * 16
	for i := 0; i < senders; i++ {
		m := chatdtest.Connect(t, srv.URL, fmt.Sprint("mallory-", i))
		for j := 0; j < window; j++ {
			dmAck(t, m, "m", fmt.Sprint("flood-", j))
		}
		m.Close()
	}
	if again := dmAck(t, ann, "a2", "ann-1"); !again.Duplicate || again.MID != first.MID {
		t.Fatalf("ann's resend after the flood: %+v, want a duplicate of %s", again, first.MID)
	}
	// Her own new ids push her oldest out of her window.
	for j := 2; j <= window+1; j++ {
		dmAck(t, ann, "n", fmt.Sprint("ann-", j))
	}
	if again := dmAck(t, ann, "a3", "ann-1"); again.Duplicate {
		t.Fatalf("ann's id survived %d newer ids of hers: %+v", window, again)
	}
}
