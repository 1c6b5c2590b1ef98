package owner

import (
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// pushLog is the Push side of the tests' Outbounds: it records the events
// each node is sent.
type pushLog struct {
	mu     sync.Mutex
	pushes map[string][]feed.Event
}

func (p *pushLog) Push(node string, ev feed.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pushes == nil {
		p.pushes = map[string][]feed.Event{}
	}
	p.pushes[node] = append(p.pushes[node], ev)
}

// messages returns the sequences of the messages pushed to node, in order.
func (p *pushLog) messages(node string) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for _, ev := range p.pushes[node] {
		if ev.Kind == feed.KindMessage {
			out = append(out, ev.Seq)
		}
	}
	return out
}

// recorder is an Outbound that records what the owner sends and lets the
// test decide when replicas answer. It stands in for the network, which the
// cluster tests exercise for real.
type recorder struct {
	pushLog
	mu        sync.Mutex
	replicate []func(error)
	syncs     []func(error)
}

func (r *recorder) Replicate(_ string, _ string, _ protocol.Message, done func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replicate = append(r.replicate, done)
}
func (r *recorder) SyncReplica(_ string, _ roomlog.Snapshot, done func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncs = append(r.syncs, done)
}
func (r *recorder) ForgetReplica(string, string) {}

func (r *recorder) take() (rep, syn []func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep, syn = r.replicate, r.syncs
	r.replicate, r.syncs = nil, nil
	return rep, syn
}

// testConfig is the configuration of newService: node "a", windows of 100,
// typing and presence coalesced for a millisecond, a minute's handoff grace,
// and replicas (none when nil) for every room. Tests change what they test.
func testConfig(replicas []string) Config {
	return Config{
		Self: "a", HistorySize: 100, DedupeWindow: 100, PresenceListMax: 10,
		RoomIdleTTL: time.Minute, TypingCoalesce: time.Millisecond, PresenceCoalesce: time.Millisecond,
		HandoffGrace: time.Minute,
		Replicas:     func(string) []string { return replicas },
	}
}

func newService(out Outbound, replicas []string) *Service {
	return New(testConfig(replicas), out, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startService is New with cfg, out and a discarded log; the service is
// closed when the test ends.
func startService(t *testing.T, cfg Config, out Outbound) *Service {
	s := New(cfg, out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(s.Close)
	return s
}

func create(string, bool) Claim { return ClaimCreate }

func await(string, bool) Claim { return ClaimAwaitHandoff }

// previousLog is what a previous owner hands over in these tests: room r
// with bob's "old 1" (cid x) and "old 2" (cid y).
func previousLog() *roomlog.Log {
	prev := roomlog.New("r", roomlog.Config{HistorySize: 10, DedupeWindow: 10})
	prev.Append("bob", "x", "old 1")
	prev.Append("bob", "y", "old 2")
	return prev
}

type ackLog struct {
	mu   sync.Mutex
	acks []protocol.Ack
	errs []error
}

func (a *ackLog) reply(ack protocol.Ack, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.errs = append(a.errs, err)
		return
	}
	a.acks = append(a.acks, ack)
}

func TestCommitWaitsForReplicas(t *testing.T) {
	out := &recorder{}
	s := newService(out, []string{"b"})
	s.Subscribe("r", "n1", []string{"ann"}, create, func(feed.State, error) {})
	_, syncs := out.take()
	if len(syncs) != 1 {
		t.Fatalf("%d syncs for a new room with one replica", len(syncs))
	}
	syncs[0](nil)
	var acks ackLog
	s.Publish("r", "ann", "c1", "one", create, acks.reply)
	s.Publish("r", "ann", "c2", "two", create, acks.reply)
	s.Publish("r", "ann", "c1", "one again", create, acks.reply) // duplicate of a pending message
	if len(acks.acks) != 0 || len(out.messages("n1")) != 0 {
		t.Fatal("acked or fanned out before the replica stored anything")
	}
	reps, _ := out.take()
	if len(reps) != 2 {
		t.Fatalf("%d replications, want 2", len(reps))
	}
	// A replica applies in order (roomlog.Apply refuses gaps), so its ack
	// for a sequence covers every earlier one.
	reps[0](nil)
	if got := out.messages("n1"); len(got) != 1 || len(acks.acks) != 2 {
		t.Fatalf("after seq 1 was stored: fan-out %v, %d acks (want seq 1 and its duplicate)", got, len(acks.acks))
	}
	reps[1](nil)
	if got := out.messages("n1"); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("fan-out %v, want [1 2]", got)
	}
	if len(acks.acks) != 3 || acks.acks[0].Seq != 1 || acks.acks[2].Seq != 2 || !acks.acks[1].Duplicate || acks.acks[1].Seq != 1 || acks.acks[1].MID != acks.acks[0].MID {
		t.Fatalf("acks = %+v", acks.acks)
	}
}

func TestHandoffWaitsForPendingAndRefusesLessHistory(t *testing.T) {
	out := &recorder{}
	s := newService(out, nil)
	var acks ackLog
	for _, cid := range []string{"a", "b", "c"} {
		s.Publish("r", "ann", cid, cid, create, acks.reply)
	}
	var sent *HandoffState
	handed := make(chan struct{})
	s.HandOff("r", func(st HandoffState, done func(error)) {
		sent = &st
		go func() { // as the transport does: never inline
			done(nil)
			close(handed)
		}()
	})
	<-handed
	if sent == nil || sent.Snapshot.Head != 3 {
		t.Fatalf("handoff state = %+v", sent)
	}
	if len(s.OwnedRooms()) != 0 {
		t.Fatal("room still owned after a successful handoff")
	}
	// A node holding more acknowledged history refuses an older copy.
	other := newService(&recorder{}, nil)
	if err := other.AcceptHandoff(*sent); err != nil {
		t.Fatal(err)
	}
	older := *sent
	older.Snapshot = roomlog.Snapshot{Room: "r", Epoch: sent.Snapshot.Epoch, Head: 1, Messages: sent.Snapshot.Messages[:1]}
	if err := other.AcceptHandoff(older); !errors.Is(err, ErrBehind) {
		t.Fatalf("older handoff = %v, want ErrBehind", err)
	}
	empty := HandoffState{Snapshot: roomlog.Snapshot{Room: "r", Epoch: "another"}}
	if err := other.AcceptHandoff(empty); !errors.Is(err, ErrBehind) {
		t.Fatalf("empty handoff of another epoch = %v, want ErrBehind", err)
	}
}

func TestRequestsHeldUntilHandoff(t *testing.T) {
	out := &recorder{}
	s := newService(out, nil)
	var acks ackLog
	s.Publish("r", "ann", "new", "held", await, acks.reply)
	if len(acks.acks)+len(acks.errs) != 0 {
		t.Fatal("a request was answered before the handoff")
	}
	prev := previousLog()
	if err := s.AcceptHandoff(HandoffState{Snapshot: prev.Snapshot()}); err != nil {
		t.Fatal(err)
	}
	if len(acks.acks) != 1 || acks.acks[0].Seq != 3 {
		t.Fatalf("held publish acked %+v, want seq 3 after the handed-over 2", acks.acks)
	}
}
