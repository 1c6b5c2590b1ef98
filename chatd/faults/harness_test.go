//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/deliverycheck"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// The cluster and traffic every scenario runs. These are configuration,
// not waits: every wait below is derived from them and from the gossip
// profile's failure detection (chatdtest.LocalGossipTiming).
const (
	// routeTimeout is the nodes' --route-timeout: short, so that clients
	// learn quickly that a room is unavailable and retry.
	routeTimeout = 2 * time.Second
	// roomCount rooms are under traffic in every scenario.
	roomCount = 30
	// rate is the messages per second the publishers send together.
	rate = 120
	// progressAcks is how many new acks every room must take to show it
	// works again after a fault.
	progressAcks = 3
)

// setup is the shape of a scenario's cluster.
type setup struct {
	nodes int
	// expected is --expected-nodes (nodes when zero).
	expected int
	// factor is --replication-factor.
	factor int
	// perNode, when set, gives each node flags of its own (its
	// --data-dir: chatdtest.DataDirs), at every start and restart.
	perNode func(name string) []string
	// extra are flags every node gets on top of the scenario's own.
	extra []string
	// expectedFile, when set, gives the nodes --expected-nodes-file (this
	// file, holding expected) instead of --expected-nodes, so that the
	// scenario can resize the cluster as the operator does (setExpected).
	expectedFile string
}

// run is one scenario in progress: its cluster, its traffic and its
// random source.
type run struct {
	t      *testing.T
	name   string
	rng    *rand.Rand
	s      setup
	c      *chatdtest.ProcessCluster
	k      *deliverycheck.MultiRoom
	timing chatdtest.GossipTiming
	rooms  []string
	admin  *http.Client
}

// roomsNamed returns roomCount room names for a scenario.
func roomsNamed(prefix string) []string {
	out := make([]string, roomCount)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%02d", prefix, i)
	}
	return out
}

// nodeNames are the names ProcessCluster gives n processes.
func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprint("proc-", i)
	}
	return out
}

// start runs the scenario's cluster and traffic (one publisher and one
// subscriber per node) and returns once every room takes messages.
func start(t *testing.T, name string, s setup, rooms []string) *run {
	t.Helper()
	if s.expected == 0 {
		s.expected = s.nodes
	}
	timing := chatdtest.LocalGossipTiming(s.nodes)
	expected := []string{"--expected-nodes", strconv.Itoa(s.expected)}
	if s.expectedFile != "" {
		if err := os.WriteFile(s.expectedFile, []byte(strconv.Itoa(s.expected)), 0o644); err != nil {
			t.Fatal(err)
		}
		expected = []string{"--expected-nodes-file", s.expectedFile}
	}
	args := append(append(expected, "--replication-factor", strconv.Itoa(s.factor), "--route-timeout", routeTimeout.String()), s.extra...)
	c := chatdtest.StartProcessClusterWith(t, s.nodes, s.perNode, args...)
	r := &run{t: t, name: name, rng: rngFor(name), s: s, c: c, timing: timing, rooms: rooms,
		admin: &http.Client{Timeout: timing.Detection}}
	r.k = deliverycheck.NewMultiRoom(t, deliverycheck.MultiRoomConfig{
		Live: c.LiveURLs, Rooms: rooms, Publishers: s.nodes, Subscribers: s.nodes, Rate: rate,
		FailureDetection: timing.Detection, RouteTimeout: routeTimeout, NodeName: r.nodeAt,
	})
	t.Logf("%s: %d nodes, --replication-factor %d, --expected-nodes %d, %d rooms, %d msgs/s; failure detection %v, silence bound %v",
		name, s.nodes, s.factor, s.expected, len(rooms), rate, timing.Detection, r.k.Config().SilenceBound())
	r.k.Start()
	r.progress("traffic start", nil)
	return r
}

// nodeAt names the process serving url.
func (r *run) nodeAt(url string) string { return r.c.NameOf(url) }

// progress waits until every room of rooms (all when nil) took
// progressAcks new messages; a failure is reported and the scenario goes
// on, so that the checker's report says what went wrong.
func (r *run) progress(what string, rooms []string) {
	r.t.Helper()
	if err := r.k.WaitProgress(rooms, progressAcks); err != nil {
		r.t.Errorf("%s: rooms do not take messages: %v", what, err)
	}
}

