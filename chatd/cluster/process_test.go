package cluster_test

import (
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/deliverycheck"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// TestProcessesKillOwner runs the checker against three real chatd
// processes and kills the room's owner with SIGKILL mid-traffic. No
// acknowledged message may be lost, duplicated or reordered.
func TestProcessesKillOwner(t *testing.T) {
	c := chatdtest.StartProcessCluster(t, 3, "--expected-nodes", "3")
	room := "process-room"
	k := deliverycheck.NewChecker(t, c.LiveURLs, room)
	wait := k.RunTraffic(3, 2, 80, 20*time.Millisecond)
	k.WaitAcked(20)
	owner := c.ByName(rendezvous.Owner(room, c.LiveNames()))
	t.Logf("killing %s (owner of %s) with SIGKILL after %d acks", owner.Name, room, k.Acked())
	c.Kill(owner)
	wait()
	k.Verify()
}
