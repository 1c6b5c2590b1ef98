//go:build partition

package partition

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/deliverycheck"
)

// The container faults under the many-room checker (deliverycheck.MultiRoom,
// the one chatd/faults runs against processes): a room owner paused with
// `docker pause` for longer than failure detection while its clients stay
// connected, and a node cut off the cluster network and healed. Each adds a
// row to the table printed at the end of the run.

// Traffic of these tests: chatd's default rate limit (20 frames/s per
// connection) applies in the containers, so the publishers' pace (one per
// node) stays under it.
const (
	trafficRooms = 30
	trafficRate  = 45
	progressAcks = 3
)

// results collects the reports for the table TestMain prints.
var results struct {
	sync.Mutex
	reps  []deliverycheck.Report
	notes []string
}

// containerRun is a dockerCluster under a MultiRoom's traffic.
type containerRun struct {
	t            *testing.T
	c            *dockerCluster
	k            *deliverycheck.MultiRoom
	rooms        []string
	detection    time.Duration
	suspicionMax time.Duration
}

// startTraffic starts a publisher and a subscriber per node, every client
// joined to every room, and returns once every room takes messages.
func startTraffic(t *testing.T, c *dockerCluster, prefix string) *containerRun {
	t.Helper()
	detection, suspicionMax := gossipTiming(len(c.nodes))
	r := &containerRun{t: t, c: c, detection: detection, suspicionMax: suspicionMax}
	for i := 0; i < trafficRooms; i++ {
		r.rooms = append(r.rooms, fmt.Sprintf("%s-%02d", prefix, i))
	}
	r.k = deliverycheck.NewMultiRoom(t, deliverycheck.MultiRoomConfig{
		Live: c.liveURLs, Rooms: r.rooms, Publishers: len(c.nodes), Subscribers: len(c.nodes), Rate: trafficRate,
		FailureDetection: detection, RouteTimeout: routeTimeout, NodeName: c.nameOf,
	})
	t.Logf("%d rooms, %d msgs/s; failure detection %v, silence bound %v", len(r.rooms), trafficRate, detection, r.k.Config().SilenceBound())
	r.k.Start()
	r.progress("traffic start", nil)
	return r
}

// progress waits until every room of rooms (all when nil) took
// progressAcks new messages, reporting (not stopping) when they do not.
func (r *containerRun) progress(what string, rooms []string) {
	r.t.Helper()
	if err := r.k.WaitProgress(rooms, progressAcks); err != nil {
		r.t.Errorf("%s: rooms do not take messages: %v", what, err)
	}
}

// busiestOwner picks the node owning the most traffic rooms, with them.
func (r *containerRun) busiestOwner() (*node, []string) {
	r.t.Helper()
	var best *node
	var bestRooms []string
	for _, n := range r.c.nodes {
		st, err := n.status()
		if err != nil {
			r.t.Fatal(err)
		}
		var owned []string
		for _, room := range r.rooms {
			if slices.Contains(st.OwnedRooms, room) {
				owned = append(owned, room)
			}
		}
		if len(owned) > len(bestRooms) {
			best, bestRooms = n, owned
		}
	}
	if best == nil {
		r.t.Fatal("no node owns any traffic room")
	}
	return best, bestRooms
}

// staleViews tells the checker that every node but victim still counts it
// alive, so it routes to it, until waitDropped sees it drop victim: the
// silence bound runs from then on.
func (r *containerRun) staleViews(victim *node) {
	for _, n := range r.c.nodes {
		if n != victim {
			r.k.Impair(n.url())
		}
	}
}

