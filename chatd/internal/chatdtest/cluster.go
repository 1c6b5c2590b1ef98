package chatdtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/app"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// Cluster is a set of chatd nodes in this process, gossiping and talking to
// each other on loopback, as separate processes would.
type Cluster struct {
	t    testing.TB
	args []string
	// PKI is the cluster's CA, certificates and gossip keyring.
	PKI   *PKI
	mu    sync.Mutex
	Nodes []*Node
	next  int
}

// Node is one member of a test cluster.
type Node struct {
	*Server
	Name   string
	Gossip string
	// Crash stops the node as if its process died: no handoff, no leave.
	Crash func()
	// Gone is true once the node was stopped or crashed.
	Gone bool
}

// StartCluster starts n nodes: the first bootstraps, the others join it.
// args are added to every node's flags. It returns once every node is ready
// and sees all n as active.
func StartCluster(t testing.TB, n int, args ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, args: args, PKI: NewPKI(t)}
	for i := 0; i < n; i++ {
		c.AddNode()
	}
	c.WaitConverged()
	return c
}

// freePort finds a port free for both TCP and UDP on loopback (memberlist
// needs both) whose successor is free for TCP too (the inter-node port).
//
// The port is drawn from below the kernel's ephemeral range: a port the kernel
// handed out for ":0" can be taken a moment later as the source port of some
// outgoing connection, and the node's bind then fails (seen in CI). Ports
// below the range are only ever taken by an explicit bind.
//
// A port is handed out once per test process: two draws of one launch (a
// node's client, admin and gossip ports) are each free until the node binds
// them, so without the record the same port could be drawn twice and the
// node refuse its flags (seen in CI: --admin-listen equal to --listen).
func freePort(t testing.TB) int {
	t.Helper()
	low := ephemeralLow()
	span := low - minTestPort - 1
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	for i := 0; i < 200; i++ {
		port := minTestPort + rand.IntN(span)
		if handedOut.ports[port] || handedOut.ports[port+1] || !portPairFree(port) {
			continue
		}
		// The successor is the inter-node port of a node gossiping on port.
		handedOut.ports[port], handedOut.ports[port+1] = true, true
		return port
	}
	t.Fatal("no free port pair found below the ephemeral range")
	return 0
}

// handedOut records every port freePort returned in this test process,
// and each one's successor.
var handedOut = struct {
	mu    sync.Mutex
	ports map[int]bool
}{ports: make(map[int]bool)}

// minTestPort is the lowest port freePort draws; below it lie well-known
// services a developer may run on the machine.
const minTestPort = 20000

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default 32768 when it cannot be read).
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return fallback
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low <= minTestPort+100 {
		return fallback
	}
	return low
}

func portPairFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	defer pc.Close()
	l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
	if err != nil {
		return false
	}
	l2.Close()
	return true
}

