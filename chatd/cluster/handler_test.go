package cluster

import (
	"testing"

	"github.com/ringchat/ringchat/chatd/rpc"
)

// Every op of the inter-node protocol is something a node handles, as a
// request or as a push: an op left out would be refused by every node.
func TestEveryOpHasAHandler(t *testing.T) {
	n := startNodes(t, "node-a")["node-a"]
	for _, o := range rpc.Ops() {
		if !n.table.Handles(o) {
			t.Errorf("no handler for op %d (%s)", o, o)
		}
	}
}
