package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// Durable history in a cluster of real processes, each on its own
// --data-dir: what a client reads back after the history left memory,
// after a failover, and after a room went idle.

// startDurable starts n chatd processes with replication factor 2, each on
// its own data directory, and args.
func startDurable(t *testing.T, n int, args ...string) *chatdtest.ProcessCluster {
	t.Helper()
	return chatdtest.StartProcessClusterWith(t, n, chatdtest.DataDirs(t.TempDir()),
		append([]string{"--expected-nodes", fmt.Sprint(n), "--replication-factor", "2", "--route-timeout", "2s"}, args...)...)
}

// adminStatus reads a process's GET /admin/cluster.
func adminStatus(t *testing.T, n *chatdtest.ProcessNode) admin.ClusterStatus {
	t.Helper()
	resp, err := http.Get(n.AdminURL("/admin/cluster"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.ClusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// sendAll sends seqs from..to to room as c (cids m-<seq>, texts "text
// <seq>"), pipelined up to 50 unanswered, and checks every ack.
func sendAll(t *testing.T, c *chatdtest.Client, room string, from, to uint64) {
	t.Helper()
	const window = 50
	next := from
	for acked := from; acked <= to; acked++ {
		for ; next <= to && next < acked+window; next++ {
			c.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: fmt.Sprint("s-", next), Room: room, CID: fmt.Sprint("m-", next), Text: fmt.Sprint("text ", next)})
		}
		var a protocol.Ack
		c.ExpectDecode(protocol.TypeAck, &a)
		if a.CID != fmt.Sprint("m-", acked) || a.Seq != acked {
			t.Fatalf("ack %+v, want m-%d at seq %d", a, acked, acked)
		}
	}
}

// checkWalk fails unless w is exactly seqs 1..head of what sendAll sent.
func checkWalk(t *testing.T, what string, w chatdtest.HistoryWalk, epoch string, head uint64) {
	t.Helper()
	if len(w.Problems) > 0 {
		t.Fatalf("%s: %v", what, w.Problems)
	}
	if w.First.Epoch != epoch || w.First.Head != head || w.First.Oldest != 1 || uint64(len(w.Messages)) != head {
		t.Fatalf("%s: %d messages, newest page %+v (more %v); want 1..%d in epoch %s", what, len(w.Messages), w.First, w.First.More, head, epoch)
	}
	for i, m := range w.Messages {
		if m.Seq != uint64(i+1) || m.Text != fmt.Sprint("text ", i+1) || m.CID != fmt.Sprint("m-", i+1) {
			t.Fatalf("%s: message %d is seq %d %s %q", what, i, m.Seq, m.CID, m.Text)
		}
	}
}

// TestDurablePagingAcrossMemoryAndDisk: with --history-size 20 a room of
// 500 messages keeps 20 in its owner's memory and the rest on disk; paging
// back from the head with history, 50 and then 7 a page (pages that
// straddle the boundary), through each of three nodes (the owner, its
// replica, the third), returns exactly seqs 1..500, gapless, in order, with
// more:false only at seq 1.
func TestDurablePagingAcrossMemoryAndDisk(t *testing.T) {
	t.Parallel()
	c := startDurable(t, 3, "--history-size", "20")
	const room, n = "paged", 500
	ann := chatdtest.Connect(t, c.Nodes[0].URL, "ann")
	epoch := ann.Join(room).Epoch
	sendAll(t, ann, room, 1, n)
	for _, node := range c.All() {
		r := chatdtest.Connect(t, node.URL, "reader-"+node.Name)
		for _, limit := range []int{50, 7} {
			checkWalk(t, fmt.Sprintf("history through %s, %d a page", node.Name, limit), r.WalkHistory(room, limit), epoch, n)
		}
	}
}

// TestDurableFailoverReplica: with data dirs, a room whose owner is killed
// is taken over by its replica in a new term, and the third node becomes
// its replica: a fresh copy synced from a log whose terms start above seq
// 1. The room must take messages again within failure detection (plus the
// route timeout and slack), and its whole history must be read back
// through both survivors.
func TestDurableFailoverReplica(t *testing.T) {
	t.Parallel()
	c := startDurable(t, 3)
	timing := chatdtest.LocalGossipTiming(3)
	names := c.LiveNames()
	room := "failover"
	owners := rendezvous.Owners(room, names, 3)
	owner, replica, third := c.ByName(owners[0]), c.ByName(owners[1]), c.ByName(owners[2])
	ann := chatdtest.Connect(t, third.URL, "ann")
	epoch := ann.Join(room).Epoch
	sendAll(t, ann, room, 1, 30)

	c.Kill(owner)
	chatdtest.Eventually(t, testtime.Bound(timing.Detection+timing.SuspicionMax), "the owner to be declared dead", func() (bool, string) {
		for _, n := range []*chatdtest.ProcessNode{replica, third} {
			if st := adminStatus(t, n); slices.Contains(st.Active, owner.Name) {
				return false, n.Name + " still lists " + owner.Name
			}
		}
		return true, ""
	})
	sendRetrying(t, ann, room, 31, 60, testtime.Bound(timing.Detection+2*time.Second), replica)
	for _, n := range []*chatdtest.ProcessNode{replica, third} {
		r := chatdtest.Connect(t, n.URL, "reader-"+n.Name)
		checkWalk(t, "history through "+n.Name, r.WalkHistory(room, 50), epoch, 60)
	}
}

// sendRetrying sends seqs from..to to room as c, one at a time, each sent
// again with its cid after a backoff while it is refused (a room being
// taken over answers unavailable), and fails the test when they are not
// all acknowledged, at their seqs, within within; the failure shows
// owner's /admin/rooms.
func sendRetrying(t *testing.T, c *chatdtest.Client, room string, from, to uint64, within time.Duration, owner *chatdtest.ProcessNode) {
	t.Helper()
	deadline := time.Now().Add(within)
	for seq := from; seq <= to; {
		cid := fmt.Sprint("m-", seq)
		c.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: cid, Room: room, CID: cid, Text: fmt.Sprint("text ", seq)})
		f := c.Next()
		for f.Type == protocol.TypeMessage || f.Type == protocol.TypePresence {
			f = c.Next()
		}
		switch {
		case f.Type == protocol.TypeAck:
			var a protocol.Ack
			_ = f.Decode(&a)
			if a.Seq != seq {
				t.Fatalf("ack %+v, want seq %d", a, seq)
			}
			seq++
		case time.Now().After(deadline):
			t.Fatalf("the room takes no message for %v: seq %d answered %s; %s's rooms: %s", within, seq, f.Raw, owner.Name, roomStats(t, owner))
		default:
			time.Sleep(100 * time.Millisecond) // backoff before the resend
		}
	}
}