// AddNode starts one more node joining the cluster; it does not wait for
// convergence.
func (c *Cluster) AddNode() *Node {
	c.t.Helper()
	c.mu.Lock()
	name := fmt.Sprintf("node-%d", c.next)
	c.next++
	var seeds []string
	for _, n := range c.Nodes {
		if !n.Gone {
			seeds = append(seeds, n.Gossip)
		}
	}
	c.mu.Unlock()
	gossip := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(c.t)))
	flags := []string{"--allow-anonymous", "--node-name", name, "--log-level", "debug", "--admin-listen", "127.0.0.1:0",
		"--gossip-addr", gossip, "--gossip-profile", "local",
		"--rejoin-interval", "1s", "--drain-timeout", "10s", "--shutdown-timeout", "10s",
		"--rate", "100000", "--rate-burst", "100000", "--max-connections-per-ip", "0"}
	if len(seeds) == 0 {
		flags = append(flags, "--bootstrap")
	} else {
		flags = append(flags, "--join", seeds[0])
	}
	// The cluster's own flags come last: a test may override the key
	// material.
	flags = append(flags, c.PKI.Flags(name)...)
	flags = append(flags, c.args...)
	cfg, err := config.Load(flags, func(string) string { return "" }, io.Discard)
	if err != nil {
		c.t.Fatalf("config: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	adminLn, adminAddr, err := adminListener(&cfg)
	if err != nil {
		ln.Close()
		c.t.Fatal(err)
	}
	var out io.Writer = io.Discard
	if os.Getenv("CHATD_TEST_LOGS") != "" {
		out = os.Stderr
	}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_node", name)
	ctx, cancel := context.WithCancelCause(context.Background())
	exited := make(chan error, 1)
	go func() {
		exited <- app.ServeWithOptions(ctx, cfg, ln, log, app.Options{AdminListener: adminLn})
	}()
	node := &Node{Name: name, Gossip: gossip}
	var once sync.Once
	wait := func(what string) {
		select {
		case err := <-exited:
			if err != nil && !errors.Is(err, context.Canceled) {
				c.t.Errorf("%s exited with error: %v", name, err)
			}
		case <-time.After(2 * stopTimeout):
			c.t.Errorf("%s still running %v after %s", name, 2*stopTimeout, what)
		}
	}
	stop := func() {
		once.Do(func() {
			c.markGone(node)
			cancel(nil)
			wait("stop")
		})
	}
	node.Crash = func() {
		once.Do(func() {
			c.markGone(node)
			cancel(app.ErrKilled)
			wait("crash")
		})
	}
	c.t.Cleanup(stop)
	addr := ln.Addr().String()
	node.Server = &Server{Addr: addr, URL: "ws://" + addr + "/ws", AdminAddr: adminAddr, Stop: stop}
	c.mu.Lock()
	c.Nodes = append(c.Nodes, node)
	c.mu.Unlock()
	return node
}

// markGone records that a node stopped; Live reads Gone under the same lock.
func (c *Cluster) markGone(n *Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n.Gone = true
}

// Live returns the nodes that are still running.
func (c *Cluster) Live() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.Nodes {
		if !n.Gone {
			out = append(out, n)
		}
	}
	return out
}

// LiveNames returns the names of the running nodes.
func (c *Cluster) LiveNames() []string {
	var out []string
	for _, n := range c.Live() {
		out = append(out, n.Name)
	}
	return out
}

// ByName returns the node called name, running or not (nil if none is).
func (c *Cluster) ByName(name string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// LiveURLs returns the WebSocket URLs of the running nodes.
func (c *Cluster) LiveURLs() []string {
	var out []string
	for _, n := range c.Live() {
		out = append(out, n.URL)
	}
	return out
}

// Status fetches a node's /admin/cluster (from its admin listener, which
// needs no token in these helpers).
func (n *Node) Status() (admin.ClusterStatus, error) {
	var st admin.ClusterStatus
	resp, err := http.Get(n.AdminURL("/admin/cluster"))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Ready reports whether the node's /readyz answers 200.
func (n *Node) Ready() bool {
	resp, err := http.Get("http://" + n.Addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// WaitConverged waits until every live node is ready and sees exactly the
// live nodes as active.
func (c *Cluster) WaitConverged() {
	c.t.Helper()
	c.waitViews(true)
}

// WaitViews waits until every live node sees exactly the live nodes as
// active, ready or not (a node without quorum is not ready).
func (c *Cluster) WaitViews() {
	c.t.Helper()
	c.waitViews(false)
}

// convergeTimeout bounds how long a cluster takes to agree on its members
// after a change: failure detection (about 5 s with the local gossip
// profile) and gossip, with a margin for a loaded machine.
var convergeTimeout = testtime.Bound(30 * time.Second)

func (c *Cluster) waitViews(ready bool) {
	c.t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		live := c.Live()
		want := make([]string, 0, len(live))
		for _, n := range live {
			want = append(want, n.Name)
		}
		slices.Sort(want)
		ok := true
		var why string
		for _, n := range live {
			st, err := n.Status()
			if err != nil || (ready && !n.Ready()) || !slices.Equal(st.Active, want) {
				ok = false
				why = fmt.Sprintf("%s: ready=%v active=%v err=%v", n.Name, n.Ready(), st.Active, err)
				break
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not converge on %v within %v: %s", want, convergeTimeout, why)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}
