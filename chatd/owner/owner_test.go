package owner

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// fakeView is a View the test sets: this node ("a") owns every room unless
// owners says otherwise; peers are the other live members.
type fakeView struct {
	mu       sync.Mutex
	self     string
	owners   map[string]string
	prev     string // previous owner of every room ("" for none)
	peers    []string
	dead     map[string]bool
	replicas []string
	noQuorum bool
	changed  chan struct{}
}

func newFakeView(replicas []string, peers ...string) *fakeView {
	return &fakeView{self: "a", owners: map[string]string{}, replicas: replicas, peers: peers, dead: map[string]bool{}, changed: make(chan struct{})}
}

func (v *fakeView) Owner(room string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if o, ok := v.owners[room]; ok {
		return o
	}
	return v.self
}

func (v *fakeView) PreviousOwner(string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.prev, v.prev != "" && !v.dead[v.prev] && (v.prev == v.self || slices.Contains(v.peers, v.prev))
}

func (v *fakeView) Replicas(string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.replicas)
}

func (v *fakeView) Peers() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.peers)
}

func (v *fakeView) Newcomers() []string { return nil }

func (v *fakeView) Alive(node string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return node == v.self || (slices.Contains(v.peers, node) && !v.dead[node])
}

func (v *fakeView) HasQuorum() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return !v.noQuorum
}

func (v *fakeView) Changed() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

// change applies f to the view and signals the change.
func (v *fakeView) change(f func(v *fakeView)) {
	v.mu.Lock()
	f(v)
	close(v.changed)
	v.changed = make(chan struct{})
	v.mu.Unlock()
}

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

// peerAnswers is the Claim/Fetch/HandOff side of the tests' Outbounds: the
// test says how each peer answers; answers come on their own goroutine, as
// the transport's do, never inside the call.
type peerAnswers struct {
	mu sync.Mutex
	// claim answers a claim (nil: an empty, granted reply).
	claim func(peer string, req ClaimRequest) (ClaimReply, error)
	// fetch answers a fetch (nil: an error).
	fetch func(peer, room string, term uint64) (HandoffState, error)
	// handOff receives a handoff (nil: accepted).
	handOff func(node string, st HandoffState) error
	claims  []ClaimRequest
}

func (p *peerAnswers) Claim(peer string, req ClaimRequest, done func(ClaimReply, error)) {
	p.mu.Lock()
	p.claims = append(p.claims, req)
	f := p.claim
	p.mu.Unlock()
	go func() {
		if f == nil {
			done(ClaimReply{Promised: req.Term}, nil)
			return
		}
		done(f(peer, req))
	}()
}

func (p *peerAnswers) Fetch(peer, room string, term uint64, done func(HandoffState, error)) {
	p.mu.Lock()
	f := p.fetch
	p.mu.Unlock()
	go func() {
		if f == nil {
			done(HandoffState{}, errors.New("no fetch in this test"))
			return
		}
		done(f(peer, room, term))
	}()
}

func (p *peerAnswers) HandOff(node string, st HandoffState, done func(error)) {
	p.mu.Lock()
	f := p.handOff
	p.mu.Unlock()
	go func() {
		if f == nil {
			done(nil)
			return
		}
		done(f(node, st))
	}()
}

// claimsMade returns the claims sent so far.
func (p *peerAnswers) claimsMade() []ClaimRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.claims)
}

// recorder is an Outbound that records what the owner sends and lets the
// test decide when replicas answer. It stands in for the network, which the
// cluster tests exercise for real.
type recorder struct {
	pushLog
	peerAnswers
	mu        sync.Mutex
	replicate []func(error)
	syncs     []func(error)
	synced    []roomlog.Snapshot
}

func (r *recorder) Replicate(_ string, _ Replication, done func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replicate = append(r.replicate, done)
}
func (r *recorder) SyncReplica(_ string, snap roomlog.Snapshot, done func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncs = append(r.syncs, done)
	r.synced = append(r.synced, snap)
}
func (r *recorder) ForgetReplica(string, string) {}

func (r *recorder) take() (rep, syn []func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep, syn = r.replicate, r.syncs
	r.replicate, r.syncs = nil, nil
	return rep, syn
}