// roomStats reads a process's GET /admin/rooms, for failure messages.
func roomStats(t *testing.T, n *chatdtest.ProcessNode) string {
	t.Helper()
	resp, err := http.Get(n.AdminURL("/admin/rooms"))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var body admin.Rooms
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%+v", body.Rooms)
}

// TestDurableNewOwnerAfterFailover: a room taken over after its owner's
// SIGKILL carries a second term that starts above seq 1; a node added
// next, which the ring names the room's owner, has no copy and claims it
// from the survivors' copies. It must start from them and take messages
// (in a cluster on data dirs, adding a node must not take a room down).
func TestDurableNewOwnerAfterFailover(t *testing.T) {
	t.Parallel()
	c := startDurable(t, 3)
	timing := chatdtest.LocalGossipTiming(4)
	names := c.LiveNames()
	room := ""
	for i := 0; room == ""; i++ {
		r := fmt.Sprint("moved-", i)
		if rendezvous.Owner(r, append(slices.Clone(names), "proc-3")) == "proc-3" {
			room = r
		}
	}
	owners := rendezvous.Owners(room, names, 3)
	owner, replica, third := c.ByName(owners[0]), c.ByName(owners[1]), c.ByName(owners[2])
	ann := chatdtest.Connect(t, third.URL, "ann")
	epoch := ann.Join(room).Epoch
	sendAll(t, ann, room, 1, 5)
	c.Kill(owner)
	// Taken over by the replica in term 2, which starts at seq 6.
	sendRetrying(t, ann, room, 6, 10, testtime.Bound(timing.Detection+timing.SuspicionMax+2*time.Second), replica)
	c.Restart(owner)
	c.WaitConverged()
	sendRetrying(t, ann, room, 11, 15, testtime.Bound(timing.Detection+2*time.Second), owner)
	added := c.AddNode()
	if got := rendezvous.Owner(room, c.LiveNames()); got != added.Name {
		t.Fatalf("the ring names %s the owner of %s, not %s", got, room, added.Name)
	}
	sendRetrying(t, ann, room, 16, 20, testtime.Bound(timing.Detection+2*time.Second), added)
	for _, n := range c.All() {
		r := chatdtest.Connect(t, n.URL, "reader-"+n.Name)
		checkWalk(t, "history through "+n.Name, r.WalkHistory(room, 50), epoch, 20)
	}
}

// TestDurableIdleRoomInCluster: in three processes on data dirs with
// --room-idle-ttl 2s, a room everybody left leaves its owner's memory
// (GET /admin/rooms on every node stops listing it) within the TTL and the
// node's one-second sweep, plus slack; the next history read through a
// node that is neither owner nor replica, and the next join, find every
// message in the same epoch, and the next message takes the next seq.
func TestDurableIdleRoomInCluster(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	c := startDurable(t, 3, "--room-idle-ttl", ttl.String(), "--history-size", "20")
	room := "idle-cluster"
	owners := rendezvous.Owners(room, c.LiveNames(), 3)
	ann := chatdtest.Connect(t, c.ByName(owners[0]).URL, "ann")
	epoch := ann.Join(room).Epoch
	sendAll(t, ann, room, 1, 60)
	ann.Close()
	chatdtest.Eventually(t, testtime.Bound(ttl+time.Second)+testtime.Slack, "the idle room to leave every node's memory", func() (bool, string) {
		for _, n := range c.All() {
			if s := roomStats(t, n); strings.Contains(s, "Room:"+room+" ") {
				return false, n.Name + " still holds it: " + s
			}
		}
		return true, ""
	})
	third := c.ByName(owners[2])
	bob := chatdtest.Connect(t, third.URL, "bob")
	checkWalk(t, "history of the idle room through "+third.Name, bob.WalkHistory(room, 25), epoch, 60)
	if j := bob.Join(room); j.Epoch != epoch || j.Head != 60 || j.Oldest != 1 {
		t.Fatalf("join of the idle room = %+v, want epoch %s, head 60, oldest 1", j, epoch)
	}
	if a := bob.Say(room, "m-61", "text 61"); a.Seq != 61 || a.MID != epoch+"-61" {
		t.Fatalf("first message after the idle time: %+v, want seq 61 in epoch %s", a, epoch)
	}
}
