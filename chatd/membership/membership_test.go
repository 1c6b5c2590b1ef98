package membership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

var (
	// convergeTimeout bounds gossip convergence on loopback; it is
	// generous because the race detector and parallel tests share two cores.
	convergeTimeout = testtime.Bound(15 * time.Second)
	// failureTimeout bounds failure detection of a crashed node with the
	// local profile (probe 1s, suspicion >= 3s): usually ~5s.
	failureTimeout = testtime.Bound(30 * time.Second)
	// logTimeout bounds the wait for a log line written right after a view
	// change the test has seen, and a graceful Leave.
	logTimeout = testtime.Bound(5 * time.Second)
)

const (
	// notReadyReason is what Ready must say when alone because of a
	// key or label mismatch.
	notReadyReason = "no other member reachable: check the gossip key and cluster label"
)

func TestClusterConverges(t *testing.T) {
	t.Parallel()
	const n = 4

	first := startNode(t, func() Config { c := testConfig("node-0"); c.Bootstrap = true; return c }())
	// Watch node-0's versions while the others join: each delivered view
	// must carry a higher version than the previous one.
	ch, unsubscribe := first.Subscribe()
	defer unsubscribe()
	var versions []uint64
	var vmu sync.Mutex
	done := make(chan struct{})
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for {
			select {
			case v := <-ch:
				vmu.Lock()
				versions = append(versions, v.Version)
				vmu.Unlock()
			case <-done:
				return
			}
		}
	}()

	nodes := []*testNode{first}
	want := []string{"node-0"}
	for i := 1; i < n; i++ {
		cfg := testConfig(fmt.Sprintf("node-%d", i))
		// Mix single-seed and multi-seed configurations.
		for _, s := range nodes[:min(len(nodes), i%3+1)] {
			cfg.Seeds = append(cfg.Seeds, s.GossipAddr())
		}
		nodes = append(nodes, startNode(t, cfg))
		want = append(want, cfg.NodeName)
	}

	var views []View
	for _, nd := range nodes {
		views = append(views, waitView(t, nd, convergeTimeout, fmt.Sprintf("all %d members", n), hasNames(want...)))
	}
	close(done)
	<-collected

	for i, v := range views {
		if v.Self != nodes[i].name {
			t.Errorf("%s: view Self = %q", nodes[i].name, v.Self)
		}
		if !slices.IsSortedFunc(v.Members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("%s: members not sorted: %v", nodes[i].name, v.Names())
		}
		for _, nd := range nodes {
			m, ok := v.Get(nd.name)
			if !ok {
				t.Fatalf("%s: Get(%s) missing", nodes[i].name, nd.name)
			}
			if m.GossipAddr != nd.GossipAddr() {
				t.Errorf("%s sees %s at %s, it advertises %s", nodes[i].name, nd.name, m.GossipAddr, nd.GossipAddr())
			}
			if m.Meta != (Meta{RPCAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", State: StateJoining, Proto: 1}) {
				t.Errorf("%s sees %s with meta %+v", nodes[i].name, nd.name, m.Meta)
			}
		}
		if _, ok := v.Get("nobody"); ok {
			t.Errorf("Get(nobody) found a member")
		}
		if got := v.CountByState(); got[StateJoining] != n || got[StateActive] != 0 || got[StateDraining] != 0 {
			t.Errorf("%s: CountByState = %v", nodes[i].name, got)
		}
	}

	// node-0's view changed at least once per joiner after its first
	// version. The subscriber may have seen fewer views (delivery
	// coalesces), but never an older one after a newer one.
	if views[0].Version < n {
		t.Errorf("node-0 is at version %d after %d joins", views[0].Version, n-1)
	}
	vmu.Lock()
	defer vmu.Unlock()
	if len(versions) == 0 {
		t.Error("node-0's subscriber saw no view")
	}
	for i := 1; i < len(versions); i++ {
		if versions[i] <= versions[i-1] {
			t.Errorf("versions not increasing: %v", versions)
			break
		}
	}
	for _, nd := range nodes {
		waitReady(t, nd, convergeTimeout)
	}
}

