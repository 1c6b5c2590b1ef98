package eventstream_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

const apiKey = "eventstream-test-api-key-0123456789"

var secret = []byte("eventstream-test-signing-secret")

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// streamArgs are the flags of a node that streams to be and serves the API.
func streamArgs(t *testing.T, be *backend) []string {
	return []string{"--api-key-file", writeFile(t, "keys", apiKey+"\n"), "--event-stream-url", be.URL(),
		"--hook-secret-file", writeFile(t, "secret", string(secret)+"\n"), "--event-stream-timeout", "2s"}
}

// publish posts text to room through the API at admin, retrying 503s and
// lost connections with the same idempotency key until within runs out;
// it returns the message's seq.
func publish(t *testing.T, admins func() []string, room, key, text string, within time.Duration) uint64 {
	t.Helper()
	body, _ := json.Marshal(api.PublishRequest{User: "bob", Text: text, IdempotencyKey: key})
	deadline := time.Now().Add(within)
	for i := 0; ; i++ {
		list := admins()
		base := list[i%len(list)]
		req, _ := http.NewRequest(http.MethodPost, "http://"+base+"/api/v1/rooms/"+url.PathEscape(room)+"/messages", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				var p api.Published
				if err := json.Unmarshal(b, &p); err != nil {
					t.Fatal(err)
				}
				return p.Seq
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("publish %s to %s: %d %s", key, room, resp.StatusCode, b)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s to %s: not acknowledged within %s (last: %v)", key, room, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// One node: every message a client sends and a deletion reach the backend
// once, signed, in order, with the ids and contents the clients saw; a
// backend answering 500 for a while, then killed and started again, and
// then refusing a batch for good (400) lose nothing else and block nothing.
func TestEventStreamOneNode(t *testing.T) {
	be := newBackend(t, secret)
	srv := chatdtest.Start(t, append(streamArgs(t, be), "--allow-anonymous")...)
	admins := func() []string { return []string{srv.AdminAddr} }
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")
	var acked []protocol.Ack
	for i := 1; i <= 5; i++ {
		acked = append(acked, ann.Say("lobby", fmt.Sprint("c", i), fmt.Sprint("hello ", i)))
	}
	be.waitAll(t, chatdtest.Timeout, map[string]uint64{"lobby": acked[4].Seq})
	for i, a := range acked {
		e, ok := be.event("lobby", a.Seq)
		if !ok || e.Type != protocol.TypeMessage || e.From != "ann" || e.CID != a.CID || e.TS != a.TS || e.Text != fmt.Sprint("hello ", i+1) {
			t.Fatalf("seq %d reached the backend as %+v (%v)", a.Seq, e, ok)
		}
	}
	// A deletion is an entry like a message (the backend had the message
	// already: it deletes its own copy by the deletion's target).
	r := deleteMessage(t, srv.AdminAddr, "lobby", acked[1].Seq)
	be.waitAll(t, chatdtest.Timeout, map[string]uint64{"lobby": r})
	if e, _ := be.event("lobby", r); e.Type != protocol.TypeDeleted || e.Target != acked[1].Seq || e.From != api.SystemSender {
		t.Fatalf("the deletion reached the backend as %+v", e)
	}

	// The backend fails: 500s, then it dies and comes back. Messages sent
	// meanwhile arrive once it takes them again, in order.
	be.setStatus(http.StatusInternalServerError)
	heads := map[string]uint64{}
	for i := 0; i < 20; i++ {
		room := fmt.Sprint("room-", i%4)
		heads[room] = publish(t, admins, room, fmt.Sprint("down-", i), fmt.Sprint("while down ", i), chatdtest.Timeout)
	}
	waitMetric(t, srv, `chatd_eventstream_batches_total{result="retry"}`, 2)
	be.stop()
	heads["lobby"] = publish(t, admins, "lobby", "dead", "while dead", chatdtest.Timeout)
	be.setStatus(http.StatusOK)
	be.restart()
	be.waitAll(t, chatdtest.Timeout+10*time.Second, heads) // the backoff tops at 10 s

	// A batch the backend refuses for good is a dead letter; the stream
	// goes on with the next entries.
	be.setStatus(http.StatusBadRequest)
	lost := publish(t, admins, "lobby", "refused", "refused for good", chatdtest.Timeout)
	waitMetric(t, srv, "chatd_eventstream_dead_letters_total", 1)
	be.setStatus(http.StatusOK)
	after := publish(t, admins, "lobby", "after", "after the dead letter", chatdtest.Timeout)
	chatdtest.Eventually(t, chatdtest.Timeout, "the entry after the dead letter at the backend", func() (bool, string) {
		_, ok := be.event("lobby", after)
		return ok, ""
	})
	if _, ok := be.event("lobby", lost); ok {
		t.Fatal("the refused entry was delivered after all")
	}
	// The refused entry is the one gap the backend saw.
	be.mu.Lock()
	problems := be.problems
	be.problems = nil
	be.mu.Unlock()
	if len(problems) != 1 {
		t.Fatalf("problems after a dead letter: %v, want the one gap", problems)
	}
	be.check(t)
}

// streamingCluster starts three processes with their own disks,
// replication factor 2, streaming to be; admins lists their admin
// listeners as they are now (a restart may move one).
func streamingCluster(t *testing.T, be *backend) (c *chatdtest.ProcessCluster, admins func() []string) {
	t.Helper()
	c = chatdtest.StartProcessClusterWith(t, 3, chatdtest.DataDirs(t.TempDir()),
		append(streamArgs(t, be), "--expected-nodes", "3", "--replication-factor", "2")...)
	return c, func() []string {
		var out []string
		for _, n := range c.Nodes {
			out = append(out, n.AdminAddr)
		}
		return out
	}
}

// deleteMessage deletes seq of room through the API and returns the
// deletion's seq.
func deleteMessage(t *testing.T, admin, room string, seq uint64) uint64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+admin+"/api/v1/rooms/"+room+"/messages/"+strconv.FormatUint(seq, 10), nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d api.Deleted
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %v", resp.StatusCode, err)
	}
	return d.DeletionSeq
}

// waitMetric waits until a counter of the node's /metrics reaches at least
// want.
func waitMetric(t *testing.T, srv *chatdtest.Server, series string, want float64) {
	t.Helper()
	chatdtest.Eventually(t, chatdtest.Timeout, series+" ≥ "+fmt.Sprint(want), func() (bool, string) {
		v := srv.Metric(t, series)
		return v >= want, fmt.Sprint(v)
	})
}

// Three processes with their own disks, replication factor 2: the owner of
// some rooms is killed (SIGKILL) while they take messages and its entries
// are on their way to the backend, then started again; later every node is
// killed at once and started again. Every acknowledged message reaches the
// backend at least once, in each room's order, redeliveries identical; the
// rooms the dead owner left behind are delivered by their new owner
// without anyone asking for them.
func TestEventStreamSurvivesKills(t *testing.T) {
	be := newBackend(t, secret)
	c, admins := streamingCluster(t, be)
	victim := c.Nodes[1]
	var rooms []string
	for i := 0; len(rooms) < 6; i++ {
		room := fmt.Sprint("stream-", i)
		if (len(rooms) < 3) == (rendezvous.Owner(room, c.LiveNames()) == victim.Name) {
			rooms = append(rooms, room) // three the victim owns, three it does not
		}
	}
	within := testtime.Bound(60 * time.Second)
	heads := map[string]uint64{}
	send := func(round string, n int) {
		for i := 0; i < n; i++ {
			for _, room := range rooms {
				heads[room] = publish(t, admins, room, fmt.Sprint(round, "-", i), fmt.Sprint(round, " ", i), within)
			}
		}
	}
	send("before", 10)
	c.Kill(victim)
	send("during", 10) // the victim's rooms move to their replicas meanwhile
	c.Restart(victim)
	c.WaitConverged()
	send("after", 5)
	be.waitAll(t, within, heads)

	// Messages acknowledged while the backend refuses them, then every
	// node killed at once and started again, and nobody asks for the rooms
	// after: each node's streamer claims the rooms it owns whose entries
	// the backend lacks, and goes on from the stored cursors (the backend
	// gets back few of the entries it had: not the whole history again).
	be.setStatus(http.StatusServiceUnavailable)
	send("undelivered", 3)
	be.mu.Lock()
	had, dupsBefore := len(be.byID), be.dups
	be.mu.Unlock()
	c.KillAll(c.Nodes...)
	be.setStatus(http.StatusOK)
	for _, n := range c.All() {
		c.Restart(n)
	}
	c.WaitConverged()
	be.waitAll(t, within, heads)
	be.mu.Lock()
	again := be.dups - dupsBefore
	be.mu.Unlock()
	if again > had/2 {
		t.Fatalf("after the restart the backend got %d of the %d entries it had again: the cursors did not survive", again, had)
	}
	be.check(t)
}
