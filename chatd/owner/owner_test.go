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
	fetch func(peer string, req FetchRequest) (FetchReply, error)
	// handOff receives a handoff notice (nil: accepted).
	handOff func(node string, n HandoffNotice) error
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

func (p *peerAnswers) Fetch(peer string, req FetchRequest, done func(FetchReply, error)) {
	p.mu.Lock()
	f := p.fetch
	p.mu.Unlock()
	go func() {
		if f == nil {
			done(FetchReply{}, errors.New("no fetch in this test"))
			return
		}
		done(f(peer, req))
	}()
}

func (p *peerAnswers) HandOff(node string, n HandoffNotice, done func(error)) {
	p.mu.Lock()
	f := p.handOff
	p.mu.Unlock()
	go func() {
		if f == nil {
			done(nil)
			return
		}
		done(f(node, n))
	}()
}

// fetchFrom answers fetches from copies (by peer) as a real holder does.
func fetchFrom(copies map[string]*roomlog.Log, nodes map[string][]string) func(string, FetchRequest) (FetchReply, error) {
	return func(peer string, req FetchRequest) (FetchReply, error) {
		l := copies[peer]
		if l == nil {
			return FetchReply{}, errors.New("no copy")
		}
		rep := FetchReply{Meta: l.Meta()}
		from := req.After + 1
		if req.Have != nil {
			rep.Keep, rep.Reset = roomlog.Match(*req.Have, rep.Meta)
			from = rep.Keep + 1
			if rep.Reset {
				from = rep.Meta.Oldest
			}
			rep.Nodes = nodes
		}
		var err error
		if from <= rep.Meta.Head {
			if rep.Entries, err = l.Read(from, 3); err != nil {
				return FetchReply{}, err
			}
		}
		rep.More = len(rep.Entries) > 0 && rep.Entries[len(rep.Entries)-1].Msg.Seq < rep.Meta.Head
		return rep, nil
	}
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
	offered   []SyncOffer
}

func (r *recorder) Replicate(_ string, _ Replication, done func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replicate = append(r.replicate, done)
}