func TestStatePropagates(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, nil)
	all := []string{"node-0", "node-1", "node-2"}
	for _, nd := range nodes {
		waitView(t, nd, convergeTimeout, "all members", hasNames(all...))
	}

	stateOf := func(name string, s State) func(View) bool {
		return func(v View) bool { m, ok := v.Get(name); return ok && m.Meta.State == s }
	}

	if err := nodes[1].SetState(StateActive); err != nil {
		t.Fatalf("SetState(active): %v", err)
	}
	// The local view reflects the change before SetState returns.
	if m, _ := nodes[1].View().Get("node-1"); m.Meta.State != StateActive {
		t.Fatalf("local view not updated: %+v", m)
	}
	for _, nd := range nodes {
		v := waitView(t, nd, convergeTimeout, "node-1 active", stateOf("node-1", StateActive))
		if got := v.Active(); len(got) != 1 || got[0].Name != "node-1" {
			t.Errorf("%s: Active() = %v", nd.name, got)
		}
		if got := v.CountByState(); got[StateActive] != 1 || got[StateJoining] != 2 {
			t.Errorf("%s: CountByState = %v", nd.name, got)
		}
		// Other meta fields survive the state change.
		if m, _ := v.Get("node-1"); m.Meta.RPCAddr != "127.0.0.1:1" || m.Meta.Proto != 1 {
			t.Errorf("%s: node-1 meta %+v", nd.name, m.Meta)
		}
	}

	if err := nodes[0].SetState(StateActive); err != nil {
		t.Fatalf("SetState(active): %v", err)
	}
	if err := nodes[1].SetState(StateDraining); err != nil {
		t.Fatalf("SetState(draining): %v", err)
	}
	for _, nd := range nodes {
		v := waitView(t, nd, convergeTimeout, "node-0 active, node-1 draining", func(v View) bool {
			return stateOf("node-0", StateActive)(v) && stateOf("node-1", StateDraining)(v)
		})
		if got := v.Active(); len(got) != 1 || got[0].Name != "node-0" {
			t.Errorf("%s: Active() = %v", nd.name, got)
		}
		if got := v.CountByState(); got[StateActive] != 1 || got[StateDraining] != 1 || got[StateJoining] != 1 {
			t.Errorf("%s: CountByState = %v", nd.name, got)
		}
	}

	if err := nodes[2].SetState("sleeping"); err == nil {
		t.Error("SetState(invalid) succeeded")
	}
}

func TestLeaveRemovesMember(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, nil)
	for _, nd := range nodes {
		waitView(t, nd, convergeTimeout, "all members", hasNames("node-0", "node-1", "node-2"))
	}
	start := time.Now()
	if err := nodes[2].Leave(logTimeout); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	for _, nd := range nodes[:2] {
		waitView(t, nd, convergeTimeout, "node-2 gone", hasNames("node-0", "node-1"))
	}
	t.Logf("leave seen by all in %s", time.Since(start).Round(time.Millisecond))
	nodes[0].logs.waitLog(t, logTimeout, `"member gone`, "member=node-2")
	if ok, reason := nodes[2].Ready(); ok || !strings.Contains(reason, "left") {
		t.Errorf("after Leave: Ready = %v, %q", ok, reason)
	}
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	if err := nodes[2].SetState(StateActive); !errors.Is(err, ErrLeft) {
		t.Errorf("SetState after Leave = %v, want ErrLeft", err)
	}
}

func TestCrashDetected(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, nil)
	for _, nd := range nodes {
		waitView(t, nd, convergeTimeout, "all members", hasNames("node-0", "node-1", "node-2"))
	}
	start := time.Now()
	if err := nodes[2].Shutdown(); err != nil { // no Leave: looks like a crash
		t.Fatalf("Shutdown: %v", err)
	}
	for _, nd := range nodes[:2] {
		waitView(t, nd, failureTimeout, "node-2 declared dead", hasNames("node-0", "node-1"))
	}
	t.Logf("crash detected by all in %s", time.Since(start).Round(time.Millisecond))
	nodes[0].logs.waitLog(t, logTimeout, `"member gone`, "member=node-2")
}

