package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/deliverycheck"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

const (
	handoffsIn  = `chatd_handoffs_total{direction="in",result="ok"}`
	handoffsOut = `chatd_handoffs_total{direction="out",result="ok"}`
)

// TestProcessesDrainOwner runs the checker against three real chatd
// processes and stops the busy room's owner with SIGTERM mid-traffic. The
// owner must hand the room over (not leave it to a replica's takeover), and
// close its clients with 1012 so that they resume elsewhere; no
// acknowledged message may be lost, duplicated or reordered at any
// subscriber, whether it stayed on its node or had to move.
func TestProcessesDrainOwner(t *testing.T) {
	c := chatdtest.StartProcessCluster(t, 3, "--expected-nodes", "3")
	room := "process-drain-room"
	owner := c.ByName(rendezvous.Owner(room, c.LiveNames()))
	heir := c.ByName(heirOf(room, c.LiveNames(), owner.Name))
	k := deliverycheck.NewChecker(t, c.LiveURLs, room)
	// Publishers run until StopPublishing, so that traffic spans the
	// change however long it takes.
	wait := k.RunTraffic(3, 2, 1_000_000, 20*time.Millisecond)
	w := watchFrom(t, owner.URL, room)
	k.WaitAcked(20)
	inBefore := heir.Server().Metric(t, handoffsIn)
	t.Logf("terminating %s (owner of %s) with SIGTERM after %d acks; %s takes over", owner.Name, room, k.Acked(), heir.Name)
	c.Terminate(owner)
	// A handoff, not a failover: the heir took the room from the drained
	// owner's snapshot. Had the handoff failed, the owner would have left
	// with the room at its drain deadline and the heir would have promoted
	// its replica, which counts no handoff.
	waitMetricAtLeast(t, heir.Server(), handoffsIn, inBefore+1)
	t.Logf("%s drained and handed %s to %s; %d acks so far", owner.Name, room, heir.Name, k.Acked())
	w.resumeOn(t, c.LiveURLs()[0])
	c.WaitConverged()
	k.WaitAcked(k.Acked() + 20)
	k.StopPublishing()
	wait()
	logHandoffs(t, c)
	k.Verify()
}

// TestProcessesAddNode runs the checker against three real chatd processes
// and adds a fourth mid-traffic, for a room the fourth will own: the room
// must move to it by a handoff from the old owner, with no acknowledged
// message lost, duplicated or reordered.
func TestProcessesAddNode(t *testing.T) {
	// The expected size is 4 from the start, as the operator raises it
	// before it adds a pod; three of four is still a majority.
	c := chatdtest.StartProcessCluster(t, 3, "--expected-nodes", "4")
	room := roomOwnedBy([]string{"proc-0", "proc-1", "proc-2", "proc-3"}, "proc-3")
	old := c.ByName(rendezvous.Owner(room, c.LiveNames()))
	k := deliverycheck.NewChecker(t, c.LiveURLs, room)
	wait := k.RunTraffic(3, 2, 1_000_000, 20*time.Millisecond) // until StopPublishing
	k.WaitAcked(20)
	outBefore := old.Server().Metric(t, handoffsOut)
	t.Logf("adding proc-3 (the next owner of %s, now on %s) after %d acks", room, old.Name, k.Acked())
	added := c.AddNode()
	if owner := rendezvous.Owner(room, c.LiveNames()); owner != added.Name {
		t.Fatalf("%s is owned by %s after the add, want %s", room, owner, added.Name)
	}
	// The room moved by a handoff out of the old owner into the new node,
	// which had no copy to start from.
	waitMetricAtLeast(t, added.Server(), handoffsIn, 1)
	waitMetricAtLeast(t, old.Server(), handoffsOut, outBefore+1)
	waitOwned(t, added.Server(), room)
	t.Logf("%s handed %s to %s; %d acks so far", old.Name, room, added.Name, k.Acked())
	k.WaitAcked(k.Acked() + 20)
	k.StopPublishing()
	wait()
	logHandoffs(t, c)
	k.Verify()
}

