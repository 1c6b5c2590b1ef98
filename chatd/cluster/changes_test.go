package cluster_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/ring"
)

// runChanges starts a checker on a 3-node cluster with subscribers on every
// node and two publishers, applies change once traffic flows, and verifies
// that no acknowledged message was lost, duplicated or reordered.
func runChanges(t *testing.T, room string, change func(c *chatdtest.Cluster)) {
	c := chatdtest.StartCluster(t, 3)
	k := chatdtest.NewChecker(t, c, room)
	for i := 0; i < 3; i++ {
		k.AddSubscriber(fmt.Sprint("sub", i), i)
	}
	var pubs sync.WaitGroup
	for i := 0; i < 2; i++ {
		pubs.Add(1)
		go func(i int) {
			defer pubs.Done()
			k.Publish(fmt.Sprint("pub", i), i+1, 60, 15*time.Millisecond)
		}(i)
	}
	deadline := time.Now().Add(chatdtest.Timeout)
	for k.Acked() < 20 {
		if time.Now().After(deadline) {
			t.Fatal("traffic never started")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	change(c)
	pubs.Wait()
	k.Verify()
}

// ownerNode returns the cluster node that owns room among the live ones.
func ownerNode(c *chatdtest.Cluster, room string) *chatdtest.Node {
	var names []string
	byName := map[string]*chatdtest.Node{}
	for _, n := range c.Live() {
		names = append(names, n.Name)
		byName[n.Name] = n
	}
	return byName[ring.Owner(room, names)]
}

func TestClusterAddNodeUnderTraffic(t *testing.T) {
	// Pick a room that the fourth node will own, so the move is exercised.
	room := roomOwnedBy([]string{"node-0", "node-1", "node-2", "node-3"}, "node-3")
	runChanges(t, room, func(c *chatdtest.Cluster) {
		c.AddNode()
		c.WaitConverged()
	})
}

func TestClusterDrainOwnerUnderTraffic(t *testing.T) {
	room := "drain-room"
	runChanges(t, room, func(c *chatdtest.Cluster) {
		ownerNode(c, room).Stop()
		c.WaitConverged()
	})
}

func TestClusterKillOwnerUnderTraffic(t *testing.T) {
	room := "kill-room"
	runChanges(t, room, func(c *chatdtest.Cluster) {
		ownerNode(c, room).Crash()
		c.WaitConverged()
	})
}

// roomOwnedBy finds a room name that want owns among nodes.
func roomOwnedBy(nodes []string, want string) string {
	for i := 0; ; i++ {
		room := fmt.Sprint("room-", i)
		if ring.Owner(room, nodes) == want {
			return room
		}
	}
}