// TestRestartedNodeReclaimsName restarts a crashed node at once under the
// same name and a new address, as a StatefulSet pod rescheduled elsewhere
// does: the cluster must admit it once the old instance is declared dead.
func TestRestartedNodeReclaimsName(t *testing.T) {
	t.Parallel()
	nodes := startCluster(t, 3, func(c *Config) { c.DeadNodeReclaimTime = 500 * time.Millisecond })
	for _, nd := range nodes {
		waitView(t, nd, convergeTimeout, "all members", hasNames("node-0", "node-1", "node-2"))
	}
	oldAddr := nodes[2].GossipAddr()
	start := time.Now()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("node-2")
	cfg.Seeds = []string{nodes[0].GossipAddr()}
	cfg.DeadNodeReclaimTime = 500 * time.Millisecond
	restarted := startNode(t, cfg)
	newAddr := restarted.GossipAddr()
	if newAddr == oldAddr {
		t.Fatalf("restarted node reused address %s", oldAddr)
	}
	for _, nd := range []*testNode{nodes[0], nodes[1], restarted} {
		waitView(t, nd, failureTimeout, "node-2 at its new address", func(v View) bool {
			m, ok := v.Get("node-2")
			return ok && m.GossipAddr == newAddr && len(v.Members) == 3
		})
	}
	t.Logf("restarted node admitted by all in %s", time.Since(start).Round(time.Millisecond))
}

// TestMismatchedClustersNeverMerge starts two non-bootstrap nodes that list
// each other as seeds but disagree on the cluster label or the gossip key.
func TestMismatchedClustersNeverMerge(t *testing.T) {
	t.Parallel()
	key1 := []byte("0123456789abcdef")
	key2 := []byte("fedcba9876543210")
	cases := []struct {
		name         string
		labelA, labB string
		keyA, keyB   []byte
	}{
		{name: "label", labelA: "prod", labB: "staging"},
		{name: "label vs none", labelA: "prod"},
		{name: "key", keyA: key1, keyB: key2},
		{name: "key vs none", keyA: key1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ports := reservePorts(t, 2)
			ca := testConfig("a")
			ca.BindPort, ca.Seeds, ca.ClusterLabel, ca.Keys = ports[0], []string{fmt.Sprintf("127.0.0.1:%d", ports[1])}, tc.labelA, keyring(tc.keyA)
			cb := testConfig("b")
			cb.BindPort, cb.Seeds, cb.ClusterLabel, cb.Keys = ports[1], []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}, tc.labB, keyring(tc.keyB)
			a, b := newNode(t, ca), newNode(t, cb)

			// Both are listening (New binds); each Start keeps
			// trying the other until its context ends.
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, nd := range []*testNode{a, b} {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
					defer cancel()
					errs[i] = nd.Start(ctx)
				})
			}
			wg.Wait()

			for i, nd := range []*testNode{a, b} {
				if !errors.Is(errs[i], ErrNotJoined) || !errors.Is(errs[i], context.DeadlineExceeded) {
					t.Errorf("%s: Start = %v, want ErrNotJoined and DeadlineExceeded", nd.name, errs[i])
				}
				if got := nd.View().Names(); !slices.Equal(got, []string{nd.name}) {
					t.Errorf("%s: merged with the other cluster: %v", nd.name, got)
				}
				ok, reason := nd.Ready()
				if ok || !strings.Contains(reason, notReadyReason) {
					t.Errorf("%s: Ready = %v, %q; want false with %q", nd.name, ok, reason, notReadyReason)
				}
				// Each side refused the other's join: that must be
				// logged at Warn with a hint an operator can act on.
				if !nd.logs.contains("WARN", rejectedPeerHint) {
					t.Errorf("%s: no warning about rejected gossip", nd.name)
				}
			}
		})
	}
}