// status reads a node's /admin/cluster with a timeout (a frozen node
// never answers).
func (r *run) status(n *chatdtest.ProcessNode) (admin.ClusterStatus, error) {
	var st admin.ClusterStatus
	resp, err := r.admin.Get(n.AdminURL("/admin/cluster"))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /admin/cluster on %s: %s", n.Name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("GET /admin/cluster on %s: %w", n.Name, err)
	}
	return st, nil
}

// ownedBy lists the traffic rooms node owns, as its admin API says.
func (r *run) ownedBy(n *chatdtest.ProcessNode) []string {
	r.t.Helper()
	st, err := r.status(n)
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, room := range r.rooms {
		if slices.Contains(st.OwnedRooms, room) {
			out = append(out, room)
		}
	}
	return out
}

// busiestOwner picks the live node that owns the most traffic rooms (ties
// broken by the seed), with those rooms.
func (r *run) busiestOwner() (*chatdtest.ProcessNode, []string) {
	r.t.Helper()
	var best *chatdtest.ProcessNode
	var bestRooms []string
	names := r.c.LiveNames()
	r.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, name := range names {
		n := r.c.ByName(name)
		if owned := r.ownedBy(n); len(owned) > len(bestRooms) {
			best, bestRooms = n, owned
		}
	}
	if best == nil {
		r.t.Fatal("no node owns any traffic room")
	}
	return best, bestRooms
}

// heldBy lists the traffic rooms of which name holds a copy (as owner or
// replica) in a view of nodes.
func (r *run) heldBy(name string, nodes []string) []string {
	var out []string
	for _, room := range r.rooms {
		if slices.Contains(rendezvous.Owners(room, nodes, r.s.factor), name) {
			out = append(out, room)
		}
	}
	return out
}

// staleViews tells the checker that, from now on, every live node but the
// victims holds a view that still lists the victims as alive: until a node
// declares them dead it keeps routing to them, and its subscribers of the
// victims' rooms cannot hear anything. waitDropped ends each node's window
// when it has dropped them, so that the silence bound runs from the moment
// the subscriber's own node noticed the fault. (On a loaded two-core
// machine memberlist's detection varies from its typical time up to the
// longest suspicion; the bound is about what happens after it.)
func (r *run) staleViews(victims ...string) {
	for _, n := range r.c.All() {
		if !slices.Contains(victims, n.Name) && slices.Contains(r.c.LiveNames(), n.Name) {
			r.k.Impair(n.URL)
		}
	}
}

// waitDropped waits until every live node has dropped names from its
// active members: failure detection. The deadline is the longest a
// suspicion can last (no confirmation) after the longest wait for a probe
// (times the tests' time scale).
func (r *run) waitDropped(names ...string) {
	r.t.Helper()
	within := testtime.Bound(r.timing.Detection + r.timing.SuspicionMax)
	start := time.Now()
	done := map[string]bool{}
	err := r.eventually(within, func() (bool, string) {
		why := ""
		for _, n := range r.c.All() {
			if slices.Contains(names, n.Name) || !slices.Contains(r.c.LiveNames(), n.Name) || done[n.Name] {
				continue
			}
			st, err := r.status(n)
			if err != nil {
				why = err.Error()
				continue
			}
			if i := slices.IndexFunc(names, func(v string) bool { return slices.Contains(st.Active, v) }); i >= 0 {
				why = fmt.Sprintf("%s still lists %s as active", n.Name, names[i])
				continue
			}
			done[n.Name] = true
			r.k.Restore(n.URL)
			r.t.Logf("%s dropped %v after %.1fs", n.Name, names, time.Since(start).Seconds())
		}
		return why == "", why
	})
	for _, n := range r.c.All() {
		if !slices.Contains(names, n.Name) {
			r.k.Restore(n.URL) // a victim's own window (frozen) is its fault's to close
		}
	}
	if err != nil {
		r.t.Errorf("%v never declared dead: %v", names, err)
	}
}