// SyncOffer records the offer; the test's answer (a func(error) in syncs)
// says the replica already holds the whole log (or fails).
func (r *recorder) SyncOffer(_ string, offer SyncOffer, done func(SyncAnswer, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.offered = append(r.offered, offer)
	head := offer.Meta.Head
	r.syncs = append(r.syncs, func(err error) { done(SyncAnswer{Have: head}, err) })
}

func (r *recorder) SyncChunk(_ string, _ Chunk, done func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.syncs = append(r.syncs, done)
}

func (r *recorder) ForgetReplica(string, string, uint64) {}

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
	_ = prev.SetTerm(1, nil)
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
	if out.offered[0].Meta.Term == 0 {
		t.Fatal("the replica's first sync carries no term")
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

// TestHandoffNoticeAfterPendingCommit: an old owner handing a room over
// first lets its pending messages commit, then tells the new owner it is
// done (its term, head and subscribers), and keeps refusing requests until
// the new owner's claim retires the room.
func TestHandoffNoticeAfterPendingCommit(t *testing.T) {
	out := &recorder{}
	notices := make(chan HandoffNotice, 1)
	out.handOff = func(_ string, n HandoffNotice) error {
		notices <- n
		return nil
	}
	s := startService(t, testConfig([]string{"b"}), out)
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	_, syncs := out.take()
	syncs[0](nil)
	var acks ackLog
	s.Publish("r", "ann", "c1", "pending", acks.reply)
	s.HandOff("r", "b")
	select {
	case n := <-notices:
		t.Fatalf("notice %+v sent while a message was pending", n)
	default:
	}
	reps, _ := out.take()
	reps[0](nil)
	n := <-notices
	if n.Head != 1 || n.Term == 0 || !slices.Equal(n.Nodes["n1"], []string{"ann"}) {
		t.Fatalf("notice = %+v, want head 1, the giver's term and n1's subscriber", n)
	}
	if a, _ := acks.snapshot(); len(a) != 1 || a[0].Seq != 1 {
		t.Fatalf("acks %+v, want the pending message acknowledged before the notice", a)
	}
	s.Publish("r", "ann", "c2", "after the notice", acks.reply)
	if _, errs := acks.snapshot(); len(errs) != 1 || !errors.Is(errs[0], ErrMoving) {
		t.Fatalf("a request after the notice got %v, want ErrMoving", errs)
	}
	// The new owner's claim retires the room; its copy goes to the fetch.
	s.cfg.View.(*fakeView).change(func(v *fakeView) { v.owners["r"] = "b"; v.peers = []string{"b"} })
	rep := claimReply(s, "b", ClaimRequest{Room: "r", Promise: true, Term: n.Term + 1})
	if !rep.Handing || rep.Copy == nil || rep.Copy.Head != 1 || len(s.OwnedRooms()) != 0 {
		t.Fatalf("claim after the notice = %+v (owned %v), want the room retired with its copy", rep, s.OwnedRooms())
	}
}

// TestStaleHandoffNoticeRefused: a node serving a room refuses a notice
// about it (its own claim was newer), and a node that does not own the room
// in its view refuses one too.
func TestStaleHandoffNoticeRefused(t *testing.T) {
	out := &recorder{}
	s := startService(t, testConfig(nil), out)
	var acks ackLog
	s.Publish("r", "ann", "c1", "served here", acks.reply)
	if err := s.AcceptHandoff(HandoffNotice{Room: "r", Term: 1, Head: 0}); !errors.Is(err, ErrBehind) {
		t.Fatalf("notice about a served room = %v, want ErrBehind", err)
	}
	s.cfg.View.(*fakeView).change(func(v *fakeView) { v.owners["x"] = "b" })
	if err := s.AcceptHandoff(HandoffNotice{Room: "x", Term: 1}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("notice about a room owned elsewhere = %v, want ErrNotOwner", err)
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
	handOver(t, s, &out.peerAnswers, prev)
	waitUntil(t, "the held publish to be acked", func() bool { a, _ := acks.snapshot(); return len(a) == 1 })
	if a, _ := acks.snapshot(); a[0].Seq != 3 || epochOfMID(a[0].MID) != prev.Epoch() {
		t.Fatalf("held publish acked %+v, want seq 3 after the handed-over 2", a)
	}
	if claims := out.claimsMade(); len(claims) != 2 || claims[0].Promise || !claims[1].Promise {
		t.Fatalf("claims %+v: want the question to the previous owner, then, once its notice came, the promise round", claims)
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

// installCopy gives s a copy of l, written by from as an owner does (a sync
// offer, then chunks), and returns the first refusal.
func installCopy(s *Service, from string, l *roomlog.Log) error {
	var err error
	offer := SyncOffer{Meta: l.Meta()}
	var have uint64
	s.HandleSyncOffer(from, offer, func(a SyncAnswer, e error) { have, err = a.Have, e })
	for err == nil && have < l.Head() {
		var entries []roomlog.Entry
		if entries, err = l.Read(have+1, 4); err != nil {
			return err
		}
		s.HandleSyncChunk(from, Chunk{Room: l.Room(), Epoch: l.Epoch(), Term: l.Term(), Entries: entries}, func(e error) { err = e })
		have = entries[len(entries)-1].Msg.Seq
	}
	return err
}

// applyReplica runs ApplyReplica and returns its answer (at once: the
// tests' services keep their copies in memory).
func applyReplica(s *Service, from string, rep Replication) error {
	var err error
	s.ApplyReplica(from, rep, func(e error) { err = e })
	return err
}

// claimReply runs HandleClaim and returns its answer.
func claimReply(s *Service, from string, req ClaimRequest) ClaimReply {
	var rep ClaimReply
	s.HandleClaim(from, req, func(r ClaimReply) { rep = r })
	return rep
}

// handOver plays the previous owner "p" handing its copy prev over to s:
// its notice, then the answers to s's claim (retired, with prev's copy) and
// fetch. It returns once the claim has fetched prev and s serves the room.
func handOver(t *testing.T, s *Service, out *peerAnswers, prev *roomlog.Log) {
	t.Helper()
	out.mu.Lock()
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) {
		if !req.Promise {
			return ClaimReply{Handing: true}, nil
		}
		return ClaimReply{Promised: req.Term, Handing: true, Copy: copyInfo(prev)}, nil
	}
	out.fetch = fetchFrom(map[string]*roomlog.Log{"p": prev}, nil)
	out.mu.Unlock()
	if err := s.AcceptHandoff(HandoffNotice{Room: prev.Room(), Term: prev.Term(), Head: prev.Head()}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the room to be served after the handoff", func() bool {
		r := s.lockHeld(prev.Room())
		if r == nil {
			return false
		}
		defer r.mu.Unlock()
		return r.state == stateReady
	})
}