func TestSeedByDNSName(t *testing.T) {
	t.Parallel()
	if _, err := net.DefaultResolver.LookupHost(context.Background(), "localhost"); err != nil {
		t.Skipf("localhost does not resolve here: %v", err)
	}
	a := startNode(t, func() Config { c := testConfig("a"); c.Bootstrap = true; return c }())
	_, port, _ := net.SplitHostPort(a.GossipAddr())
	cb := testConfig("b")
	cb.Seeds = []string{"localhost:" + port}
	b := startNode(t, cb)
	for _, nd := range []*testNode{a, b} {
		waitView(t, nd, convergeTimeout, "a and b", hasNames("a", "b"))
	}
}

func TestRejoinLoopJoinsSeedThatComesUpLater(t *testing.T) {
	t.Parallel()
	port := reservePorts(t, 1)[0]
	const rejoin = 200 * time.Millisecond

	cb := testConfig("b")
	cb.Seeds = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	cb.RejoinInterval = rejoin
	b := newNode(t, cb)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := b.Start(ctx); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("Start with the seed down = %v, want ErrNotJoined", err)
	}
	if ok, reason := b.Ready(); ok || !strings.Contains(reason, notReadyReason) {
		t.Fatalf("Ready with the seed down = %v, %q", ok, reason)
	}

	ca := testConfig("a")
	ca.BindPort = port
	ca.Bootstrap = true
	start := time.Now()
	a := startNode(t, ca)
	waitView(t, b, convergeTimeout, "a joined by the rejoin loop", hasNames("a", "b"))
	took := time.Since(start)
	t.Logf("b joined a %s after a started (rejoin interval %s)", took.Round(time.Millisecond), rejoin)
	waitView(t, a, convergeTimeout, "b", hasNames("a", "b"))
	waitReady(t, b, convergeTimeout)
}

func TestReady(t *testing.T) {
	t.Parallel()

	t.Run("bootstrap alone", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig("solo")
		cfg.Bootstrap = true
		// Scaled: Ready is asked "right after Start", which must come
		// before the settle time is over on a loaded machine too.
		cfg.SettleTime = testtime.Bound(time.Second)
		n := newNode(t, cfg)
		if ok, reason := n.Ready(); ok || reason != "membership not started" {
			t.Fatalf("before Start: Ready = %v, %q", ok, reason)
		}
		start := time.Now()
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if ok, reason := n.Ready(); ok || !strings.Contains(reason, "settling") {
			t.Fatalf("right after Start: Ready = %v, %q", ok, reason)
		}
		waitReady(t, n, cfg.SettleTime+convergeTimeout)
		if took := time.Since(start); took < cfg.SettleTime {
			t.Errorf("ready after %s, before SettleTime %s", took, cfg.SettleTime)
		}
	})

	t.Run("joiner", func(t *testing.T) {
		t.Parallel()
		a := startNode(t, func() Config { c := testConfig("a"); c.Bootstrap = true; return c }())
		cfg := testConfig("b")
		cfg.Seeds = []string{a.GossipAddr()}
		cfg.SettleTime = testtime.Bound(time.Second) // scaled, as above
		start := time.Now()
		b := startNode(t, cfg)
		if ok, reason := b.Ready(); ok || !strings.Contains(reason, "settling") {
			t.Fatalf("right after joining: Ready = %v, %q", ok, reason)
		}
		waitReady(t, b, cfg.SettleTime+convergeTimeout)
		if took := time.Since(start); took < cfg.SettleTime {
			t.Errorf("ready after %s, before SettleTime %s", took, cfg.SettleTime)
		}
		// Readiness is latched: later churn does not flip it.
		if err := a.SetState(StateActive); err != nil {
			t.Fatal(err)
		}
		waitView(t, b, convergeTimeout, "a active", func(v View) bool { return len(v.Active()) == 1 })
		if ok, reason := b.Ready(); !ok {
			t.Errorf("Ready flipped to false on a view change: %q", reason)
		}
	})

	t.Run("no seeds, no bootstrap", func(t *testing.T) {
		t.Parallel()
		n := startNode(t, testConfig("lonely"))
		if ok, reason := n.Ready(); ok || !strings.Contains(reason, "no seeds configured") {
			t.Fatalf("Ready = %v, %q", ok, reason)
		}
	})
}

