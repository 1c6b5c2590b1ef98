package server_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestProtocolHistoryAfterOwnerCrash: a room that exists is never read as
// one that does not (§5.6: an empty epoch means "no such room", and a
// client holding the room's epoch then drops its messages). Three nodes,
// replication factor 2; the room has messages and no subscriber left when
// its owner crashes. The first request after the takeover is a history
// read, through a node that holds nothing of the room: it must be answered
// from the new owner's replica, with the room's epoch and messages.
func TestProtocolHistoryAfterOwnerCrash(t *testing.T) {
	t.Parallel()
	c := chatdtest.StartCluster(t, 3)
	ann := chatdtest.Connect(t, c.Nodes[0].URL, "ann")
	j := ann.Join("kept")
	for i := 1; i <= 3; i++ {
		ann.Say("kept", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	ann.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l", Room: "kept"})
	ann.Expect(protocol.TypeLeft)

	var ownerNode *chatdtest.Node
	for _, n := range c.Live() {
		if slices.Contains(ownedRooms(t, n.AdminAddr), "kept") {
			ownerNode = n
		}
	}
	if ownerNode == nil {
		t.Fatal("no node owns the room")
	}
	ownerNode.Crash()
	c.WaitConverged()

	// Read through a survivor that is not the new owner when there is one
	// (it forwards), else through the new owner itself.
	var reader *chatdtest.Node
	for _, n := range c.Live() {
		if reader == nil || !slices.Contains(ownedRooms(t, n.AdminAddr), "kept") {
			reader = n
		}
	}
	bob := chatdtest.Connect(t, reader.URL, "bob")
	var h protocol.HistoryPage
	chatdtest.Eventually(t, chatdtest.Timeout, "a history page of the room from its new owner", func() (bool, string) {
		bob.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "kept"})
		f := bob.Next()
		if f.Type == protocol.TypeError {
			return false, string(f.Raw) // unavailable while the room moves: retry (§12)
		}
		h = protocol.HistoryPage{}
		if err := f.Decode(&h); err != nil || f.Type != protocol.TypeHistory {
			t.Fatalf("reply %s", f.Raw)
		}
		return true, ""
	})
	if h.Epoch != j.Epoch || h.Head != 3 || len(h.Messages) != 3 {
		t.Fatalf("history after the owner's crash = epoch %q head %d %d messages; want epoch %q head 3 and 3 messages",
			h.Epoch, h.Head, len(h.Messages), j.Epoch)
	}
}

// TestProtocolClusterDMAckInRequestOrder: a dm's ack waits for every node,
// yet keeps its place among the replies in a cluster too (§3.4): ann's
// pipelined dm, ping and dm to herself are answered in that order, and bob,
// on the other node, gets the dm.
func TestProtocolClusterDMAckInRequestOrder(t *testing.T) {
	t.Parallel()
	c := chatdtest.StartCluster(t, 2)
	ann := chatdtest.Connect(t, c.Nodes[0].URL, "ann")
	bob := chatdtest.Connect(t, c.Nodes[1].URL, "bob")
	const rounds = 10
	var want []string
	for i := range rounds {
		ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: fmt.Sprint("d", i), To: "bob", CID: fmt.Sprint("dm-", i), Text: "hi bob"})
		ann.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: fmt.Sprint("p", i)})
		ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: fmt.Sprint("e", i), To: "ann", CID: fmt.Sprint("note-", i), Text: "to myself"})
		want = append(want, fmt.Sprint("ack d", i), fmt.Sprint("pong p", i), "dm ", fmt.Sprint("ack e", i))
	}
	for i, w := range want {
		f := ann.Next()
		var head struct{ ID string }
		if err := f.Decode(&head); err != nil {
			t.Fatal(err)
		}
		if got := f.Type + " " + head.ID; got != w {
			t.Fatalf("frame %d is %s, want %q: replies out of request order", i, f.Raw, w)
		}
		if w == fmt.Sprint("ack d", i/4) {
			var ack protocol.Ack
			if err := f.Decode(&ack); err != nil || ack.Delivered == nil || *ack.Delivered != 1 {
				t.Fatalf("ack %s: want delivered 1 (bob, on the other node)", f.Raw)
			}
		}
	}
	for i := range rounds {
		var dm protocol.DirectMessage
		bob.ExpectDecode(protocol.TypeDM, &dm)
		if dm.CID != fmt.Sprint("dm-", i) || dm.From != "ann" {
			t.Fatalf("bob's dm %d = %+v", i, dm)
		}
	}
}
