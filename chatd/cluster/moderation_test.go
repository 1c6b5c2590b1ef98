package cluster

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// closable is a hub connection that records the close it is told.
type closable struct {
	session, user string
	mu            sync.Mutex
	closes        []int
}

func (c *closable) SessionID() string { return c.session }
func (c *closable) UserID() string    { return c.user }
func (c *closable) Enqueue([]byte)    {}
func (c *closable) Close(code int, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes = append(c.closes, code)
}
func (c *closable) closed() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.closes)
}

// previousRelease serves a node as a release without OpDisconnect would:
// that op is refused as unknown, by an rpc.Table that does not handle it.
type previousRelease struct {
	*Node
	old *rpc.Table
}

func (p previousRelease) HandleRequest(from transport.Peer, payload []byte, reply transport.Reply) {
	if len(payload) > 0 && (rpc.Op(payload[0]) == rpc.OpDisconnect || rpc.Op(payload[0]) == rpc.OpKick) {
		p.old.ServeRequest(from, payload, reply)
		return
	}
	p.Node.HandleRequest(from, payload, reply)
}

// A disconnect (and a kick) reaches the user's connections on every node;
// a node that refuses the op (an older release during a rolling upgrade)
// is reported unreached, its connections left alone, and the others are
// still closed.
func TestDisconnectUserMixedRelease(t *testing.T) {
	nodes := startNodesServing(t, 15*time.Second, func(name string, n *Node) transport.Handler {
		if name == "node-c" {
			return previousRelease{Node: n, old: rpc.NewTable()}
		}
		return n
	}, "node-a", "node-b", "node-c")
	setViews(nodes, "node-a", "node-b", "node-c")
	conns := map[string]*closable{}
	for _, name := range []string{"node-a", "node-b", "node-c"} {
		c := &closable{session: "s-" + name, user: "bob"}
		nodes[name].hub.Register(c, nil)
		conns[name] = c
		// Ann's connection is never closed.
		nodes[name].hub.Register(&closable{session: "ann-" + name, user: "ann"}, nil)
	}
	type result struct {
		closed    int
		unreached []string
	}
	ch := make(chan result, 1)
	// Nobody has joined the room: every node that answers kicks nobody,
	// and the old one is unreached.
	nodes["node-a"].Kick("lobby", "bob", "bye", func(kicked int, unreached []string) { ch <- result{kicked, unreached} })
	if got := waitFor(t, ch, "the kick's answer"); got.closed != 0 || !slices.Equal(got.unreached, []string{"node-c"}) {
		t.Fatalf("kick answered %d kicked, unreached %q; want 0 and node-c", got.closed, got.unreached)
	}
	nodes["node-a"].DisconnectUser("bob", 4010, "bye", func(closed int, unreached []string) { ch <- result{closed, unreached} })
	got := waitFor(t, ch, "the disconnect's answer")
	if got.closed != 2 || !slices.Equal(got.unreached, []string{"node-c"}) {
		t.Fatalf("disconnect answered %d closed, unreached %q; want 2 and node-c", got.closed, got.unreached)
	}
	for name, c := range conns {
		want := []int{4010}
		if name == "node-c" {
			want = nil
		}
		if !slices.Equal(c.closed(), want) {
			t.Errorf("bob's connection on %s got closes %v, want %v", name, c.closed(), want)
		}
	}
}
