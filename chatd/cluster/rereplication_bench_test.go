package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// BenchmarkReReplicationAfterKill measures the window in which a room has
// one copy after a node dies: three chatd processes, replication factor 2,
// 1,000 rooms owned per node (3,000 rooms with a message each); one node is
// killed with SIGKILL, and the time until every room is served by a
// survivor with both its copies complete (owner.RoomStat.InSync on
// /admin/rooms) is reported as rerepl-ms, next to memberlist's failure
// detection time (detect-ms) it contains. Run it with
//
//	go test -run '^$' -bench ReReplication -benchtime 1x ./chatd/cluster/
func BenchmarkReReplicationAfterKill(b *testing.B) {
	const nodes, roomsPerNode = 3, 1000
	rooms := nodes * roomsPerNode
	detect := membership.FailureDetection(membership.ProfileLocal, nodes)
	for range b.N {
		b.StopTimer()
		c := chatdtest.StartProcessCluster(b, nodes, "--expected-nodes", "3", "--max-rooms", strconv.Itoa(rooms+1),
			"--send-queue", strconv.Itoa(4*rooms), "--history-size", "100")
		cl := chatdtest.Connect(b, c.Nodes[0].URL, "writer")
		for i := range rooms {
			room := fmt.Sprint("rr-", i)
			cl.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j" + room, Room: room})
		}
		for joined := 0; joined < rooms; {
			switch f := cl.Next(); f.Type {
			case protocol.TypeJoined:
				joined++
			case protocol.TypeError:
				b.Fatalf("after %d joins: %s", joined, f.Raw)
			}
		}
		for i := range rooms {
			room := fmt.Sprint("rr-", i)
			cl.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s" + room, Room: room, CID: room, Text: "hello"})
		}
		for acks := 0; acks < rooms; {
			switch f := cl.Next(); f.Type {
			case protocol.TypeAck:
				acks++
			case protocol.TypeError:
				b.Fatalf("after %d acks: %s", acks, f.Raw)
			}
		}
		waitAllInSync(b, c, rooms, time.Minute, "", time.Time{})
		victim := c.Nodes[nodes-1]
		start := time.Now()
		b.StartTimer()
		c.Kill(victim)
		detected := waitAllInSync(b, c, rooms, 10*detect+time.Minute, victim.Name, start)
		took := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(took.Milliseconds()), "rerepl-ms")
		b.ReportMetric(float64(detected.Milliseconds()), "detected-ms")
		b.ReportMetric(float64((took - detected).Milliseconds()), "after-detect-ms")
		b.Logf("every room back to 2 copies %v after the kill; the survivors dropped the victim after %v (memberlist's estimate %v): %v after detection",
			took.Round(time.Millisecond), detected.Round(time.Millisecond), detect, (took - detected).Round(time.Millisecond))
	}
}

// waitAllInSync polls every live node's /admin/rooms until the rooms they
// own add up to want, each in sync. When gone is set it also watches the
// survivors' views (/admin/cluster) and returns how long after start the
// last of them dropped gone.
func waitAllInSync(b *testing.B, c *chatdtest.ProcessCluster, want int, within time.Duration, gone string, start time.Time) time.Duration {
	b.Helper()
	deadline := time.Now().Add(within)
	var detected time.Duration
	for {
		if gone != "" && detected == 0 {
			dropped := 0
			for _, name := range c.LiveNames() {
				var st admin.ClusterStatus
				if getJSON(c.ByName(name).AdminURL("/admin/cluster"), &st) == nil && !slices.ContainsFunc(st.Members, func(m admin.Member) bool { return m.Name == gone }) {
					dropped++
				}
			}
			if dropped == len(c.LiveNames()) {
				detected = time.Since(start)
			}
		}
		owned, inSync := 0, 0
		for _, name := range c.LiveNames() {
			var rooms admin.Rooms
			if getJSON(c.ByName(name).AdminURL("/admin/rooms"), &rooms) != nil {
				continue
			}
			for _, r := range rooms.Rooms {
				owned++
				if r.InSync {
					inSync++
				}
			}
		}
		if owned == want && inSync == want && (gone == "" || detected > 0) {
			return detected
		}
		if time.Now().After(deadline) {
			b.Fatalf("after %v: %d rooms owned, %d in sync, want %d", within, owned, inSync, want)
		}
		time.Sleep(20 * time.Millisecond) // polling the admin API: it has no change feed
	}
}

// getJSON decodes the JSON body of a GET.
func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
