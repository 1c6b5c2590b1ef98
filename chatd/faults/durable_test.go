//go:build faults

package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// Durable history (issue 12) under faults: every node has its own
// --data-dir, the same one at every restart, and nothing acknowledged may
// be lost even when every node dies at once. Beyond the checker's own
// checks, these scenarios fail on any announced gap, any room seen under a
// second epoch (with disks, no copy is ever lost together), and any
// acknowledged message missing from the room's history read back page by
// page after the faults.

// TestDurable runs the durable scenarios, one cluster each, one table row
// each (-run 'TestDurable/<name>$').
func TestDurable(t *testing.T) {
	for _, sc := range durableScenarios {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			sc.run(t, sc.name)
			t.Logf("%s took %.0fs", sc.name, time.Since(start).Seconds())
		})
	}
}

var durableScenarios = []struct {
	name string
	run  func(t *testing.T, name string)
}{
	{"durable-kill9-loop", durableKillLoop},
	{"durable-full-restart", func(t *testing.T, name string) {
		r := start(t, name, durableSetup(t, 3, 2), roomsNamed(name))
		r.finishDurable(r.killAllRestart())
	}},
	{"durable-drain-all-at-once", func(t *testing.T, name string) {
		r := start(t, name, durableSetup(t, 3, 2), roomsNamed(name))
		r.finishDurable(r.drainAllRestart())
	}},
	{"durable-scale-3-5-3", durableScale},
	{"durable-replica-disk-full", replicaDiskFull},
}

// durableSetup is a cluster of n nodes, replication factor factor, each
// node on its own data directory.
func durableSetup(t *testing.T, n, factor int) setup {
	return setup{nodes: n, factor: factor, perNode: chatdtest.DataDirs(t.TempDir())}
}

// durableKills is how many single-node SIGKILLs the loop runs:
// DURABLE_KILLS, or 20.
func durableKills(t *testing.T) int {
	if s := os.Getenv("DURABLE_KILLS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("DURABLE_KILLS=%q: want a count", s)
		}
		return n
	}
	return 20
}

// durableKillLoop SIGKILLs one node of three at a time, in turn, and
// restarts it on its data directory: most often at once, before the others
// could notice it was gone (it comes back with its disk and must take its
// rooms back), every fourth time once the others declared it dead and took
// its rooms over. Then all three at once.
func durableKillLoop(t *testing.T, name string) {
	r := start(t, name, durableSetup(t, 3, 2), roomsNamed(name))
	kills := durableKills(t)
	names := r.c.LiveNames()
	waited := 0
	for i := range kills {
		victim := r.c.ByName(names[i%len(names)])
		waitDead := i%4 == 3
		if waitDead {
			waited++
		}
		r.killRestartAt(victim, waitDead)
		r.t.Logf("kill %d of %d (%s) done; %d messages acknowledged so far", i+1, kills, victim.Name, r.k.Acked())
	}
	r.finishDurable(fmt.Sprintf("%d SIGKILLs of one node in turn, each restarted on its data dir (%d once declared dead, %d at once); then %s",
		kills, waited, kills-waited, r.killAllRestart()))
}

// killRestartAt SIGKILLs victim and restarts it on its data directory, at
// once or (waitDead) once every other node declared it dead and its rooms
// took messages again.
func (r *run) killRestartAt(victim *chatdtest.ProcessNode, waitDead bool) {
	r.t.Helper()
	held := r.heldBy(victim.Name, r.c.LiveNames())
	r.k.Fault("SIGKILL "+victim.Name, held)
	r.c.Kill(victim)
	r.staleViews(victim.Name)
	if waitDead {
		r.waitDropped(victim.Name)
		r.progressWhileDown("after SIGKILL of "+victim.Name, held)
	}
	r.restart(victim)
	for _, n := range r.c.All() {
		r.k.Restore(n.URL) // converged: every node sees the restarted one
	}
}