// logHandoffs logs every live process's handoff counters: a room that
// moved more than once shows here.
func logHandoffs(t *testing.T, c *chatdtest.ProcessCluster) {
	t.Helper()
	for _, name := range c.LiveNames() {
		s := c.ByName(name).Server()
		t.Logf("%s: handoffs in %v, out %v", name, s.Metric(t, handoffsIn), s.Metric(t, handoffsOut))
	}
}

// waitMetricAtLeast polls a node's /metrics until series reaches min,
// failing the test after chatdtest.Timeout.
func waitMetricAtLeast(t *testing.T, s *chatdtest.Server, series string, min float64) {
	t.Helper()
	chatdtest.Eventually(t, chatdtest.Timeout, fmt.Sprintf("%s: metric %s at least %v", s.Addr, series, min), func() (bool, string) {
		v := s.Metric(t, series)
		return v >= min, fmt.Sprintf("it is %v", v)
	})
}

// waitOwned waits until the node's admin API lists room among the rooms it
// owns.
func waitOwned(t *testing.T, s *chatdtest.Server, room string) {
	t.Helper()
	n := &chatdtest.Node{Server: s}
	chatdtest.Eventually(t, chatdtest.Timeout, fmt.Sprintf("%s to own %s", s.Addr, room), func() (bool, string) {
		st, err := n.Status()
		return err == nil && slices.Contains(st.OwnedRooms, room), fmt.Sprintf("owned %v, err %v", st.OwnedRooms, err)
	})
}

// witness is a subscriber kept apart from the checker's so that the test
// sees how it moves off a draining node: it must be closed with 1012 (a
// drain, not a dropped connection), having received the room in order, and
// resume on another node exactly where it stopped.
type witness struct {
	room  string
	epoch string
	done  chan struct{}
	// Set by the reader before done is closed.
	last      uint64
	closeCode int
	readErr   error
	problems  []string
}

// watchFrom joins room on url and reads it in the background until the
// server closes the connection.
func watchFrom(t *testing.T, url, room string) *witness {
	t.Helper()
	cl := chatdtest.Connect(t, url, "witness")
	j := cl.Join(room)
	w := &witness{room: room, epoch: j.Epoch, last: j.Head, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			_ = cl.SetReadDeadline(time.Now().Add(time.Minute))
			f, err := cl.Read()
			if err != nil {
				w.readErr = err
				w.closeCode, _, _ = client.CloseCode(err)
				return
			}
			if f.Type != protocol.TypeMessage {
				continue
			}
			var m protocol.Message
			if err := f.Decode(&m); err != nil {
				w.problems = append(w.problems, fmt.Sprintf("undecodable message %s", f.Raw))
				continue
			}
			if m.Seq != w.last+1 {
				w.problems = append(w.problems, fmt.Sprintf("seq %d after %d on the draining node", m.Seq, w.last))
			}
			w.last = m.Seq
		}
	}()
	return w
}

// resumeOn checks how the witness's connection ended and resumes it on url:
// the join must be recovered, and the messages since its last one must
// follow, in order, up to the head the join reported.
func (w *witness) resumeOn(t *testing.T, url string) {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(chatdtest.Timeout):
		t.Fatal("the draining node never closed the witness's connection")
	}
	if w.closeCode != protocol.CloseServiceRestart {
		t.Fatalf("witness's connection ended with %v (close code %d), want 1012", w.readErr, w.closeCode)
	}
	if len(w.problems) > 0 {
		t.Fatalf("witness on the draining node: %v", w.problems)
	}
	cl := chatdtest.Connect(t, url, "witness")
	since := w.last
	cl.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "resume", Room: w.room, Since: &since, Epoch: w.epoch})
	var j protocol.Joined
	cl.ExpectDecode(protocol.TypeJoined, &j)
	if j.Recovered == nil || !*j.Recovered || j.Epoch != w.epoch || j.Head < since {
		t.Fatalf("resume from %d of epoch %s = %+v, want recovered in the same epoch", since, w.epoch, j)
	}
	for want := since + 1; want <= j.Head; want++ {
		if m := cl.NextMessage(); m.Seq != want {
			t.Fatalf("after resuming from %d: seq %d, want %d", since, m.Seq, want)
		}
	}
	t.Logf("witness: closed with 1012 at seq %d, resumed on %s up to %d", since, url, j.Head)
}
