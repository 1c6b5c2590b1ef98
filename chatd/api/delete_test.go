package api_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// deleteMessage deletes seq of room through s and expects 200.
func deleteMessage(t *testing.T, s *chatdtest.Server, room string, seq uint64, by string) api.Deleted {
	t.Helper()
	path := messagesPath(room) + "/" + strconv.FormatUint(seq, 10)
	if by != "" {
		path += "?by=" + by
	}
	r := call(t, http.MethodDelete, adminBase(s), path, keyA, nil)
	if r.status != http.StatusOK {
		t.Fatalf("delete %s/%d: %d %s", room, seq, r.status, r.body)
	}
	var d api.Deleted
	r.decode(t, &d)
	return d
}

// history reads a whole page of room through s.
func historyOf(t *testing.T, s *chatdtest.Server, room string) api.HistoryResponse {
	t.Helper()
	var h api.HistoryResponse
	r := call(t, http.MethodGet, adminBase(s), messagesPath(room)+"?limit=200", keyA, nil)
	if r.status != http.StatusOK {
		t.Fatalf("history of %s: %d %s", room, r.status, r.body)
	}
	r.decode(t, &h)
	return h
}

// renderHistory lists a page as "seq:text", a deleted message as
// "seq:-", a deletion as "seq:del N by WHO".
func renderHistory(t *testing.T, h api.HistoryResponse) string {
	t.Helper()
	var out []string
	for _, m := range h.Messages {
		switch {
		case m.Type == protocol.TypeDeleted:
			out = append(out, fmt.Sprintf("%d:del %d by %s", m.Seq, m.Target, m.From))
		case m.Deleted:
			if m.Text != "" || m.From == "" {
				t.Errorf("deleted seq %d = %+v: want its sender kept and its text gone", m.Seq, m)
			}
			out = append(out, fmt.Sprintf("%d:-", m.Seq))
		default:
			out = append(out, fmt.Sprintf("%d:%s", m.Seq, m.Text))
		}
	}
	return fmt.Sprint(out)
}

// A deletion through one node of three durable processes reaches a
// subscriber on another node live, shows in history through the third
// and in a resume from before the message, is answered already=true when
// retried, and is still in force after every node was killed at once and
// started again: no node serves the deleted text.
func TestDeleteMessageClusterDurable(t *testing.T) {
	keys := keyFile(t, keyA)
	c := chatdtest.StartProcessClusterWith(t, 3, chatdtest.DataDirs(t.TempDir()),
		"--expected-nodes", "3", "--replication-factor", "2", "--api-key-file", keys)
	a, b, third := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	room := roomOwnedBy(c.LiveNames(), third.Name)

	ann := chatdtest.Connect(t, b.URL, "ann")
	joined := ann.Join(room)
	for i := 1; i <= 3; i++ {
		publish(t, a.Server(), room, api.PublishRequest{User: "bob", Text: fmt.Sprint("m", i)})
		ann.NextMessage()
	}
	d := deleteMessage(t, a.Server(), room, 2, "mod-ann")
	if d.Room != room || d.Seq != 2 || d.DeletionSeq != 4 || d.Already || d.Epoch != joined.Epoch {
		t.Fatalf("deletion answered %+v", d)
	}
	var live protocol.Message
	ann.ExpectDecode(protocol.TypeDeleted, &live)
	if live.Seq != 4 || live.Target != 2 || live.From != "mod-ann" || live.Room != room {
		t.Fatalf("ann on %s got %+v", b.Name, live)
	}
	if again := deleteMessage(t, b.Server(), room, 2, ""); !again.Already || again.DeletionSeq != 0 {
		t.Fatalf("a retried deletion answered %+v, want already", again)
	}
	r := call(t, http.MethodDelete, adminBase(a.Server()), messagesPath(room)+"/4", keyA, nil)
	if r.status != http.StatusNotFound || r.apiError(t).Code != api.CodeNoSuchMessage {
		t.Fatalf("deleting the deletion: %d %s", r.status, r.body)
	}
	const want = "[1:m1 2:- 3:m3 4:del 2 by mod-ann]"
	if got := renderHistory(t, historyOf(t, third.Server(), room)); got != want {
		t.Fatalf("history through %s: %s, want %s", third.Name, got, want)
	}

	// A client that saw seq 1 resumes: it is replayed the deleted message
	// as deleted, then the deletion.
	// On ann's node, whose local copy held m2 before the deletion.
	late := chatdtest.Connect(t, b.URL, "late")
	since := uint64(1)
	late.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "resume", Room: room, Epoch: joined.Epoch, Since: &since})
	var resumed protocol.Joined
	late.ExpectDecode(protocol.TypeJoined, &resumed)
	if resumed.Recovered == nil || !*resumed.Recovered {
		t.Fatalf("resume: %+v", resumed)
	}
	if m := late.NextMessage(); m.Seq != 2 || !m.Deleted || m.Text != "" {
		t.Fatalf("resume replayed %+v at seq 2", m)
	}
	if m := late.NextMessage(); m.Seq != 3 || m.Text != "m3" {
		t.Fatalf("resume replayed %+v at seq 3", m)
	}
	var replayed protocol.Message
	late.ExpectDecode(protocol.TypeDeleted, &replayed)
	if replayed.Seq != 4 || replayed.Target != 2 {
		t.Fatalf("resume replayed %+v at seq 4", replayed)
	}

	c.KillAll(c.Nodes...)
	for _, n := range c.All() {
		c.Restart(n)
	}
	c.WaitConverged()
	for _, n := range c.Nodes {
		if got := renderHistory(t, historyOf(t, n.Server(), room)); got != want {
			t.Fatalf("history through %s after every node restarted: %s, want %s", n.Name, got, want)
		}
	}
}
