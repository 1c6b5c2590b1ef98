package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testcert"
)

// A node whose gossip settings are right but whose certificate the others
// do not trust joins gossip, and used to go active at once: it then owned
// about 1/N of the rooms, which nobody could reach, while /readyz said
// ready. It must stay joining and not ready, say why, and leave the others
// alone.
func TestUntrustedCertificateStaysJoining(t *testing.T) {
	c := chatdtest.StartCluster(t, 3)
	good := []string{"node-0", "node-1", "node-2"}

	ann := chatdtest.Connect(t, c.Nodes[0].URL, "ann")
	bob := chatdtest.Connect(t, c.Nodes[2].URL, "bob")
	ann.Join("lobby")
	bob.Join("lobby")
	seq := uint64(0)
	chat := func(what string) {
		t.Helper()
		seq++
		cid := fmt.Sprintf("%s-%d", what, seq)
		if ack := ann.Say("lobby", cid, what); ack.Seq != seq {
			t.Fatalf("%s: ack %+v, want seq %d", what, ack, seq)
		}
		for _, cl := range []*chatdtest.Client{ann, bob} {
			if m := cl.NextMessage(); m.Seq != seq || m.Text != what {
				t.Fatalf("%s: got %+v", what, m)
			}
		}
	}
	chat("before")

	// The node added now has a certificate from a CA the others do not
	// trust (it trusts theirs, and its own). Every other setting (gossip
	// keyring, label, flags) is the cluster's.
	rogue := testcert.NewCA(t, "rogue CA")
	c.PKI.Issue("node-3", rogue, c.PKI.CA, rogue)
	bad := c.AddNode() // node-3

	// It joins gossip (the others list it) and keeps retrying the
	// inter-node check; /readyz names the cause.
	attempts := regexp.MustCompile(`; (\d+) attempts;`)
	var body string
	chatdtest.Eventually(t, 30*time.Second, "node-3 listed by node-0 and explaining itself after 3 link checks", func() (bool, string) {
		st, err := c.Nodes[0].Status()
		if err != nil || !slices.ContainsFunc(st.Members, func(m admin.Member) bool { return m.Name == bad.Name }) {
			return false, fmt.Sprintf("node-0 lists %+v (err %v)", st.Members, err)
		}
		var code int
		code, body = readyz(t, bad.Addr)
		if code == http.StatusOK {
			t.Fatalf("node-3 with an untrusted certificate is ready")
		}
		m := attempts.FindStringSubmatch(body)
		n := 0
		if m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		return n >= 3, "node-3 /readyz: " + body
	})
	const cause = "not ready: no authenticated inter-node connection yet: check that every node's certificate (--peer-tls-cert-file) names the node and chains to a CA the others trust"
	if !strings.HasPrefix(body, cause) || !strings.Contains(body, "the peer refused our certificate") {
		t.Fatalf("node-3 /readyz body = %q, want it to start with %q and say its certificate was refused", body, cause)
	}

	// Clients on the good nodes keep chatting, in the old room and in
	// new ones, which are all placed on the good nodes: were node-3
	// active, a quarter of them would wait for an owner nobody reaches.
	chat("after")
	carl := chatdtest.Connect(t, c.Nodes[1].URL, "carl")
	for i := range 12 {
		room := fmt.Sprint("room-", i)
		carl.Join(room)
		if ack := carl.Say(room, "c-"+room, "hello"); ack.Seq != 1 {
			t.Fatalf("%s: ack %+v", room, ack)
		}
		carl.NextMessage()
	}
	chat("later")

	// Nobody sees it active, itself included, and it is still not ready.
	for _, n := range c.Nodes {
		st, err := n.Status()
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if !slices.Equal(st.Active, good) {
			t.Errorf("%s sees active %v, want %v", n.Name, st.Active, good)
		}
		for _, m := range st.Members {
			if m.Name == bad.Name && m.State != "joining" {
				t.Errorf("%s sees node-3 %s, want joining", n.Name, m.State)
			}
		}
		if n != bad && len(st.Members) != 4 {
			t.Errorf("%s lists %d members, want 4 (node-3 is in gossip)", n.Name, len(st.Members))
		}
	}
	if bad.Ready() {
		t.Fatal("node-3 became ready")
	}

	// The ring view of a good node marks node-3 unknown and counts the
	// rooms on the others.
	var ring admin.RingStatus
	getJSON(t, c.Nodes[1].AdminURL("/admin/ring"), &ring)
	if ring.Unknown != 1 || len(ring.Members) != 4 || ring.RoomsOwned != 13 {
		t.Fatalf("ring = %+v, want 4 members, node-3 unknown, 13 rooms owned", ring)
	}
	for _, m := range ring.Members {
		known := m.RoomsOwned != nil && m.SameView != nil && *m.SameView && m.Error == ""
		if (m.Name == bad.Name) == known {
			t.Errorf("ring member %+v: known=%v", m, known)
		}
		if m.Name == bad.Name && !strings.Contains(m.Error, "authentication failed") {
			t.Errorf("ring error for node-3 = %q, want the authentication failure", m.Error)
		}
	}

	// It stops promptly: its retry loop ends with the node.
	start := time.Now()
	bad.Stop()
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("node-3 took %v to stop", d)
	}
	c.WaitConverged()
	chat("end")
}