// progressWhileDown is progress for the rooms a node that is still down
// held: their other copies take them over, and new replicas are brought to
// the log (a replica with an older copy too), so they take messages while
// the node is down.
func (r *run) progressWhileDown(what string, rooms []string) {
	r.t.Helper()
	r.progress(what, rooms)
}

// killAllRestart SIGKILLs every node at once, under traffic, and restarts
// them all on their data directories.
func (r *run) killAllRestart() string {
	r.t.Helper()
	nodes := r.c.All()
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
		r.k.Impair(n.URL)
	}
	acked := r.k.Acked()
	r.k.Fault("SIGKILL of every node", nil)
	r.t.Logf("SIGKILL of %v at once, %d messages acknowledged", names, acked)
	r.c.KillAll(nodes...)
	start := time.Now()
	for _, n := range nodes {
		r.c.Restart(n)
	}
	r.converge("restart of every node")
	for _, n := range r.c.All() {
		r.k.Restore(n.URL)
	}
	r.progress("after the restart of every node", nil)
	r.t.Logf("every room took messages again %.1fs after the restarts began", time.Since(start).Seconds())
	return fmt.Sprintf("SIGKILL of all %d nodes at once (%d messages acknowledged before), all restarted on their data dirs", len(nodes), acked)
}

// drainAllRestart sends SIGTERM to every node at once, under traffic, as
// deleting every pod of a StatefulSet does, and restarts each node on its
// data directory as soon as its own process exited, while the others may
// still drain: the first one back meets only draining members, or none,
// for a while.
func (r *run) drainAllRestart() string {
	r.t.Helper()
	nodes := r.c.All()
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
		r.k.Impair(n.URL)
	}
	acked := r.k.Acked()
	r.k.Fault("SIGTERM of every node", nil)
	r.t.Logf("SIGTERM of %v at once, %d messages acknowledged", names, acked)
	start := time.Now()
	r.c.TerminateAll(nodes...)
	exited := make(chan *chatdtest.ProcessNode, len(nodes))
	for _, n := range nodes {
		go func() {
			<-n.Exited()
			exited <- n
		}()
	}
	// The first node to exit comes back at once and meets, for twice the
	// failure detection, only members that are draining or gone (in
	// Kubernetes the other pods may take that long to drain); the others
	// come back after that.
	var order []string
	for i := range nodes {
		n := <-exited
		if i == 1 {
			<-time.After(2 * r.timing.Detection)
		}
		order = append(order, fmt.Sprintf("%s at %.1fs", n.Name, time.Since(start).Seconds()))
		r.c.Restart(n)
	}
	r.t.Logf("restarted in turn: %v", order)
	r.converge("restart of every node")
	for _, n := range r.c.All() {
		r.k.Restore(n.URL)
	}
	r.progress("after the restart of every node", nil)
	r.t.Logf("every room took messages again %.1fs after the SIGTERMs", time.Since(start).Seconds())
	return fmt.Sprintf("SIGTERM of all %d nodes at once (%d messages acknowledged before), each restarted on its data dir as soon as it exited", len(nodes), acked)
}

// durableScale grows the cluster from 3 to 5 nodes and back, one node at a
// time, as the operator does: the expected size raised before a node is
// added, lowered once a node drained (SIGTERM: it hands its rooms off);
// the stored history is read back whole after each step.
func durableScale(t *testing.T, name string) {
	s := durableSetup(t, 3, 2)
	s.expectedFile = filepath.Join(t.TempDir(), "expected-nodes")
	r := start(t, name, s, roomsNamed(name))
	r.checkStored("before scaling")
	for n := 4; n <= 5; n++ {
		r.setExpected(n)
		r.addNode()
	}
	r.checkStored("after scaling to 5")
	all := r.c.All()
	for _, n := range []*chatdtest.ProcessNode{all[4], all[3]} {
		owned := r.ownedBy(n)
		r.k.Fault("SIGTERM "+n.Name+" (scale-down)", owned)
		r.c.Terminate(n)
		r.progress("after the drain of "+n.Name, owned)
		r.setExpected(len(r.c.LiveNames()))
	}
	r.converge("scale-down to 3")
	r.checkStored("after scaling back to 3")
	r.finishDurable("3 → 5 nodes, one at a time (expected size raised first) → 3 (each drained with SIGTERM, then the expected size lowered), each node on its own data dir")
}

