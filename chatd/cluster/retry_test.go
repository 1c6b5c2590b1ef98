package cluster

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/internal/testcert"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rendezvous"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// These tests run nodes in this process over real transports on loopback,
// without memberlist: the test sets each node's view itself, and a link in
// front of each transport lets it fail chosen requests. That makes a
// transient replication failure, which a gossiping cluster only shows by
// chance, happen exactly when the test wants it.

// failsafe bounds every wait, so a lost ack fails the test instead of
// hanging the run; nothing waits for it on the success path.
const failsafe = 20 * time.Second

// faultyLink is a node's transport with a hook that sees every request and
// can fail it (as a lost connection, before it leaves this node).
type faultyLink struct {
	*transport.Transport
	mu   sync.Mutex
	hook func(to string, o rpc.Op) (fail bool)
}

func (l *faultyLink) setHook(hook func(to string, o rpc.Op) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hook = hook
}

func (l *faultyLink) Request(p transport.Peer, payload []byte, timeout time.Duration, onReply func([]byte, error)) {
	l.mu.Lock()
	hook := l.hook
	l.mu.Unlock()
	if hook != nil && len(payload) > 0 && hook(p.Name, rpc.Op(payload[0])) {
		onReply(nil, fmt.Errorf("%w: injected by the test", transport.ErrConnLost))
		return
	}
	l.Transport.Request(p, payload, timeout, onReply)
}

type testNode struct {
	*Node
	link *faultyLink
}

// startNodes starts one node per name, each with its transport; their views
// are the test's to set (setViews).
func startNodes(t *testing.T, names ...string) map[string]*testNode {
	t.Helper()
	return startNodesWith(t, 15*time.Second, names...)
}

// startNodesWith is startNodes with the nodes' route timeout.
func startNodesWith(t *testing.T, routeTimeout time.Duration, names ...string) map[string]*testNode {
	t.Helper()
	return startNodesServing(t, routeTimeout, nil, names...)
}

// startNodesServing is startNodesWith where serve, when not nil, gives
// each node's transport the handler to serve it with (a node of another
// release, say), instead of the node itself.
func startNodesServing(t *testing.T, routeTimeout time.Duration, serve func(name string, n *Node) transport.Handler, names ...string) map[string]*testNode {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	nodes := make(map[string]*testNode, len(names))
	for _, name := range names {
		m := metrics.New()
		h := hub.New(hub.Config{HistorySize: 100, DedupeWindow: 100, PresenceListMax: 10, TypingInterval: time.Second}, m, log)
		n := New(Config{Self: name, ReplicationFactor: 2, RouteTimeout: routeTimeout, CallTimeout: 2 * time.Second, HandoffGrace: time.Second, Metrics: m}, h,
			owner.Config{
				HistorySize: 100, DedupeWindow: 100, PresenceListMax: 10, RoomIdleTTL: time.Minute,
				TypingCoalesce: time.Millisecond, PresenceCoalesce: time.Millisecond,
				ReplicationRetry: 5 * time.Millisecond, ReplicationRetryMax: 50 * time.Millisecond,
			}, log)
		var handler transport.Handler = n
		if serve != nil {
			handler = serve(name, n)
		}
		tr, err := transport.New(transport.Config{NodeName: name, ListenAddr: "127.0.0.1:0", Credentials: testcert.Credentials(t, name), ProtocolVersion: rpc.Version, ClusterLabel: "retry-test"}, handler)
		if err != nil {
			t.Fatal(err)
		}
		link := &faultyLink{Transport: tr}
		n.SetPeers(link)
		t.Cleanup(func() {
			n.Close()
			_ = tr.Close()
		})
		nodes[name] = &testNode{Node: n, link: link}
	}
	return nodes
}

// setViews gives each of the named nodes the view whose active members are
// exactly those names.
func setViews(nodes map[string]*testNode, names ...string) {
	setViewsOf(nodes, names, names...)
}

