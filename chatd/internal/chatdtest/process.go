package chatdtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// BuildChatd compiles the chatd binary once per test binary and returns its
// path. Tests of real processes use it, so they run what ships.
func BuildChatd(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "chatd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "chatd")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/ringchat/ringchat/chatd/cmd/chatd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build chatd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// ProcessCluster is a cluster of real chatd processes on loopback.
type ProcessCluster struct {
	t      testing.TB
	binary string
	args   []string
	// perNode, when set, gives the flags of one node by name on top of
	// args, at every start and restart (a node's own --data-dir).
	perNode func(name string) []string
	// PKI is the cluster's CA, certificates and gossip keyring.
	PKI   *PKI
	mu    sync.Mutex
	Nodes []*ProcessNode
}

// ProcessNode is one chatd process.
type ProcessNode struct {
	Name string
	Addr string
	URL  string
	// AdminAddr is the admin listener (--admin-listen, on loopback): the
	// admin API, /metrics and the probes.
	AdminAddr string
	Gossip    string
	cmd       *exec.Cmd
	logs      *LogBuffer
	done      chan struct{}
	gone      bool
	// frozen is true between Freeze and Thaw: the process exists but does
	// not run, so it is left out of LiveURLs (no client should be sent to
	// it) and of convergence.
	frozen bool
	// index is the i of proc-<i>, kept so that Restart can launch the same
	// node again.
	index int
}

// StartProcessCluster starts n chatd processes that form one cluster, and
// waits until every one is ready and sees all n as active.
func StartProcessCluster(t testing.TB, n int, args ...string) *ProcessCluster {
	t.Helper()
	return StartProcessClusterWith(t, n, nil, args...)
}

// StartProcessClusterWith is StartProcessCluster with flags of each node's
// own: perNode(name) is added to args whenever the node named name (proc-<i>)
// starts or restarts, so that a restarted node finds, say, its own
// --data-dir again (see DataDirs). A nil perNode adds nothing.
func StartProcessClusterWith(t testing.TB, n int, perNode func(name string) []string, args ...string) *ProcessCluster {
	t.Helper()
	c := &ProcessCluster{t: t, binary: BuildChatd(t), args: args, perNode: perNode, PKI: NewPKI(t)}
	for i := 0; i < n; i++ {
		c.start(i)
	}
	c.WaitConverged()
	return c
}

func (c *ProcessCluster) start(i int) {
	c.t.Helper()
	// A port found free can still be taken before the process binds it; the
	// process then exits at once saying so, and it is started again on new
	// ports rather than failing the test for a reason that is not chatd's.
	for attempt := 1; ; attempt++ {
		node := c.launch(i)
		if node.waitListening(testtime.Bound(30*time.Second)) || attempt == 5 || !node.logs.Contains("address already in use") {
			c.mu.Lock()
			c.Nodes = append(c.Nodes, node)
			c.mu.Unlock()
			return
		}
		c.t.Logf("%s could not bind its ports (attempt %d); starting it on others", node.Name, attempt)
	}
}

func (c *ProcessCluster) launch(i int) *ProcessNode {
	c.t.Helper()
	gossip := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(c.t)))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(c.t)))
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(c.t)))
	return c.launchOn(i, addr, admin, gossip)
}

// launchOn starts proc-<i> serving HTTP on addr, its admin listener on
// admin, and gossiping on gossip (its inter-node port is gossip's plus
// one, chatd's default).
func (c *ProcessCluster) launchOn(i int, addr, admin, gossip string) *ProcessNode {
	c.t.Helper()
	name := fmt.Sprintf("proc-%d", i)
	flags := []string{"--listen", addr, "--admin-listen", admin, "--allow-anonymous", "--node-name", name,
		"--gossip-addr", gossip, "--gossip-profile", "local", "--rejoin-interval", "1s",
		"--rate", "100000", "--rate-burst", "100000", "--max-connections-per-ip", "0", "--log-level", "info"}
	c.mu.Lock()
	seed := ""
	for _, n := range c.Nodes {
		if !n.gone && !n.frozen && n.Name != name {
			seed = n.Gossip
			break
		}
	}
	c.mu.Unlock()
	if seed == "" {
		flags = append(flags, "--bootstrap")
	} else {
		// Any running member will do: the first one may have been stopped.
		flags = append(flags, "--join", seed)
	}
	flags = append(flags, c.PKI.Flags(name)...)
	flags = append(flags, c.args...)
	if c.perNode != nil {
		flags = append(flags, c.perNode(name)...)
	}
	cmd := exec.Command(c.binary, flags...)
	logs := NewLogBuffer()
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	node := &ProcessNode{Name: name, Addr: addr, URL: "ws://" + addr + "/ws", AdminAddr: admin, Gossip: gossip, cmd: cmd, logs: logs, done: make(chan struct{}), index: i}
	go func() {
		_ = cmd.Wait()
		close(node.done)
	}()
	c.t.Cleanup(func() {
		node.signal(syscall.SIGKILL)
		<-node.done
		if c.t.Failed() {
			c.t.Logf("--- %s logs ---\n%s", name, lastLines(logs.String(), 40))
		}
		keepLogs(c.t, name, logs)
	})
	return node
}