// checkStored reads every room's whole history through the live nodes in
// turn and fails the test for every acknowledged message missing from it.
func (r *run) checkStored(when string) {
	r.t.Helper()
	live := r.c.LiveURLs()
	readers := map[string]*chatdtest.Client{}
	for i, room := range r.rooms {
		url := live[i%len(live)]
		c := readers[url]
		if c == nil {
			c = chatdtest.Connect(r.t, url, "history-reader")
			readers[url] = c
		}
		w := c.WalkHistory(room, 200)
		if len(w.Problems) > 0 {
			r.t.Errorf("%s: history of %s through %s: %s", when, room, r.nodeAt(url), strings.Join(w.Problems, "; "))
		}
		if w.First.Oldest != 1 {
			r.t.Errorf("%s: history of %s through %s starts at oldest %d, want 1 (no retention here)", when, room, r.nodeAt(url), w.First.Oldest)
		}
		if p := r.k.CheckHistory(room, w.First.Epoch, w.First.Head, w.Messages); len(p) > 0 {
			r.t.Errorf("%s: history of %s through %s (epoch %s, head %d, %d messages) lacks acknowledged messages:\n  %s",
				when, room, r.nodeAt(url), w.First.Epoch, w.First.Head, len(w.Messages), strings.Join(p, "\n  "))
		}
	}
	for _, c := range readers {
		c.Close()
	}
}

// finishDurable checks the run like finish, then what durability adds: no
// announced gap, one epoch per room, the whole history stored.
func (r *run) finishDurable(note string) {
	r.t.Helper()
	rep := r.k.Verify(r.name)
	if rep.AnnouncedGaps > 0 {
		r.t.Errorf("%d joined frames announced a gap (recovered:false in the same epoch): with disks every resume should recover", rep.AnnouncedGaps)
	}
	for room, epochs := range r.k.Epochs() {
		if len(epochs) != 1 {
			r.t.Errorf("room %s was seen under epochs %v: with disks a room keeps its epoch", room, epochs)
		}
	}
	r.checkStored("at the end")
	if refused := r.k.Refusals(); len(refused) > 0 {
		r.t.Logf("sends and joins refused and retried: %v", refused)
	}
	record(rep, note)
}