// setViewsOf gives the nodes called who the view whose active members are
// exactly names: a node outside names sees itself as not active (a paused
// node's peers have declared it dead; it has not noticed).
func setViewsOf(nodes map[string]*testNode, who []string, names ...string) {
	v := nodeView{addrs: make(map[string]string, len(names)), active: slices.Sorted(slices.Values(names))}
	for _, name := range names {
		v.addrs[name] = nodes[name].link.Addr()
	}
	v.id = viewID(v.active)
	for _, name := range who {
		nodes[name].setView(v)
	}
}

// roomOwned finds a room that owner owns among each of the member lists.
func roomOwned(owners []string, members ...[]string) string {
	for i := 0; ; i++ {
		room := fmt.Sprint("retry-room-", i)
		ok := true
		for j, m := range members {
			ok = ok && rendezvous.Owner(room, m) == owners[j]
		}
		if ok {
			return room
		}
	}
}

type answer struct {
	ack protocol.Ack
	err error
}

func publishVia(n *testNode, room, user, cid, text string) chan answer {
	ch := make(chan answer, 1)
	n.Publish(room, user, cid, text, func(ack protocol.Ack, err error) { ch <- answer{ack, err} })
	return ch
}

func waitFor[T any](t *testing.T, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(failsafe):
		t.Fatalf("no %s within %s", what, failsafe)
		var zero T
		return zero
	}
}

func ackEpoch(ack protocol.Ack) string {
	epoch, _, _ := strings.Cut(ack.MID, "-")
	return epoch
}

// TestClusterFailedReplicationRetried: the owner's first replicates and
// syncs to its replica fail (a connection that drops, then comes back).
// Every message sent meanwhile is acknowledged, in order, and stored on the
// replica, which can serve the room once the owner is gone.
func TestClusterFailedReplicationRetried(t *testing.T) {
	nodes := startNodes(t, "node-a", "node-b")
	a, b := nodes["node-a"], nodes["node-b"]
	setViews(nodes, "node-a", "node-b")
	room := roomOwned([]string{"node-a"}, []string{"node-a", "node-b"})
	var mu sync.Mutex
	failures := 0
	a.link.setHook(func(to string, o rpc.Op) bool {
		mu.Lock()
		defer mu.Unlock()
		if to == "node-b" && (o == rpc.OpReplicate || o == rpc.OpSync) && failures < 4 {
			failures++
			return true
		}
		return false
	})
	texts := []string{"one", "two", "three"}
	var chans []chan answer
	for i, text := range texts {
		chans = append(chans, publishVia(a, room, "ann", fmt.Sprint("c", i), text))
	}
	var epoch string
	for i, ch := range chans {
		got := waitFor(t, ch, fmt.Sprintf("answer to message %d", i+1))
		if got.err != nil || got.ack.Seq != uint64(i+1) {
			t.Fatalf("message %d answered %+v, %v; want the ack of seq %d", i+1, got.ack, got.err, i+1)
		}
		epoch = ackEpoch(got.ack)
	}
	mu.Lock()
	if failures != 4 {
		t.Fatalf("%d failures injected, want 4", failures)
	}
	mu.Unlock()
	// The owner is gone: node-b, its replica, takes the room over from
	// its copy, which must hold every acknowledged message once, in order.
	// (node-b first keeps the promise it made to node-a's claim, for up to
	// a grace, not to start the room itself.)
	setViews(nodes, "node-b")
	subs := make(chan feed.State, 1)
	b.Subscribe(room, []string{"bob"}, func(rep feed.State, err error) {
		if err != nil {
			t.Errorf("subscribe at the replica: %v", err)
		}
		subs <- rep
	})
	rep := waitFor(t, subs, "subscribe reply from the replica")
	if rep.Epoch != epoch || rep.Head != uint64(len(texts)) || len(rep.Messages) != len(texts) {
		t.Fatalf("replica serves epoch %s head %d with %d messages, want epoch %s head %d: %+v", rep.Epoch, rep.Head, len(rep.Messages), epoch, len(texts), rep.Messages)
	}
	for i, m := range rep.Messages {
		if m.Seq != uint64(i+1) || m.Text != texts[i] {
			t.Fatalf("replica message %d = seq %d %q, want seq %d %q", i, m.Seq, m.Text, i+1, texts[i])
		}
	}
}

