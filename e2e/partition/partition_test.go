//go:build partition

// Package partition tests ringchat's split-brain policy with real network
// isolation: chatd nodes run as containers (FROM-scratch images built from
// the static binary) on a Docker network that this test creates, and one
// node is cut off with `docker network disconnect`, then reconnected.
// faults_test.go runs two more faults under traffic in many rooms, checked
// by deliverycheck.MultiRoom: a room owner paused with `docker pause`, and
// a partition healed; the run ends with their table.
//
// Run it with `make test-partition` (which makes sure a Docker engine runs).
package partition

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

const nodes = 3

// adminClient reads the nodes' admin API; its timeout keeps a paused
// container from hanging the test.
var adminClient = &http.Client{Timeout: 10 * time.Second}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

type node struct {
	name      string
	container string
	clusterIP string
	http      string // 127.0.0.1:port published on the host
	admin     string // the admin listener, published on the host too
}

// adminGet sends GET path to n's admin listener with the admin token.
func (n *node) adminGet(path string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+n.admin+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	return adminClient.Do(req)
}

func (n *node) status() (admin.ClusterStatus, error) {
	var st admin.ClusterStatus
	resp, err := n.adminGet("/admin/cluster")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitActive polls until n sees exactly want as active members.
func waitActive(t *testing.T, n *node, want []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last []string
	for time.Now().Before(deadline) {
		if st, err := n.status(); err == nil {
			last = st.Active
			if slices.Equal(st.Active, want) {
				return
			}
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
	t.Fatalf("%s sees active %v, want %v", n.name, last, want)
}

func connect(t *testing.T, n *node, name string) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, "ws://"+n.http+"/ws", protocol.ClientFrame{Name: name}, client.Options{})
	if err != nil {
		t.Fatalf("connect to %s: %v", n.name, err)
	}
	t.Cleanup(c.Close)
	return c
}

// next reads frames until one of type typ (skipping presence and typing).
func next(t *testing.T, c *client.Conn, typ string, v any) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		f, err := c.Read()
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if f.Type == typ {
			if err := f.Decode(v); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}

// waitHistory asks for room's latest history until its client ids are want,
// in order, failing the test after 30 s with what was last served (without
// stopping it, so that the checks after it still report).
func waitHistory(t *testing.T, c *client.Conn, room string, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.Send(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h-" + room, Room: room, Limit: 50}); err != nil {
			t.Fatal(err)
		}
		var page protocol.HistoryPage
		next(t, c, protocol.TypeHistory, &page)
		var cids []string
		for _, m := range page.Messages {
			cids = append(cids, m.CID)
		}
		if slices.Equal(cids, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("history of %s on node-2 after the merge = %v, want %v", room, cids, want)
			return
		}
		time.Sleep(500 * time.Millisecond) // polling interval: the merge has no event to wait on
	}
}

