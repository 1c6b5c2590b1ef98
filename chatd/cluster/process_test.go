package cluster_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/ring"
)

// TestProcessesKillOwner runs the checker against three real chatd
// processes and kills the room's owner with SIGKILL mid-traffic. No
// acknowledged message may be lost, duplicated or reordered.
func TestProcessesKillOwner(t *testing.T) {
	c := chatdtest.StartProcessCluster(t, 3, "--expected-nodes", "3")
	room := "process-room"
	k := chatdtest.NewChecker(t, c.LiveURLs, room)
	for i := 0; i < 3; i++ {
		k.AddSubscriber(fmt.Sprint("sub", i), i)
	}
	var pubs sync.WaitGroup
	for i := 0; i < 2; i++ {
		pubs.Add(1)
		go func(i int) {
			defer pubs.Done()
			k.Publish(fmt.Sprint("pub", i), i+1, 80, 20*time.Millisecond)
		}(i)
	}
	deadline := time.Now().Add(chatdtest.Timeout)
	for k.Acked() < 20 {
		if time.Now().After(deadline) {
			t.Fatal("traffic never started")
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
	owner := c.ByName(ring.Owner(room, c.LiveNames()))
	t.Logf("killing %s (owner of %s) with SIGKILL after %d acks", owner.Name, room, k.Acked())
	c.Kill(owner)
	pubs.Wait()
	k.Verify()
}
