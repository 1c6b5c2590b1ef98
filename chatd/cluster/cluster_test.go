package cluster_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

func u64(v uint64) *uint64 { return &v }

func TestClusterCrossNodeDelivery(t *testing.T) {
	c := chatdtest.StartCluster(t, 3)
	clients := make([]*chatdtest.Client, 3)
	for i, n := range c.Nodes {
		clients[i] = chatdtest.Connect(t, n.URL, fmt.Sprint("user", i))
		clients[i].Join("lobby")
	}
	const msgs = 30
	for i := 1; i <= msgs; i++ {
		from := clients[i%3]
		ack := from.Say("lobby", fmt.Sprint("c", i), fmt.Sprint("m", i))
		if ack.Seq != uint64(i) || ack.Duplicate {
			t.Fatalf("ack %d = %+v", i, ack)
		}
	}
	for ci, cl := range clients {
		for i := 1; i <= msgs; i++ {
			m := cl.NextMessage()
			if m.Seq != uint64(i) || m.Text != fmt.Sprint("m", i) || m.From != fmt.Sprint("user", i%3) {
				t.Fatalf("client %d message %d = %+v", ci, i, m)
			}
		}
	}
	// Idempotent resend through another node.
	again := chatdtest.Connect(t, c.Nodes[2].URL, "user1")
	again.Join("lobby")
	if ack := again.Say("lobby", "c1", "m1"); !ack.Duplicate || ack.Seq != 1 {
		t.Fatalf("resend via another node = %+v", ack)
	}
	// Resume on another node.
	late := chatdtest.Connect(t, c.Nodes[1].URL, "late")
	j := late.Join("lobby")
	late.Close()
	for i := msgs + 1; i <= msgs+5; i++ {
		clients[0].Say("lobby", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	back := chatdtest.Connect(t, c.Nodes[2].URL, "late")
	back.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "r", Room: "lobby", Since: u64(j.Head), Epoch: j.Epoch})
	var rj protocol.Joined
	back.ExpectDecode(protocol.TypeJoined, &rj)
	if rj.Recovered == nil || !*rj.Recovered {
		t.Fatalf("resume on another node = %+v", rj)
	}
	for want := j.Head + 1; want <= msgs+5; want++ {
		if m := back.NextMessage(); m.Seq != want {
			t.Fatalf("resumed seq %d, want %d", m.Seq, want)
		}
	}
	// History from a node that has no subscriber of the room.
	quiet := chatdtest.Connect(t, c.Nodes[0].URL, "quiet")
	quiet.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "lobby", Limit: 5})
	var page protocol.HistoryPage
	quiet.ExpectDecode(protocol.TypeHistory, &page)
	if len(page.Messages) != 5 || page.Messages[4].Seq != msgs+5 {
		t.Fatalf("history page = %+v", page)
	}
	// The cluster's metrics saw it all.
	var forwards, replicated float64
	owner, _ := c.Nodes[0].Status()
	for _, n := range c.Nodes {
		n.WaitMetric(t, `chatd_cluster_members{state="active"}`, 3)
		forwards += n.Metric(t, `chatd_forwards_total{op="publish"}`)
		replicated += n.Metric(t, "chatd_replication_seconds_count")
		if len(owner.LocalRooms) > 0 && owner.LocalRooms[0].Owner == n.Name {
			n.WaitMetric(t, "chatd_rooms_owned", 1) // gauges refresh every second
		}
	}
	if forwards == 0 || replicated < msgs {
		t.Fatalf("metrics: publish forwards %v, replicated %v", forwards, replicated)
	}
}

func TestClusterPresenceAndDirectMessages(t *testing.T) {
	c := chatdtest.StartCluster(t, 3)
	ann := chatdtest.Connect(t, c.Nodes[0].URL, "ann")
	ann.Join("room")
	bob1 := chatdtest.Connect(t, c.Nodes[1].URL, "bob")
	bob2 := chatdtest.Connect(t, c.Nodes[2].URL, "bob")
	j := bob1.Join("room")
	if !slices.Contains(j.Present, "ann") || !slices.Contains(j.Present, "bob") {
		t.Fatalf("bob's snapshot = %+v", j)
	}
	var p protocol.Presence
	ann.ExpectDecode(protocol.TypePresence, &p)
	if !slices.Equal(p.Joined, []string{"bob"}) || p.Count != 2 {
		t.Fatalf("ann saw %+v", p)
	}
	// DM finds both of bob's connections, on two other nodes.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "d", To: "bob", CID: "x", Text: "hi bob"})
	var ack protocol.Ack
	ann.ExpectDecode(protocol.TypeAck, &ack)
	if ack.Delivered == nil || *ack.Delivered != 2 {
		t.Fatalf("dm ack = %+v", ack)
	}
	for _, b := range []*chatdtest.Client{bob1, bob2} {
		var dm protocol.DirectMessage
		b.ExpectDecode(protocol.TypeDM, &dm)
		if dm.Text != "hi bob" || dm.From != "ann" {
			t.Fatalf("dm = %+v", dm)
		}
	}
	// bob leaves from node 1: presence reaches ann on node 0.
	bob1.Abort()
	ann.ExpectDecode(protocol.TypePresence, &p)
	if !slices.Equal(p.Left, []string{"bob"}) {
		t.Fatalf("ann saw %+v after bob left", p)
	}
}