// waitListening waits for the process to log that it serves clients, and
// reports false if it exited first or the wait timed out.
func (n *ProcessNode) waitListening(timeout time.Duration) bool {
	deadline := time.After(timeout)
	const listening = `"msg":"chatd listening"`
	for {
		if n.logs.Contains(listening) {
			return true
		}
		select {
		case <-n.logs.Wrote():
		case <-n.done:
			return n.logs.Contains(listening)
		case <-deadline:
			return false
		}
	}
}

// LogBuffer collects a process's output (its Stdout and Stderr) for a test
// to read while the process runs.
type LogBuffer struct {
	mu sync.Mutex
	w  bytes.Buffer
	// wrote is signalled (without blocking) after every write, so a reader
	// can wait for a log line instead of polling.
	wrote chan struct{}
}

// NewLogBuffer returns an empty LogBuffer.
func NewLogBuffer() *LogBuffer { return &LogBuffer{wrote: make(chan struct{}, 1)} }

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	n, err := l.w.Write(p)
	l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return n, err
}

// Wrote is signalled after writes: a reader that found nothing yet waits
// on it before looking again.
func (l *LogBuffer) Wrote() <-chan struct{} { return l.wrote }

// Contains reports whether the output so far contains sub, without copying it.
func (l *LogBuffer) Contains(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Contains(l.w.Bytes(), []byte(sub))
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// Line returns the first JSON log line whose msg is msg, decoded, or nil.
func (l *LogBuffer) Line(msg string) map[string]any {
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte{'\n'})
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte{'\n'}))
}

func (n *ProcessNode) signal(sig syscall.Signal) {
	if n.cmd.Process != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// markGone records that a process is being stopped; live reads gone under
// the same lock.
func (c *ProcessCluster) markGone(n *ProcessNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n.gone = true
}

// AddNode starts one more process (named proc-<index>) that joins the
// running ones, and waits until every live process is ready and sees it as
// active. The flags given to StartProcessCluster apply to it too.
func (c *ProcessCluster) AddNode() *ProcessNode {
	c.t.Helper()
	c.mu.Lock()
	i := len(c.Nodes)
	c.mu.Unlock()
	c.start(i)
	c.WaitConverged()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Nodes[i]
}

// Server returns the process's HTTP side as a Server, for the metric
// helpers (Metric, WaitMetric). Its Stop is nil: stop processes with Kill or
// Terminate.
func (n *ProcessNode) Server() *Server {
	return &Server{Addr: n.Addr, URL: n.URL, AdminAddr: n.AdminAddr}
}

// AdminURL is the URL of path on the process's admin listener.
func (n *ProcessNode) AdminURL(path string) string { return "http://" + n.AdminAddr + path }

// Kill sends SIGKILL: no drain, no leave.
func (c *ProcessCluster) Kill(n *ProcessNode) {
	c.markGone(n)
	n.signal(syscall.SIGKILL)
	<-n.done
}

// Terminate sends SIGTERM and waits for the graceful drain to finish.
func (c *ProcessCluster) Terminate(n *ProcessNode) {
	c.markGone(n)
	n.signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(2 * stopTimeout):
		c.t.Errorf("%s did not exit within %v of SIGTERM", n.Name, 2*stopTimeout)
	}
}

// live returns the running processes (not stopped, not frozen).
func (c *ProcessCluster) live() []*ProcessNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*ProcessNode
	for _, n := range c.Nodes {
		if !n.gone && !n.frozen {
			out = append(out, n)
		}
	}
	return out
}

// LiveURLs returns the WebSocket URLs of running processes; a frozen one
// (Freeze) is left out until it is thawed.
func (c *ProcessCluster) LiveURLs() []string {
	var out []string
	for _, n := range c.live() {
		out = append(out, n.URL)
	}
	return out
}