// waitDropped waits until every other node has dropped victim from its
// active members, within the longest a suspicion lasts after the longest
// wait for a probe.
func (r *containerRun) waitDropped(victim *node) {
	r.t.Helper()
	within := r.detection + r.suspicionMax
	start := time.Now()
	done := map[string]bool{}
	deadline := time.Now().Add(within)
	for {
		why := ""
		for _, n := range r.c.nodes {
			if n == victim || done[n.name] {
				continue
			}
			st, err := n.status()
			switch {
			case err != nil:
				why = err.Error()
			case slices.Contains(st.Active, victim.name):
				why = fmt.Sprintf("%s still lists %s", n.name, victim.name)
			default:
				done[n.name] = true
				r.k.Restore(n.url())
				r.t.Logf("%s dropped %s after %.1fs", n.name, victim.name, time.Since(start).Seconds())
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			for _, n := range r.c.nodes {
				if n != victim {
					r.k.Restore(n.url())
				}
			}
			r.t.Errorf("%s never declared dead within %v: %s", victim.name, within, why)
			return
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}

// observe keeps the traffic going for d, waking on acks: the window in
// which a subscriber left silent would show.
func (r *containerRun) observe(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := r.k.WaitProgress(nil, 1); err != nil {
			r.t.Errorf("traffic stopped while observing: %v", err)
			return
		}
	}
}

// finish checks the run and keeps its report for the table.
func (r *containerRun) finish(scenario, note string) {
	r.t.Helper()
	rep := r.k.Verify(scenario)
	results.Lock()
	defer results.Unlock()
	results.reps = append(results.reps, rep)
	results.notes = append(results.notes, fmt.Sprintf("- **%s**: %s", scenario, note))
}

// TestPauseOwnerUnderTraffic pauses (docker pause: the cgroup freezer, a
// process that stops without noticing) the node owning the most rooms,
// with a publisher and a subscriber connected to it, until the other nodes
// declared it dead and took its rooms over, then unpauses it. Nothing
// acknowledged may be lost, no seq reused, and its clients must hear from
// every room again (or be told recovered:false) within the silence bound.
func TestPauseOwnerUnderTraffic(t *testing.T) {
	c := startCluster(t)
	r := startTraffic(t, c, "pause")
	victim, owned := r.busiestOwner()
	t.Logf("docker pause %s (owner of %d of %d rooms, clients attached)", victim.name, len(owned), len(r.rooms))
	r.k.Impair(victim.url())
	c.setAway(victim, true)
	r.k.Fault("docker pause "+victim.name, owned)
	start := time.Now()
	docker(t, "pause", victim.container)
	r.staleViews(victim)
	r.waitDropped(victim)
	r.progress("rooms of the paused "+victim.name+" taken over", owned)
	paused := time.Since(start)
	docker(t, "unpause", victim.container)
	r.k.Restore(victim.url())
	c.setAway(victim, false)
	t.Logf("docker unpause %s after %.1fs", victim.name, paused.Seconds())
	for _, n := range c.nodes {
		waitActive(t, n, c.names, r.detection+r.suspicionMax)
	}
	r.observe(r.k.Config().SilenceBound())
	r.progress("after the unpause", nil)
	r.finish("docker pause of the owner, clients attached", fmt.Sprintf("docker pause of %s (owner of %d of %d rooms, a publisher and a subscriber attached) for %.1fs, until the other nodes had declared it dead and its rooms took messages from their new owners", victim.name, len(owned), len(r.rooms), paused.Seconds()))
}

// TestPartitionHealUnderTraffic cuts the node owning the most rooms off
// the cluster network (its clients still reach it) until the majority took
// its rooms over and it sees itself alone, then reconnects it. Its clients
// cannot be served while it is cut off (its sends are refused for lack of
// quorum); from the merge on, the silence bound applies to them again.
func TestPartitionHealUnderTraffic(t *testing.T) {
	c := startCluster(t)
	r := startTraffic(t, c, "cut")
	victim, owned := r.busiestOwner()
	t.Logf("cutting %s (owner of %d of %d rooms, clients attached) off the cluster network", victim.name, len(owned), len(r.rooms))
	r.k.Impair(victim.url())
	c.setAway(victim, true)
	r.k.Fault("cut "+victim.name+" off", owned)
	start := time.Now()
	docker(t, "network", "disconnect", c.clusterNet, victim.container)
	r.staleViews(victim)
	r.waitDropped(victim)
	r.progress("the majority took the rooms of "+victim.name+" over", owned)
	waitActive(t, victim, []string{victim.name}, r.detection+r.suspicionMax)
	cut := time.Since(start)
	r.k.Fault("heal", owned)
	docker(t, "network", "connect", "--ip", victim.clusterIP, c.clusterNet, victim.container)
	for _, n := range c.nodes {
		waitActive(t, n, c.names, r.detection+r.suspicionMax)
	}
	r.k.Restore(victim.url())
	c.setAway(victim, false)
	t.Logf("healed after %.1fs cut off; every node sees all three", cut.Seconds())
	r.observe(r.k.Config().SilenceBound())
	r.progress("after the heal", nil)
	r.finish("partition and heal", fmt.Sprintf("%s (owner of %d of %d rooms, a publisher and a subscriber attached) cut off the cluster network for %.1fs, until the majority had taken its rooms over and it saw itself alone, then reconnected", victim.name, len(owned), len(r.rooms), cut.Seconds()))
}
