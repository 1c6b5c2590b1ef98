package cluster_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// writeAtomically replaces path the way the kubelet updates a mounted
// ConfigMap: the new content appears at once, never half written.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestClusterExpectedNodesFileResizes shows that --expected-nodes-file
// changes the quorum rule of running nodes: a survivor that lost its quorum
// when two of three nodes died accepts messages again, without a restart,
// once the file says the cluster is meant to be one node.
func TestClusterExpectedNodesFileResizes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "expected-nodes")
	writeAtomically(t, file, "3\n")
	c := chatdtest.StartCluster(t, 3, "--expected-nodes-file", file, "--route-timeout", "1s")
	survivor := c.Nodes[0]
	survivor.WaitMetric(t, "chatd_expected_nodes", 3)

	c.Nodes[1].Crash()
	c.Nodes[2].Crash()
	c.WaitViews()
	if survivor.Ready() {
		t.Fatal("a node that sees 1 of 3 expected nodes reports ready")
	}

	writeAtomically(t, file, "1\n")
	survivor.WaitMetric(t, "chatd_expected_nodes", 1)
	if !survivor.Ready() {
		t.Fatal("the survivor is not ready once the file says 1 expected node")
	}
	ann := chatdtest.Connect(t, survivor.URL, "ann")
	room := roomOwnedBy([]string{"node-0"}, "node-0")
	ann.Join(room)
	if ack := ann.Say(room, "c1", "after the resize"); ack.Seq < 1 {
		t.Fatalf("ack = %+v", ack)
	}

	// Raising it again takes the quorum away again.
	writeAtomically(t, file, "2\n")
	survivor.WaitMetric(t, "chatd_expected_nodes", 2)
	if survivor.Ready() {
		t.Fatal("a node that sees 1 of 2 expected nodes reports ready")
	}
}