// waitCopies waits until every traffic room is held (owned or replicated)
// by factor live nodes again, as their admin APIs say: after it, losing
// one more node loses no room.
func (r *run) waitCopies() {
	r.t.Helper()
	start := time.Now()
	err := r.eventually(r.k.Config().SilenceBound(), func() (bool, string) {
		live := r.c.LiveNames()
		want := min(r.s.factor, len(live))
		// A room has its copies when a live node serves it, in sync (every
		// replica its view names holds the whole log in its term), with
		// R−1 live replicas. Counting the nodes that hold the room is not
		// enough: a new owner still claiming it holds its old replica copy
		// too.
		synced := map[string]bool{}
		for _, name := range live {
			rooms, err := r.ownerRooms(r.c.ByName(name))
			if err != nil {
				return false, err.Error()
			}
			for _, st := range rooms {
				replicas := slices.DeleteFunc(slices.Clone(st.Replicas), func(n string) bool { return !slices.Contains(live, n) })
				if st.State == "serving" && st.InSync && len(replicas) >= want-1 {
					synced[st.Room] = true
				}
			}
		}
		for _, room := range r.rooms {
			if !synced[room] {
				return false, fmt.Sprintf("room %s is not served with %d in-sync copies yet", room, want)
			}
		}
		return true, ""
	})
	if err != nil {
		r.t.Errorf("rooms never got back to %d copies: %v", r.s.factor, err)
		return
	}
	r.t.Logf("every room back to %d copies after %.1fs", r.s.factor, time.Since(start).Seconds())
}

// ownerRooms is GET /admin/rooms on n: the rooms it owns, with their
// state, replicas and whether they have every copy.
func (r *run) ownerRooms(n *chatdtest.ProcessNode) ([]owner.RoomStat, error) {
	var rooms admin.Rooms
	resp, err := r.admin.Get(n.AdminURL("/admin/rooms"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/rooms on %s: %s", n.Name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&rooms); err != nil {
		return nil, fmt.Errorf("GET /admin/rooms on %s: %w", n.Name, err)
	}
	return rooms.Rooms, nil
}

// converge waits until every live node is ready and sees exactly the live
// ones, reporting (not stopping) when that never happens: a restarted node
// has to join, settle and take its rooms back.
func (r *run) converge(what string) {
	r.t.Helper()
	start := time.Now()
	within := testtime.Bound(2*r.timing.Detection) + r.k.Config().SilenceBound()
	if err := r.eventually(within, r.c.Converged); err != nil {
		r.t.Errorf("%s: the cluster did not converge: %v", what, err)
		return
	}
	r.t.Logf("%s: converged on %v after %.1fs", what, r.c.LiveNames(), time.Since(start).Seconds())
}

// eventually polls cond until it holds or within passes. It is for state
// that gives no event to wait on: other processes', read over HTTP.
func (r *run) eventually(within time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %s", within, why)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// observe keeps the traffic going for d, waking on acks: the window in
// which a subscriber left silent would show.
func (r *run) observe(d time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := r.k.WaitProgress(nil, 1); err != nil {
			r.t.Errorf("traffic stopped while observing: %v", err)
			return
		}
	}
}

// finish checks the run and records its report for the table.
func (r *run) finish(note string) {
	r.t.Helper()
	rep := r.k.Verify(r.name)
	record(rep, note)
}

// setExpected rewrites the scenario's --expected-nodes-file, as the
// operator rewrites its ConfigMap, and waits until every live node applies
// the new size (the nodes re-read the file every 2 s).
func (r *run) setExpected(n int) {
	r.t.Helper()
	if r.s.expectedFile == "" {
		r.t.Fatal("setExpected needs setup.expectedFile")
	}
	if err := os.WriteFile(r.s.expectedFile, []byte(strconv.Itoa(n)), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.s.expected = n
	if err := r.eventually(testtime.Timeout, func() (bool, string) {
		for _, name := range r.c.LiveNames() {
			st, err := r.status(r.c.ByName(name))
			if err != nil {
				return false, err.Error()
			}
			if st.ExpectedNodes != n {
				return false, fmt.Sprintf("%s applies %d expected nodes", name, st.ExpectedNodes)
			}
		}
		return true, ""
	}); err != nil {
		r.t.Fatalf("expected nodes %d not applied: %v", n, err)
	}
	r.t.Logf("every node expects %d nodes", n)
}