// TestClusterStuckHandoffNotStartedEmpty is the node-add case: the owner has
// a message waiting for an unreachable replica when a new node becomes the
// room's owner. The old owner's handoff waits for that message; the new
// node, told a handoff is coming, must keep asking for it rather than start
// the room empty in a new epoch, which would lose the acknowledged history.
func TestClusterStuckHandoffNotStartedEmpty(t *testing.T) {
	nodes := startNodes(t, "node-a", "node-b", "node-c")
	a, c := nodes["node-a"], nodes["node-c"]
	two, three := []string{"node-a", "node-b"}, []string{"node-a", "node-b", "node-c"}
	room := roomOwned([]string{"node-a", "node-c"}, two, three)
	setViews(nodes, two...)
	first := publishVia(a, room, "ann", "first", "acknowledged before the move")
	if got := waitFor(t, first, "answer to the first message"); got.err != nil || got.ack.Seq != 1 {
		t.Fatalf("first message answered %+v, %v", got.ack, got.err)
	}

	// node-b becomes unreachable for replication from node-a.
	var mu sync.Mutex
	down := true
	failed := make(chan struct{}, 1)
	a.link.setHook(func(to string, o rpc.Op) bool {
		mu.Lock()
		defer mu.Unlock()
		if to != "node-b" || (o != rpc.OpReplicate && o != rpc.OpSync) || !down {
			return false
		}
		select {
		case failed <- struct{}{}:
		default:
		}
		return true
	})
	pending := publishVia(a, room, "ann", "pending", "waits for node-b")
	waitFor(t, failed, "injected replication failure")

	// node-c joins and owns the room; count its claims to the other nodes.
	claims := make(chan struct{}, 16)
	c.link.setHook(func(_ string, o rpc.Op) bool {
		if o == rpc.OpClaim {
			select {
			case claims <- struct{}{}:
			default:
			}
		}
		return false
	})
	setViews(nodes, three...)
	later := publishVia(c, room, "bob", "later", "sent to the new owner")
	for range 2 { // the first claim, to node-a and node-b
		waitFor(t, claims, "claim from the new owner")
	}
	// The old owner holds the handoff back for the pending message, so the
	// grace ends first and the new owner asks again. (Should the state get
	// through first on a slow machine, the answer is checked below.)
	var laterGot *answer
	select {
	case <-claims:
	case got := <-later:
		laterGot = &got
	case <-time.After(failsafe):
		t.Fatal("the new owner neither asked again nor answered")
	}
	mu.Lock()
	down = false
	mu.Unlock()

	got := waitFor(t, pending, "answer to the pending message")
	if got.err != nil || got.ack.Seq != 2 {
		t.Fatalf("pending message answered %+v, %v; want the ack of seq 2", got.ack, got.err)
	}
	epoch := ackEpoch(got.ack)
	if laterGot == nil {
		got = waitFor(t, later, "answer from the new owner")
	} else {
		got = *laterGot
	}
	if got.err != nil || got.ack.Seq != 3 || ackEpoch(got.ack) != epoch {
		t.Fatalf("message to the new owner answered %+v, %v; want seq 3 of epoch %s", got.ack, got.err, epoch)
	}
	pages := make(chan protocol.HistoryPage, 1)
	c.History(room, 0, 10, func(p protocol.HistoryPage, err error) {
		if err != nil {
			t.Errorf("history at the new owner: %v", err)
		}
		pages <- p
	})
	page := waitFor(t, pages, "history from the new owner")
	var cids []string
	for _, m := range page.Messages {
		cids = append(cids, m.CID)
	}
	if page.Epoch != epoch || !slices.Equal(cids, []string{"first", "pending", "later"}) {
		t.Fatalf("new owner's history: epoch %s, cids %v; want epoch %s, [first pending later]", page.Epoch, cids, epoch)
	}
}