// A node whose gossip keyring or cluster label differs from the cluster's
// never joins it; it stays not ready and /readyz says where to look.
func TestWrongGossipKeyOrLabelNotReady(t *testing.T) {
	dir := t.TempDir()
	wrongKeyring := filepath.Join(dir, "wrong.keyring")
	writeFile(t, wrongKeyring, chatdtest.NewGossipKey(t)+"\n")
	// A node alone that bootstrapped is ready and active without any
	// inter-node check (StartCluster waits for that).
	c := chatdtest.StartCluster(t, 1)
	seed := c.Nodes[0]

	intruder := func(name string, args ...string) *chatdtest.Node {
		// Ports 0: nobody ever reaches these nodes, so their addresses
		// need not be advertised correctly. Their certificates are good.
		base := append([]string{"--allow-anonymous", "--node-name", name, "--log-level", "debug",
			"--gossip-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", "--gossip-profile", "local",
			"--rejoin-interval", "1s", "--join", seed.Gossip,
			"--drain-timeout", "5s", "--shutdown-timeout", "5s"}, c.PKI.Flags(name)...)
		return &chatdtest.Node{Server: chatdtest.StartWith(t, base, args...), Name: name}
	}
	nodes := []*chatdtest.Node{
		intruder("wrong-key", "--gossip-keyring-file", wrongKeyring),
		intruder("wrong-label", "--cluster-label", "another-cluster"),
	}
	const cause = "not ready: no other member reachable: check the gossip key and cluster label"
	for _, n := range nodes {
		var body string
		chatdtest.Eventually(t, 30*time.Second, n.Name+" explaining why it is not ready", func() (bool, string) {
			var code int
			code, body = readyz(t, n.Addr)
			if code == http.StatusOK {
				t.Fatalf("%s is ready", n.Name)
			}
			return strings.HasPrefix(body, cause), "/readyz: " + body
		})
		if !strings.Contains(body, seed.Gossip) {
			t.Errorf("%s /readyz body %q does not name the seed %s", n.Name, body, seed.Gossip)
		}
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Members) != 1 || st.Members[0].State != "joining" {
			t.Errorf("%s sees members %+v, want only itself, joining", n.Name, st.Members)
		}
	}
	st, err := seed.Status()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 1 || !seed.Ready() {
		t.Fatalf("the seed lists %+v (ready=%v), want itself alone and ready", st.Members, seed.Ready())
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readyz returns the status code and body of a node's /readyz.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