// testConfig is the configuration of newService: node "a", alone, windows
// of 100, typing and presence coalesced for a millisecond, a minute's
// handoff grace, and replicas (none when nil) for every room. Tests change
// what they test.
func testConfig(replicas []string) Config {
	return Config{
		Self: "a", HistorySize: 100, DedupeWindow: 100, PresenceListMax: 10,
		RoomIdleTTL: time.Minute, TypingCoalesce: time.Millisecond, PresenceCoalesce: time.Millisecond,
		HandoffGrace: time.Minute, ClaimRetry: time.Millisecond,
		View: newFakeView(replicas),
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

// awaitingConfig is a node "a" that becomes the owner of every room while
// the previous owner "p" is alive and hands the rooms over (its claim
// answers "handing"): requests wait for AcceptHandoff.
func awaitingConfig(out *recorder, replicas []string) Config {
	cfg := testConfig(replicas)
	v := newFakeView(replicas, "p")
	v.prev = "p"
	cfg.View = v
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) {
		if !req.Promise {
			return ClaimReply{Handing: true}, nil
		}
		return ClaimReply{Promised: req.Term}, nil
	}
	return cfg
}

// previousLog is what a previous owner hands over in these tests: room r
// with bob's "old 1" (cid x) and "old 2" (cid y), in term 1.
func previousLog() *roomlog.Log {
	prev := roomlog.New("r", roomlog.Config{HistorySize: 10, DedupeWindow: 10})
	prev.SetTerm(1)
	prev.Append("bob", "x", "old 1")
	prev.Append("bob", "y", "old 2")
	return prev
}

type ackLog struct {
	mu   sync.Mutex
	acks []protocol.Ack
	errs []error
	ch   chan struct{}
}

func (a *ackLog) reply(ack protocol.Ack, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.errs = append(a.errs, err)
	} else {
		a.acks = append(a.acks, ack)
	}
	if a.ch != nil {
		select {
		case a.ch <- struct{}{}:
		default:
		}
	}
}

func (a *ackLog) snapshot() ([]protocol.Ack, []error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.acks), slices.Clone(a.errs)
}

func TestCommitWaitsForReplicas(t *testing.T) {
	out := &recorder{}
	s := newService(out, []string{"b"})
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	_, syncs := out.take()
	if len(syncs) != 1 {
		t.Fatalf("%d syncs for a new room with one replica", len(syncs))
	}
	if out.synced[0].Term == 0 {
		t.Fatal("the replica's first copy carries no term")
	}
	syncs[0](nil)
	var acks ackLog
	s.Publish("r", "ann", "c1", "one", acks.reply)
	s.Publish("r", "ann", "c2", "two", acks.reply)
	s.Publish("r", "ann", "c1", "one again", acks.reply) // duplicate of a pending message
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

func TestHandoffWaitsForPendingAndRefusesOlderCopies(t *testing.T) {
	out := &recorder{}
	var sent *HandoffState
	handed := make(chan struct{})
	out.handOff = func(_ string, st HandoffState) error {
		sent = &st
		close(handed)
		return nil
	}
	s := newService(out, nil)
	var acks ackLog
	for _, cid := range []string{"a", "b", "c"} {
		s.Publish("r", "ann", cid, cid, acks.reply)
	}
	s.HandOff("r", "b")
	<-handed
	if sent == nil || sent.Snapshot.Head != 3 || sent.Snapshot.Term == 0 {
		t.Fatalf("handoff state = %+v, want head 3 and the giver's term", sent)
	}
	waitUntil(t, "the room to be retired after its handoff", func() bool { return len(s.OwnedRooms()) == 0 })
	// The receiver takes a term above the giver's; it then refuses an older
	// copy (a lower term, or the same term and shorter).
	other := newService(&recorder{}, nil)
	if err := other.AcceptHandoff(*sent); err != nil {
		t.Fatal(err)
	}
	if got := other.Promised("r"); got <= sent.Snapshot.Term {
		t.Fatalf("the new owner promised term %d, want above the giver's %d", got, sent.Snapshot.Term)
	}
	older := *sent
	older.Snapshot = roomlog.Snapshot{Room: "r", Epoch: sent.Snapshot.Epoch, Term: sent.Snapshot.Term, Head: 1, Messages: sent.Snapshot.Messages[:1]}
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
	s := startService(t, awaitingConfig(out, nil), out)
	var acks ackLog
	s.Publish("r", "ann", "new", "held", acks.reply)
	if a, e := acks.snapshot(); len(a)+len(e) != 0 {
		t.Fatal("a request was answered before the handoff")
	}
	waitUntil(t, "the claim to ask the previous owner", func() bool { return len(out.claimsMade()) == 1 })
	prev := previousLog()
	if err := s.AcceptHandoff(HandoffState{Snapshot: prev.Snapshot()}); err != nil {
		t.Fatal(err)
	}
	if a, _ := acks.snapshot(); len(a) != 1 || a[0].Seq != 3 {
		t.Fatalf("held publish acked %+v, want seq 3 after the handed-over 2", a)
	}
	if claims := out.claimsMade(); len(claims) != 1 || claims[0].Promise {
		t.Fatalf("claims %+v: a cooperative handoff needs no term round", claims)
	}
}

// waitUntil polls cond until it holds, failing after failsafe: for state
// the owner changes on its own goroutines (claim loops).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(failsafe)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling state with no event to wait on
	}
}