func TestMetaTooLarge(t *testing.T) {
	t.Parallel()
	cfg := testConfig("big")
	cfg.Meta.HTTPAddr = strings.Repeat("h", MaxMetaSize) + ":80"
	_, err := New(cfg)
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("New with oversized meta = %v, want ErrMetaTooLarge", err)
	}
	t.Logf("error: %v", err)

	// The largest meta that fits is accepted.
	m := Meta{State: StateDraining, Proto: 1}
	base, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	m.HTTPAddr = strings.Repeat("h", MaxMetaSize-len(base)-len(`,"h":":1"`)) + ":1"
	if b, err := m.encode(); err != nil || len(b) != MaxMetaSize {
		t.Fatalf("meta of exactly %d bytes: len %d, err %v", MaxMetaSize, len(b), err)
	}
	m.HTTPAddr = "h" + m.HTTPAddr
	if _, err := m.encode(); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("meta of %d bytes: err %v", MaxMetaSize+1, err)
	}
}

func TestSubscribeCoalescesAndCloses(t *testing.T) {
	t.Parallel()
	n := startNode(t, func() Config { c := testConfig("solo"); c.Bootstrap = true; return c }())
	slow, cancelSlow := n.Subscribe()
	other, _ := n.Subscribe()

	// Many changes while nobody reads: none of them may block, and the
	// reader then sees only the newest.
	states := []State{StateActive, StateDraining, StateJoining, StateActive, StateDraining}
	for _, s := range states {
		if err := n.SetState(s); err != nil {
			t.Fatal(err)
		}
	}
	want := n.View()
	if got := <-slow; got.Version != want.Version {
		t.Fatalf("slow subscriber got v%d, want newest v%d", got.Version, want.Version)
	}
	if len(slow) != 0 {
		t.Fatalf("slow subscriber has %d more views queued", len(slow))
	}
	if m, _ := want.Get("solo"); m.Meta.State != StateDraining {
		t.Fatalf("newest view has state %q", m.Meta.State)
	}

	cancelSlow()
	cancelSlow() // idempotent
	if _, ok := <-slow; ok {
		t.Fatal("channel open after unsubscribe")
	}

	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range other { // drains the buffered view, then must end
	}
	late, cancelLate := n.Subscribe()
	if _, ok := <-late; ok {
		t.Error("Subscribe after Shutdown returned an open channel")
	}
	cancelLate()
	if err := n.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := n.Start(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Errorf("Start after Shutdown = %v", err)
	}
	if err := n.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown = %v", err)
	}
	if err := n.SetState(StateActive); !errors.Is(err, ErrShutdown) {
		t.Errorf("SetState after Shutdown = %v", err)
	}
	if ok, reason := n.Ready(); ok || !strings.Contains(reason, "shut down") {
		t.Errorf("Ready after Shutdown = %v, %q", ok, reason)
	}
}

func TestShutdownDuringStart(t *testing.T) {
	t.Parallel()
	port := reservePorts(t, 1)[0] // nobody listens: Start retries until stopped
	cfg := testConfig("waiting")
	cfg.Seeds = []string{fmt.Sprintf("127.0.0.1:%d", port)}
	n := newNode(t, cfg)
	errc := make(chan error, 1)
	go func() { errc <- n.Start(context.Background()) }()
	// Shutdown must interrupt the join's backoff and wait for it.
	waitFor := time.After(convergeTimeout)
	for ok, reason := n.Ready(); !strings.Contains(reason, notReadyReason); ok, reason = n.Ready() {
		if ok {
			t.Fatal("ready without a seed")
		}
		select {
		case <-waitFor:
			t.Fatalf("no failed join attempt recorded: %q", reason)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrShutdown) {
			t.Errorf("Start = %v, want ErrShutdown", err)
		}
	case <-time.After(testtime.Timeout):
		t.Fatal("Start did not return after Shutdown")
	}
}