// WaitConverged waits until every live process is ready and sees exactly
// the live ones as active.
func (c *ProcessCluster) WaitConverged() {
	c.t.Helper()
	deadline := time.Now().Add(testtime.Bound(45 * time.Second))
	for {
		ok, why := c.Converged()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("processes did not converge on %v: %s", c.LiveNames(), why)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// Converged reports whether every live process is ready and sees exactly
// the live ones as active, and if not, why: for tests that wait for it
// with their own deadline and carry on (to report) when it never happens.
func (c *ProcessCluster) Converged() (bool, string) {
	live := c.live()
	want := make([]string, 0, len(live))
	for _, n := range live {
		want = append(want, n.Name)
	}
	slices.Sort(want)
	for _, n := range live {
		node := &Node{Server: n.Server()}
		st, err := node.Status()
		if err != nil || !node.Ready() || !slices.Equal(st.Active, want) {
			return false, fmt.Sprintf("%s: active=%v err=%v", n.Name, st.Active, err)
		}
	}
	return true, ""
}

// ByName returns the process called name.
func (c *ProcessCluster) ByName(name string) *ProcessNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// LiveNames lists the running processes' names.
func (c *ProcessCluster) LiveNames() []string {
	var out []string
	for _, n := range c.live() {
		out = append(out, n.Name)
	}
	return out
}

// Freeze stops the process with SIGSTOP: it keeps its sockets and its
// clients' connections, but runs nothing (no gossip, no replies) until Thaw,
// as under a long GC pause, CPU throttling or a VM paused for migration.
// It is left out of LiveURLs and convergence meanwhile.
func (c *ProcessCluster) Freeze(n *ProcessNode) {
	c.mu.Lock()
	n.frozen = true
	c.mu.Unlock()
	n.signal(syscall.SIGSTOP)
}

// Thaw resumes a frozen process with SIGCONT.
func (c *ProcessCluster) Thaw(n *ProcessNode) {
	n.signal(syscall.SIGCONT)
	c.mu.Lock()
	n.frozen = false
	c.mu.Unlock()
}

// Restart starts a stopped process (Kill or Terminate) again under the same
// name and, when they are still free, the same ports, so that clients and
// seeds that knew its address find it there again. It waits until the
// process listens, not for convergence (call WaitConverged). It returns the
// new process, which replaces the old one in Nodes and ByName.
func (c *ProcessCluster) Restart(old *ProcessNode) *ProcessNode {
	c.t.Helper()
	c.mu.Lock()
	gone := old.gone
	c.mu.Unlock()
	if !gone {
		c.t.Fatalf("restart %s: it is still running; Kill or Terminate it first", old.Name)
	}
	<-old.done
	var node *ProcessNode
	for attempt := 1; ; attempt++ {
		if attempt <= restartSamePortAttempts {
			node = c.launchOn(old.index, old.Addr, old.AdminAddr, old.Gossip)
		} else {
			node = c.launch(old.index)
		}
		if node.waitListening(testtime.Bound(30*time.Second)) || attempt == restartSamePortAttempts+5 || !node.logs.Contains("address already in use") {
			break
		}
		c.t.Logf("%s could not bind its ports again (attempt %d); retrying", old.Name, attempt)
		node.signal(syscall.SIGKILL)
		<-node.done
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, n := range c.Nodes {
		if n == old {
			c.Nodes[i] = node
		}
	}
	return node
}

// restartSamePortAttempts is how often Restart tries the old ports before
// it falls back to new ones (another process may have taken them).
const restartSamePortAttempts = 3

// Logs returns the process's output so far.
func (n *ProcessNode) Logs() *LogBuffer { return n.logs }

// Exited is closed once the process has exited.
func (n *ProcessNode) Exited() <-chan struct{} { return n.done }

// NameOf returns the name of the process serving the WebSocket URL url
// ("" if none does); safe to call while processes restart.
func (c *ProcessCluster) NameOf(url string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		if n.URL == url {
			return n.Name
		}
	}
	return ""
}

// All returns every process started, running or not (the latest one of
// each name); safe to call while processes restart.
func (c *ProcessCluster) All() []*ProcessNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.Nodes)
}

// KillAll sends SIGKILL to every node in nodes before waiting for any of
// them, so that they die together (a power cut, every pod deleted at once)
// rather than one after another.
func (c *ProcessCluster) KillAll(nodes ...*ProcessNode) {
	for _, n := range nodes {
		c.markGone(n)
	}
	for _, n := range nodes {
		n.signal(syscall.SIGKILL)
	}
	for _, n := range nodes {
		<-n.done
	}
}

// TerminateAll sends SIGTERM to every node in nodes at once and returns
// without waiting: they drain side by side, as the pods of a StatefulSet
// whose pods are all deleted at once do. Wait on each one's Exited.
func (c *ProcessCluster) TerminateAll(nodes ...*ProcessNode) {
	for _, n := range nodes {
		c.markGone(n)
	}
	for _, n := range nodes {
		n.signal(syscall.SIGTERM)
	}
}

// DataDirs returns a perNode function for StartProcessClusterWith that gives
// every node its own --data-dir under base (base/<name>), the same one at
// every restart, as a StatefulSet's volume follows its pod.
func DataDirs(base string) func(name string) []string {
	return func(name string) []string {
		return []string{"--data-dir", filepath.Join(base, name)}
	}
}

// LogsDirEnv names the environment variable that, when set to a directory,
// makes every process's whole output be written there when its test ends
// (<test>-<name>-<pid>.log), for the investigation of a failure the last
// lines do not explain.
const LogsDirEnv = "CHATD_PROCESS_LOGS"

func keepLogs(t testing.TB, name string, logs *LogBuffer) {
	dir := os.Getenv(LogsDirEnv)
	if dir == "" {
		return
	}
	f, err := os.CreateTemp(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+name+"-*.log")
	if err != nil {
		t.Logf("keep %s logs: %v", name, err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(logs.String()); err != nil {
		t.Logf("keep %s logs: %v", name, err)
	}
}
