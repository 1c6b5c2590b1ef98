//go:build faults

package eventstream_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

// A backend that answers 500 for a whole minute while messages keep
// coming, during which a room's owner is killed (SIGKILL) and the backend
// itself dies and comes back: once it takes batches again, every
// acknowledged message arrives, in each room's order, redeliveries
// identical (make test-faults; a minute is too long for make test).
func TestEventStreamBackendDownForAMinute(t *testing.T) {
	be := newBackend(t, secret)
	c, admins := streamingCluster(t, be)
	rooms := []string{"outage-a", "outage-b", "outage-c", "outage-d"}
	victim := c.ByName(rendezvous.Owner(rooms[0], c.LiveNames()))
	within := testtime.Bound(60 * time.Second)
	heads := map[string]uint64{}
	be.setStatus(http.StatusInternalServerError)
	start := time.Now()
	killed, backendDied := false, false
	for i := 0; time.Since(start) < time.Minute; i++ {
		for _, room := range rooms {
			heads[room] = publish(t, admins, room, fmt.Sprint("m-", i), fmt.Sprint("message ", i), within)
		}
		switch {
		case !killed && time.Since(start) > 20*time.Second:
			killed = true
			c.Kill(victim)
		case killed && !backendDied && time.Since(start) > 30*time.Second:
			backendDied = true
			c.Restart(victim)
			be.stop()
			be.restart()
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.WaitConverged()
	be.setStatus(http.StatusOK)
	be.waitAll(t, within, heads)
	be.check(t)
}