// replicaDiskFull fills the disk of a node that is the replica, never the
// owner, of every room under traffic (its --data-dir on a small tmpfs,
// the others on the machine's disk), below --storage-reserve-bytes, for a
// while, then frees it. An owner acknowledges a message only once every
// replica stored it: while the replica refuses, senders must get an error
// (storage_full or unavailable, retried with the same cid), never an ack;
// once space is back, every room takes messages again without a restart,
// and nothing acknowledged is missing anywhere.
func replicaDiskFull(t *testing.T, name string) {
	const reserve = 16 << 20
	names := nodeNames(3)
	victim := names[rngFor(name+"/victim").IntN(len(names))]
	mnt := chatdtest.MountTmpfs(t, "64m")
	base := t.TempDir()
	dataDirs := func(node string) []string {
		if node == victim {
			return []string{"--data-dir", filepath.Join(mnt, "data")}
		}
		return []string{"--data-dir", filepath.Join(base, node)}
	}
	var rooms []string
	for i := 0; len(rooms) < roomCount; i++ {
		room := name + "-" + strconv.Itoa(i)
		if cp := rendezvous.Owners(room, names, 2); cp[1] == victim {
			rooms = append(rooms, room)
		}
	}
	r := start(t, name, setup{nodes: 3, factor: 2, perNode: dataDirs, extra: []string{"--storage-reserve-bytes", strconv.Itoa(reserve)}}, rooms)
	vn := r.c.ByName(victim).Server()

	r.k.Fault("disk of "+victim+" full", nil)
	ballast := filepath.Join(mnt, "ballast")
	size := chatdtest.FillTo(t, ballast, reserve/2)
	r.t.Logf("%s's disk filled: ballast of %d MiB, %d KiB free, reserve %d KiB", victim, size>>20, chatdtest.FreeBytes(t, mnt)>>10, reserve>>10)
	if err := r.eventually(testtime.Timeout, func() (bool, string) {
		n := vn.Metric(t, `chatd_store_writes_refused_total{reason="full"}`)
		return n > 0, fmt.Sprintf("%s refused %v writes", victim, n)
	}); err != nil {
		r.t.Fatalf("%s's store never refused a write on a full disk: %v", victim, err)
	}
	ackedAtFull := r.k.Acked()
	refusedAtFull := r.k.Refusals()
	r.probeSend(rendezvous.Owner(rooms[0], names), rooms[0])
	// The fault lasts as long as a sender waits for an answer before it
	// sends again (route timeout + 5 s, docs/protocol.md §5.5), twice: long
	// enough for every send in flight to be answered, and for an ack that
	// should not come to come.
	hold := time.NewTimer(2 * (routeTimeout + 5*time.Second))
	<-hold.C
	ackedFull := r.k.Acked() - ackedAtFull
	refused := r.k.Refusals()
	var seen []string
	for code, n := range refused {
		if d := n - refusedAtFull[code]; d > 0 {
			seen = append(seen, fmt.Sprintf("%s ×%d", code, d))
		}
	}
	refusedWrites := vn.Metric(t, `chatd_store_writes_refused_total{reason="full"}`)
	r.t.Logf("while %s's disk was full (%v): %d messages acknowledged, sends answered %v; %s's store refused %v writes",
		victim, 2*(routeTimeout+5*time.Second), ackedFull, seen, victim, refusedWrites)
	if ackedFull > 0 {
		r.t.Errorf("%d messages were acknowledged while the only replica of their rooms refused every write: acknowledged without being stored on every replica", ackedFull)
	}
	if len(seen) == 0 {
		r.t.Errorf("no send was refused while %s's disk was full: the senders waited in silence", victim)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	r.k.Fault("disk of "+victim+" freed", nil)
	r.progress("after freeing "+victim+"'s disk", nil)
	r.finishDurable(fmt.Sprintf("%s, the replica (never the owner) of every room, on a 64 MiB tmpfs filled below its 16 MiB reserve for %v, then freed; sends meanwhile: %d acknowledged, answered %v",
		victim, 2*(routeTimeout+5*time.Second), ackedFull, seen))
}

// probeSend sends one message to room through node, as a client of its
// own, and reports the answer and how long it took: what a sender sees.
// An ack fails the test (the caller knows the room cannot store).
func (r *run) probeSend(node, room string) {
	r.t.Helper()
	c := chatdtest.Connect(r.t, r.c.ByName(node).URL, "probe")
	defer c.Close()
	c.Join(room)
	start := time.Now()
	c.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "probe", Room: room, CID: "probe-1", Text: "probe"})
	for {
		_ = c.SetReadDeadline(time.Now().Add(2 * (routeTimeout + 5*time.Second)))
		f, err := c.Read()
		if err != nil {
			r.t.Errorf("probe send to %s through %s: no answer: %v", room, node, err)
			return
		}
		switch f.Type {
		case protocol.TypeAck:
			r.t.Errorf("probe send to %s through its owner %s acknowledged after %v: %s", room, node, time.Since(start), f.Raw)
			return
		case protocol.TypeError:
			r.t.Logf("probe send to %s through its owner %s answered after %v: %s", room, node, time.Since(start).Round(time.Millisecond), f.Raw)
			return
		}
	}
}