// readyz returns the status and body of n's /readyz.
func readyz(t *testing.T, n *node) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + n.http + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz on %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metric returns one series of n's /metrics (0 when it is not there yet).
func metric(t *testing.T, n *node, series string) float64 {
	t.Helper()
	resp, err := n.adminGet("/metrics")
	if err != nil {
		t.Fatalf("GET /metrics on %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return 0
}

// checkReceived checks that a subscriber of room received its messages
// 1..len(want) exactly once each, in order, with the client ids want.
func checkReceived(t *testing.T, who string, got []protocol.Message, want []string) {
	t.Helper()
	var cids []string
	for i, m := range got {
		if m.Seq != uint64(i+1) {
			t.Fatalf("%s received seq %d as its message %d (a gap or a duplicate): %v", who, m.Seq, i+1, got)
		}
		cids = append(cids, m.CID)
	}
	if !slices.Equal(cids, want) {
		t.Fatalf("%s received %v, want %v", who, cids, want)
	}
}

func TestPartitionMinorityRefusesAndMerges(t *testing.T) {
	c := startCluster(t)
	ns, names, clusterNet := c.nodes, c.names, c.clusterNet

	// A room owned on the majority side, so it keeps its owner.
	room := ""
	for i := 0; room == ""; i++ {
		if r := fmt.Sprint("room-", i); rendezvous.Owner(r, names) != "node-2" {
			room = r
		}
	}
	// And a room node-2 owns: the majority must take it over from its
	// replica, and node-2 must get it back, complete, after the merge.
	cutRoom := ""
	for i := 0; cutRoom == ""; i++ {
		if r := fmt.Sprint("cut-", i); rendezvous.Owner(r, names) == "node-2" {
			cutRoom = r
		}
	}
	ann := connect(t, ns[0], "ann")
	if err := ann.Send(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: room}); err != nil {
		t.Fatal(err)
	}
	var joined protocol.Joined
	next(t, ann, protocol.TypeJoined, &joined)
	send := func(c *client.Conn, cid string) protocol.Ack {
		t.Helper()
		if err := c.Send(protocol.ClientFrame{Type: protocol.TypeSend, ID: cid, Room: room, CID: cid, Text: cid}); err != nil {
			t.Fatal(err)
		}
		var ack protocol.Ack
		next(t, c, protocol.TypeAck, &ack)
		return ack
	}
	for i := 0; i < 3; i++ {
		send(ann, fmt.Sprint("before-", i))
	}
	dan := connect(t, ns[1], "dan")
	// received keeps the messages each client got while the test read its
	// frames for something else (sendTo, the minority send), to check them at
	// the end.
	received := map[*client.Conn][]protocol.Message{}
	record := func(c *client.Conn, f client.Frame) {
		t.Helper()
		if f.Type != protocol.TypeMessage {
			return
		}
		var m protocol.Message
		if err := f.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m.Room == cutRoom {
			received[c] = append(received[c], m)
		}
	}
	sendTo := func(c *client.Conn, r, cid string) protocol.Ack {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if err := c.Send(protocol.ClientFrame{Type: protocol.TypeSend, ID: cid, Room: r, CID: cid, Text: cid}); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			for {
				f, err := c.Read()
				if err != nil {
					t.Fatal(err)
				}
				record(c, f)
				if f.Type == protocol.TypeAck {
					var ack protocol.Ack
					_ = f.Decode(&ack)
					if ack.CID == cid {
						return ack
					}
				}
				if f.Type == protocol.TypeError {
					break // unavailable while the room moves: resend the same cid
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never acknowledged", cid)
			}
			time.Sleep(300 * time.Millisecond) // client backoff before resending
		}
	}
	for _, r := range []string{cutRoom} {
		if err := dan.Send(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: r}); err != nil {
			t.Fatal(err)
		}
		next(t, dan, protocol.TypeJoined, &joined)
	}
	// eve joins cutRoom on node-2, its owner, before the cut, and stays
	// connected there through the partition and its healing.
	eve := connect(t, ns[2], "eve")
	if err := eve.Send(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: cutRoom}); err != nil {
		t.Fatal(err)
	}
	next(t, eve, protocol.TypeJoined, &joined)
	if joined.Head != 0 {
		t.Fatalf("eve joined %s at head %d, want a new room", cutRoom, joined.Head)
	}
	sendTo(dan, cutRoom, "cut-before-0")
	sendTo(dan, cutRoom, "cut-before-1")

	// Cut node-2 off the cluster network; clients still reach it.
	docker(t, "network", "disconnect", clusterNet, ns[2].container)
	waitActive(t, ns[0], names[:2], 60*time.Second)
	waitActive(t, ns[2], []string{"node-2"}, 60*time.Second)

	// Majority: business as usual.
	var acked []string
	for i := 0; i < 5; i++ {
		cid := fmt.Sprint("during-", i)
		if ack := send(ann, cid); ack.Seq == 0 {
			t.Fatalf("majority ack %+v", ack)
		}
		acked = append(acked, cid)
	}
	// The room node-2 owned moves to the majority, with its history.
	for i := 0; i < 3; i++ {
		sendTo(dan, cutRoom, fmt.Sprint("cut-during-", i))
	}

	// Minority: node-2 cannot reach the room's owner and may not start the
	// room itself, so the join is refused as unavailable (the client keeps
	// retrying), and so is any message.
	bob := connect(t, ns[2], "bob")
	if err := bob.Send(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: room}); err != nil {
		t.Fatal(err)
	}
	var refusal protocol.Error
	next(t, bob, protocol.TypeError, &refusal)
	if refusal.Code != protocol.CodeUnavailable || refusal.ID != "j" {
		t.Fatalf("minority answer %+v, want unavailable", refusal)
	}

	// node-2 still holds cutRoom (it owns it in its own view of one), and
	// eve is joined to it there; her message is refused all the same: no
	// quorum, so nothing is sequenced, let alone acknowledged. node-2 says
	// why on /readyz, which takes it out of a Service's endpoints.
	if code, body := readyz(t, ns[2]); code != http.StatusServiceUnavailable || !strings.Contains(body, "quorum") {
		t.Fatalf("node-2's /readyz during the cut = %d %q, want 503 mentioning quorum", code, body)
	}
	storedBefore := metric(t, ns[2], "chatd_messages_total")
	if err := eve.Send(protocol.ClientFrame{Type: protocol.TypeSend, ID: "minority", Room: cutRoom, CID: "cut-minority", Text: "cut-minority"}); err != nil {
		t.Fatal(err)
	}
	_ = eve.SetReadDeadline(time.Now().Add(30 * time.Second))
	for refused := false; !refused; {
		f, err := eve.Read()
		if err != nil {
			t.Fatalf("waiting for the minority's answer to eve: %v", err)
		}
		record(eve, f)
		switch f.Type {
		case protocol.TypeAck:
			t.Fatalf("the cut-off node acknowledged %s", f.Raw)
		case protocol.TypeMessage:
			var m protocol.Message
			_ = f.Decode(&m)
			if m.CID == "cut-minority" {
				t.Fatalf("the cut-off node delivered the message it cannot commit: %s", f.Raw)
			}
		case protocol.TypeError:
			var e protocol.Error
			if err := f.Decode(&e); err != nil {
				t.Fatal(err)
			}
			if e.Code != protocol.CodeUnavailable || e.ID != "minority" || e.Room != cutRoom || !strings.Contains(e.Message, "quorum") {
				t.Fatalf("the cut-off node answered eve's send with %+v, want unavailable for lack of quorum", e)
			}
			refused = true
		}
	}
	if stored := metric(t, ns[2], "chatd_messages_total"); stored != storedBefore {
		t.Fatalf("chatd_messages_total on node-2 went from %v to %v during the cut", storedBefore, stored)
	}

	// Heal: the rejoin loop merges the sides.
	docker(t, "network", "connect", "--ip", ns[2].clusterIP, clusterNet, ns[2].container)
	for _, n := range ns {
		waitActive(t, n, names, 90*time.Second)
	}

	deadline := time.Now().Add(30 * time.Second)
	for code, body := readyz(t, ns[2]); code != http.StatusOK; code, body = readyz(t, ns[2]) {
		if time.Now().After(deadline) {
			t.Fatalf("node-2's /readyz after the merge = %d %q, want 200", code, body)
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}

	// After the merge node-2 serves the whole history, in order, once, and
	// takes messages again.
	carl := connect(t, ns[2], "carl")
	waitHistory(t, carl, room, append([]string{"before-0", "before-1", "before-2"}, acked...))
	// node-2 owns cutRoom again and must have it whole.
	cutHistory := []string{"cut-before-0", "cut-before-1", "cut-during-0", "cut-during-1", "cut-during-2"}
	waitHistory(t, carl, cutRoom, cutHistory)
	// eve sends the refused message again, with the same cid: it is
	// acknowledged once, after what the majority acknowledged meanwhile, and
	// a further resend is answered as its duplicate, not stored again.
	if ack := sendTo(eve, cutRoom, "cut-minority"); ack.Seq != uint64(len(cutHistory)+1) {
		t.Fatalf("eve's resend after the merge = %+v, want seq %d", ack, len(cutHistory)+1)
	}
	if ack := sendTo(eve, cutRoom, "cut-minority"); !ack.Duplicate || ack.Seq != uint64(len(cutHistory)+1) {
		t.Fatalf("eve's second resend = %+v, want a duplicate of seq %d", ack, len(cutHistory)+1)
	}
	cutHistory = append(cutHistory, "cut-minority")
	waitHistory(t, carl, cutRoom, cutHistory)
	// Both subscribers of cutRoom, dan on the majority side and eve on the
	// cut-off node, received all of it, each message once, in order: eve's
	// node filled the gap the partition left.
	for _, sub := range []struct {
		name string
		c    *client.Conn
	}{{"dan", dan}, {"eve", eve}} {
		_ = sub.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for len(received[sub.c]) < len(cutHistory) {
			f, err := sub.c.Read()
			if err != nil {
				t.Fatalf("%s waiting for %s's messages (has %v): %v", sub.name, cutRoom, received[sub.c], err)
			}
			record(sub.c, f)
		}
		checkReceived(t, sub.name, received[sub.c], cutHistory)
	}
	if err := carl.Send(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: room}); err != nil {
		t.Fatal(err)
	}
	next(t, carl, protocol.TypeJoined, &joined)
	if ack := send(carl, "after-merge"); ack.Seq != uint64(len(acked)+4) {
		t.Fatalf("ack after the merge = %+v, want seq %d", ack, len(acked)+4)
	}
}
