//go:build partition

package partition

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ringchat/ringchat/internal/devpki"
)

// dockerCluster is three chatd containers, each on two Docker networks
// this test creates: the cluster network (gossip and inter-node traffic,
// the one faults are injected on) and the client network; clients reach
// every node through a port published on the host's loopback.
type dockerCluster struct {
	t          *testing.T
	id         string
	clusterNet string
	nodes      []*node
	names      []string

	mu sync.Mutex
	// away holds the nodes clients should not be sent to: paused, or cut
	// off (a load balancer's readiness check would take them out).
	away map[string]bool
}

// routeTimeout is the nodes' --route-timeout: short, so that clients learn
// quickly that a room is unavailable.
const routeTimeout = 2 * time.Second

// startCluster creates the networks and the containers, with extra flags
// for every node, and waits until every node sees all of them.
func startCluster(t *testing.T, extra ...string) *dockerCluster {
	t.Helper()
	image := os.Getenv("RINGCHAT_CHATD_IMAGE")
	if image == "" {
		t.Fatal("RINGCHAT_CHATD_IMAGE is not set: run `make test-partition`, which builds the image")
	}
	id := fmt.Sprintf("%06x", rand.IntN(1<<24))
	subnet := fmt.Sprintf("10.%d.%d", 200+rand.IntN(50), rand.IntN(250))
	clusterNet, clientNet := "ringchat-clu-"+id, "ringchat-cli-"+id
	docker(t, "network", "create", "--subnet", subnet+".0/24", clusterNet)
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", clusterNet).Run() })
	docker(t, "network", "create", clientNet)
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", clientNet).Run() })

	c := &dockerCluster{t: t, id: id, clusterNet: clusterNet, away: map[string]bool{}}
	pki := writePKI(t, nodes)
	adminDir := writeAdminToken(t)
	for i := 0; i < nodes; i++ {
		n := &node{name: fmt.Sprintf("node-%d", i), container: fmt.Sprintf("ringchat-p-%s-%d", id, i), clusterIP: fmt.Sprintf("%s.%d", subnet, 10+i)}
		c.nodes = append(c.nodes, n)
		c.names = append(c.names, n.name)
		args := []string{"create", "--name", n.container, "--network", clientNet, "-p", "127.0.0.1::8080",
			"-p", "127.0.0.1::9090", "-v", adminDir + ":" + adminMount + ":ro",
			"-v", pki + ":" + pkiMount + ":ro",
			image, "--listen", "0.0.0.0:8080", "--node-name", n.name, "--allow-anonymous",
			"--admin-listen", "0.0.0.0:9090", "--admin-token-file", adminMount + "/token",
			"--peer-tls-cert-file", pkiMount + "/" + n.name + ".crt", "--peer-tls-key-file", pkiMount + "/" + n.name + ".key",
			"--peer-tls-ca-file", pkiMount + "/ca.crt", "--gossip-keyring-file", pkiMount + "/gossip.keyring",
			"--gossip-addr", "0.0.0.0:7946", "--gossip-advertise-addr", n.clusterIP + ":7946",
			"--rpc-addr", "0.0.0.0:7947", "--rpc-advertise-addr", n.clusterIP + ":7947",
			"--cluster-label", "partition-" + id, "--expected-nodes", fmt.Sprint(nodes), "--rejoin-interval", "2s",
			"--route-timeout", routeTimeout.String(), "--log-level", "info"}
		args = append(args, extra...)
		if i == 0 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", c.nodes[0].clusterIP+":7946")
		}
		docker(t, args...)
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := exec.Command("docker", "logs", n.container).CombinedOutput()
				keepLog(t, n.container, out)
			}
			_ = exec.Command("docker", "unpause", n.container).Run() // a paused container is not removed otherwise
			_ = exec.Command("docker", "rm", "-f", n.container).Run()
		})
		docker(t, "network", "connect", "--ip", n.clusterIP, clusterNet, n.container)
		docker(t, "start", n.container)
		n.http = strings.TrimSpace(strings.Split(docker(t, "port", n.container, "8080/tcp"), "\n")[0])
		n.admin = strings.TrimSpace(strings.Split(docker(t, "port", n.container, "9090/tcp"), "\n")[0])
	}
	slices.Sort(c.names)
	for _, n := range c.nodes {
		waitActive(t, n, c.names, 60*time.Second)
	}
	return c
}

// pkiMount is where the containers find their key material.
const pkiMount = "/etc/chatd/peer"

// writePKI writes a throwaway CA, a certificate for each of node-0 …
// node-(n-1) and a gossip keyring into a new directory, readable by the
// containers' unprivileged user (these keys protect nothing but the test),
// and returns it.
func writePKI(t *testing.T, n int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ringchat-partition-pki-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ca, err := devpki.NewCA("partition test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM(), "gossip.keyring": []byte("cGFydGl0aW9uLXRlc3QtZ29zc2lwLWtleS0wMTIzNDU=\n")}
	for i := range n {
		name := fmt.Sprintf("node-%d", i)
		crt, key, err := ca.IssueNode(name, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		files[name+".crt"], files[name+".key"] = crt, key
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// url is a node's WebSocket endpoint as clients on the host reach it.
func (n *node) url() string { return "ws://" + n.http + "/ws" }

// liveURLs returns the endpoints of the nodes clients may be sent to.
func (c *dockerCluster) liveURLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, n := range c.nodes {
		if !c.away[n.name] {
			out = append(out, n.url())
		}
	}
	return out
}

// nameOf names the node at a WebSocket endpoint.
func (c *dockerCluster) nameOf(url string) string {
	for _, n := range c.nodes {
		if n.url() == url {
			return n.name
		}
	}
	return ""
}

// setAway takes a node out of (or back into) the endpoints new clients
// are sent to.
func (c *dockerCluster) setAway(n *node, away bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.away[n.name] = away
}

// gossipTiming is the failure detection of chatd's default gossip profile
// ("lan", memberlist's DefaultLANConfig), which these containers run, in a
// cluster of n nodes: the longest wait for a probe ((n-1) probe intervals,
// every member probing the others in turn), its timeout, then the
// suspicion timeout once the other members confirm it; and the longest a
// suspicion lasts without confirmation.
func gossipTiming(n int) (detection, suspicionMax time.Duration) {
	mc := memberlist.DefaultLANConfig()
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	suspicion := time.Duration(float64(mc.SuspicionMult) * scale * float64(mc.ProbeInterval))
	detection = time.Duration(max(n-1, 1))*mc.ProbeInterval + mc.ProbeTimeout + suspicion
	return detection, time.Duration(mc.SuspicionMaxTimeoutMult) * suspicion
}

// adminMount is where the containers find the admin token file; the
// admin listener listens on every interface of the container (the host
// reaches it through a published port), so it needs a token.
const adminMount = "/etc/chatd/admin"

// adminToken is the admin API's bearer token in this test.
const adminToken = "partition-test-admin-token-0123456789"

// writeAdminToken writes the admin token file into a new directory,
// readable by the containers' unprivileged user (the token protects
// nothing but the test), and returns the directory.
func writeAdminToken(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ringchat-partition-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(adminToken+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// keepLog writes a failed test's whole container log to a file that outlives
// the test (its path is logged) and logs the last 30 lines.
func keepLog(t *testing.T, container string, out []byte) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	tail := lines[max(0, len(lines)-30):]
	path := filepath.Join(os.TempDir(), "ringchat-partition-"+container+".log")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Logf("could not keep %s's log: %v", container, err)
		path = "(not kept)"
	}
	t.Logf("--- %s (whole log: %s) ---\n%s", container, path, strings.Join(tail, "\n"))
}
