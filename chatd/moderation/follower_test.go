package moderation

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// enforcement is one call a Follower made on its hub's connections.
type enforcement struct {
	op, user, room, reason string
	code                   int
}

// recordingHub is the hub's side of a Follower: joins are accepted
// silently (the test plays the hub's answers), kicks and disconnects are
// recorded in call order.
type recordingHub struct{ calls chan enforcement }

func (h *recordingHub) Join(hub.Conn, hub.JoinRequest) {}

func (h *recordingHub) Kick(room, user, reason string) int {
	h.calls <- enforcement{op: "kick", user: user, room: room, reason: reason}
	return 1
}

func (h *recordingHub) DisconnectUser(user string, code int, reason string) int {
	h.calls <- enforcement{op: "disconnect", user: user, code: code, reason: reason}
	return 1
}

// logOwner plays the owner of the moderation log: one page holding the
// whole log of the current epoch.
type logOwner struct {
	mu    sync.Mutex
	epoch string
	log   []protocol.Message
}

func (o *logOwner) set(epoch string, entries ...Entry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.epoch, o.log = epoch, nil
	for i, e := range entries {
		o.log = append(o.log, protocol.Message{Type: protocol.TypeMessage, Room: Room, Seq: uint64(i + 1), From: Sender, Text: e.Encode()})
	}
}

func (o *logOwner) History(room string, _ uint64, _ int, reply func(protocol.HistoryPage, error)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	reply(protocol.HistoryPage{Type: protocol.TypeHistory, Room: room, Epoch: o.epoch, Head: uint64(len(o.log)), Messages: o.log}, nil)
}

// joined is the hub's joined frame for the log, as a subscription that
// learns of a new epoch gets it.
func joined(t *testing.T, id, epoch string, head uint64) []byte {
	t.Helper()
	b, err := json.Marshal(protocol.Joined{Type: protocol.TypeJoined, ID: id, Room: Room, Epoch: epoch, Head: head})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A ban this node learns of by reading the log again, not as a live
// message (the log restarted in a new epoch under the subscription, which
// is how a node finds out around a move of the log's room), is enforced
// on the node's connections as a live one is: a cluster-wide ban closes
// the user's connections, a room ban kicks them from the room. A ban the
// node already held is not enforced a second time by a later reload.
func TestFollowerEnforcesBansLearnedByReloading(t *testing.T) {
	h := &recordingHub{calls: make(chan enforcement, 16)}
	owner := &logOwner{}
	owner.set("e1")
	state := NewState(nil)
	f := NewFollower(state, h, owner, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	expect := func(want enforcement) {
		t.Helper()
		select {
		case got := <-h.calls:
			if got != want {
				t.Fatalf("the follower did %+v, want %+v", got, want)
			}
		case <-time.After(testtime.Timeout):
			t.Fatalf("the follower never did %+v", want)
		}
	}

	f.Enqueue(joined(t, joinID, "e1", 0))
	bob := Entry{Op: OpBan, User: "bob", Reason: "fraud", At: 1}
	eve := Entry{Op: OpBan, User: "eve", Room: "lobby", Reason: "spam", At: 2}
	owner.set("e2", bob, eve)
	f.Enqueue(joined(t, "", "e2", 2))
	expect(enforcement{op: "disconnect", user: "bob", code: protocol.CloseDisconnectedNoReconnect, reason: "fraud"})
	expect(enforcement{op: "kick", user: "eve", room: "lobby", reason: "spam"})
	if _, ok := state.Banned("bob", "any"); !ok {
		t.Fatal("the reloaded state does not hold bob's ban")
	}

	// The next epoch holds the same two bans and a new one: only the new
	// one is enforced (the calls come in order from the follower's one
	// goroutine, so carl's coming first shows bob and eve were skipped).
	carl := Entry{Op: OpBan, User: "carl", At: 3}
	owner.set("e3", bob, eve, carl)
	f.Enqueue(joined(t, "", "e3", 3))
	expect(enforcement{op: "disconnect", user: "carl", code: protocol.CloseDisconnectedNoReconnect, reason: "banned"})
}
