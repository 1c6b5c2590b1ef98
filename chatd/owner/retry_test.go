package owner

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// failsafe bounds every wait, so a missing ack fails the test instead of
// hanging the run; nothing waits for it on the success path.
const failsafe = 10 * time.Second

var errInjected = errors.New("injected: connection lost")

// flaky is an Outbound in front of a real replica (another Service): its
// first fails replicates and syncs fail without reaching the replica, later
// ones are applied. Answers come in call order on one goroutine of flaky's,
// as the transport's do, never inside the call.
type flaky struct {
	pushLog
	peerAnswers
	replica *Service

	mu       sync.Mutex
	fails    int
	calls    int
	failures int

	answers chan func()
	done    chan struct{}
}

func newFlaky(t *testing.T, fails int) *flaky {
	rcfg := testConfig(nil)
	rcfg.Self = "b"
	rv := newFakeView(nil, "a")
	rv.self = "b"
	rv.owners["r"] = "a"
	rcfg.View = rv
	f := &flaky{replica: New(rcfg, &recorder{}, slog.New(slog.DiscardHandler)), fails: fails, answers: make(chan func(), 1024), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for answer := range f.answers {
			answer()
		}
	}()
	t.Cleanup(func() {
		close(f.answers)
		<-f.done
	})
	return f
}

// attempt counts a call and reports whether it is one of the failing ones.
// Callers hold f.mu.
func (f *flaky) attempt() bool {
	f.calls++
	if f.fails > 0 {
		f.fails--
		return true
	}
	return false
}

func (f *flaky) answer(done func(error), err error) {
	if err != nil {
		f.failures++
	}
	f.answers <- func() { done(err) }
}

// replicaAnswer runs a write on the real replica and returns its answer
// (the replica answers at once: it keeps its copy in memory).
func replicaAnswer(write func(reply func(error))) error {
	var err error
	write(func(e error) { err = e })
	return err
}

func (f *flaky) Replicate(_ string, rep Replication, done func(error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := errInjected
	if !f.attempt() {
		err = replicaAnswer(func(reply func(error)) { f.replica.ApplyReplica("a", rep, reply) })
	}
	f.answer(done, err)
}

func (f *flaky) SyncOffer(_ string, offer SyncOffer, done func(SyncAnswer, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attempt() {
		f.failures++
		f.answers <- func() { done(SyncAnswer{}, errInjected) }
		return
	}
	var ans SyncAnswer
	var err error
	f.replica.HandleSyncOffer("a", offer, func(a SyncAnswer, e error) { ans, err = a, e })
	if err != nil {
		f.failures++
	}
	f.answers <- func() { done(ans, err) }
}

func (f *flaky) SyncChunk(_ string, c Chunk, done func(error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := errInjected
	if !f.attempt() {
		err = replicaAnswer(func(reply func(error)) { f.replica.HandleSyncChunk("a", c, reply) })
	}
	f.answer(done, err)
}

func (f *flaky) ForgetReplica(string, string, uint64) {}

func (f *flaky) counts() (calls, failures int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls, f.failures
}

// stored returns what the replica holds of room, in order.
func (f *flaky) stored(t *testing.T, room string) (string, []protocol.Message) {
	t.Helper()
	f.replica.mu.Lock()
	defer f.replica.mu.Unlock()
	l := f.replica.replicas[room]
	if l == nil {
		t.Fatalf("the replica holds nothing of %s", room)
	}
	msgs, _ := l.Since(l.Epoch(), 0)
	return l.Epoch(), msgs
}

// newRetryService is newService with quick replication retries, so tests
// that wait for a retry do not wait long.
func newRetryService(t *testing.T, out Outbound, replicas []string) *Service {
	cfg := testConfig(replicas)
	cfg.ReplicationRetry, cfg.ReplicationRetryMax = time.Millisecond, 8*time.Millisecond
	return startService(t, cfg, out)
}

type published struct {
	ack protocol.Ack
	err error
}

// replies returns a PublishReply that sends to a channel big enough for
// every reply a test expects, and the channel.
func replies() (PublishReply, chan published) {
	ch := make(chan published, 64)
	return func(ack protocol.Ack, err error) { ch <- published{ack, err} }, ch
}

func next(t *testing.T, ch chan published) published {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(failsafe):
		t.Fatal("no answer to a publish: a failed replication was never retried")
		return published{}
	}
}

// checkStored fails unless the replica holds exactly texts, as seqs 1.. of
// epoch.
func checkStored(t *testing.T, out *flaky, room, epoch string, texts ...string) {
	t.Helper()
	got, msgs := out.stored(t, room)
	if got != epoch || len(msgs) != len(texts) {
		t.Fatalf("replica holds %d messages of epoch %s, want %d of %s: %+v", len(msgs), got, len(texts), epoch, msgs)
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) || m.Text != texts[i] {
			t.Fatalf("replica message %d = seq %d %q, want seq %d %q", i, m.Seq, m.Text, i+1, texts[i])
		}
	}
}

func epochOfMID(mid string) string { return mid[:strings.LastIndex(mid, "-")] }

func TestFailedReplicationRetriedUntilAcked(t *testing.T) {
	// The initial sync, the replicate and the first retry fail: a replica
	// that is unreachable for a while, then back.
	out := newFlaky(t, 3)
	s := newRetryService(t, out, []string{"b"})
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	reply, ch := replies()
	s.Publish("r", "ann", "c1", "hello", reply)
	p := next(t, ch)
	if p.err != nil || p.ack.Seq != 1 || p.ack.Duplicate {
		t.Fatalf("publish answered %+v, %v; want the ack of seq 1", p.ack, p.err)
	}
	if calls, failures := out.counts(); failures != 3 || calls <= failures {
		t.Fatalf("%d calls, %d failed: the failures were not injected as meant", calls, failures)
	}
	checkStored(t, out, "r", epochOfMID(p.ack.MID), "hello")
	if got := out.messages("n1"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("fan-out %v, want [1]", got)
	}
}

func TestMessagesPendingDuringFailuresCommitInOrder(t *testing.T) {
	// Enough failures to cover every message's first replicate (and the
	// sync at creation) and the first retry.
	out := newFlaky(t, 7)
	s := newRetryService(t, out, []string{"b"})
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	reply, ch := replies()
	texts := []string{"one", "two", "three", "four", "five"}
	for i, text := range texts {
		s.Publish("r", "ann", string(rune('a'+i)), text, reply)
	}
	s.Publish("r", "ann", "b", "two again", reply) // a resend while "two" is pending
	var acks, dups []protocol.Ack
	for range len(texts) + 1 {
		p := next(t, ch)
		if p.err != nil {
			t.Fatalf("publish failed: %v", p.err)
		}
		if p.ack.Duplicate {
			dups = append(dups, p.ack)
		} else {
			acks = append(acks, p.ack)
		}
	}
	for i, ack := range acks {
		if ack.Seq != uint64(i+1) {
			t.Fatalf("ack %d has seq %d: acks out of order: %+v", i, ack.Seq, acks)
		}
	}
	if len(dups) != 1 || dups[0].Seq != 2 || dups[0].MID != acks[1].MID {
		t.Fatalf("resend answered %+v, want the original ack of seq 2 (%s)", dups, acks[1].MID)
	}
	checkStored(t, out, "r", epochOfMID(acks[0].MID), texts...)
	if got := out.messages("n1"); len(got) != len(texts) {
		t.Fatalf("fan-out %v, want each of 1..%d once", got, len(texts))
	} else {
		for i, seq := range got {
			if seq != uint64(i+1) {
				t.Fatalf("fan-out %v, want 1..%d in order", got, len(texts))
			}
		}
	}
}

func TestReplicationRetryStopsOnClose(t *testing.T) {
	out := &recorder{}
	cfg := testConfig([]string{"b"})
	cfg.ReplicationRetry = time.Hour // never fires here: the test looks at the timer
	s := startService(t, cfg, out)
	var acks ackLog
	s.Publish("r", "ann", "c1", "hello", acks.reply)
	_, syncs := out.take()
	syncs[0](nil) // the replica answers the new room's sync offer: it holds nothing
	_, chunks := out.take()
	chunks[0](errInjected) // the chunk with the message is lost
	armed := func() bool {
		r := s.lockHeld("r")
		defer r.mu.Unlock()
		return r.retryTimer != nil
	}
	if !armed() {
		t.Fatal("a failed replication armed no retry")
	}
	s.Close()
	if armed() {
		t.Fatal("the retry timer survived Close")
	}
	// A failure reported after Close does not arm it again.
	s.Publish("r", "ann", "c1", "hello", acks.reply) // refused: closed
	r := s.lockHeld("r")
	r.replicationFailed("b", "replicate", 1, errInjected)
	r.mu.Unlock()
	if armed() {
		t.Fatal("a failure after Close armed a retry")
	}
	if len(acks.acks) != 0 || len(acks.errs) != 1 || !errors.Is(acks.errs[0], ErrClosed) {
		t.Fatalf("acks %+v, errors %v; want only ErrClosed for the publish after Close", acks.acks, acks.errs)
	}
}

// clock is a settable Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestHandoffStopsWaitingForAnUnansweredReplica(t *testing.T) {
	out := &recorder{} // the replica never answers
	clk := &clock{now: time.Unix(1000, 0)}
	cfg := testConfig([]string{"b"})
	cfg.HandoffGrace, cfg.Now = 10*time.Second, clk.Now
	s := startService(t, cfg, out)
	reply, ch := replies()
	s.Publish("r", "ann", "c1", "hello", reply)
	sentTo := make(chan string, 3)
	var notice HandoffNotice
	out.handOff = func(node string, n HandoffNotice) error {
		notice = n
		sentTo <- node
		return nil
	}
	s.HandOff("r", "n1")
	clk.advance(4 * time.Second)
	s.HandOff("r", "n2") // the cluster's next pass, still within the wait
	select {
	case node := <-sentTo:
		t.Fatalf("handed over to %s while a message was still waiting for its replica, within the drain limit", node)
	default:
	}
	clk.advance(2 * time.Second)
	s.HandOff("r", "n3") // past half the new owner's grace: go without the ack
	if got := <-sentTo; got != "n3" {
		t.Fatalf("handoff sent to %s, want the latest (n3): a stuck drain must not hold the room forever", got)
	}
	if notice.Head != 1 {
		t.Fatalf("notice = %+v, want the pending message (head 1) in the copy", notice)
	}
	if p := next(t, ch); !errors.Is(p.err, ErrMoving) {
		t.Fatalf("sender of the pending message got %+v, %v; want ErrMoving, so it resends to the new owner", p.ack, p.err)
	}
	// The new owner n3 claims the room from s and fetches its copy; it
	// answers the resend from its dedupe window.
	s.cfg.View.(*fakeView).change(func(v *fakeView) { v.owners["r"] = "n3"; v.peers = []string{"n3", "b"} })
	ocfg := testConfig(nil)
	ocfg.Self = "n3"
	ov := newFakeView(nil, "a")
	ov.self = "n3"
	ocfg.View = ov
	oout := &recorder{}
	oout.claim = func(_ string, req ClaimRequest) (ClaimReply, error) { return claimReply(s, "n3", req), nil }
	oout.fetch = func(_ string, req FetchRequest) (FetchReply, error) { return s.HandleFetch(req) }
	other := startService(t, ocfg, oout)
	if err := other.AcceptHandoff(notice); err != nil {
		t.Fatal(err)
	}
	oreply, och := replies()
	other.Publish("r", "ann", "c1", "hello", oreply)
	if p := next(t, och); p.err != nil || !p.ack.Duplicate || p.ack.Seq != 1 {
		t.Fatalf("resend at the new owner = %+v %v, want the duplicate ack of seq 1", p.ack, p.err)
	}
}

// TestExpiredHandoffWaitClaimsFromEveryMember: the previous owner said it
// was handing the room over but its state never came; once the grace is
// over the new owner claims the room from every member instead, and starts
// from the newest copy among theirs (here the previous owner's, which it
// retired on the promise), never from nothing.
func TestExpiredHandoffWaitClaimsFromEveryMember(t *testing.T) {
	out := &recorder{}
	cfg := awaitingConfig(out, nil)
	cfg.HandoffGrace = time.Millisecond
	prev := previousLog()
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) {
		switch {
		case !req.Promise:
			return ClaimReply{Handing: true}, nil
		case req.Term <= prev.Term(): // it wrote the room in that term
			return ClaimReply{Refused: refusedStale, Promised: prev.Term()}, nil
		}
		return ClaimReply{Promised: req.Term, Handing: true, Copy: &CopyInfo{Epoch: prev.Epoch(), Term: prev.Term(), Head: prev.Head()}}, nil
	}
	fetch := fetchFrom(map[string]*roomlog.Log{"p": prev}, map[string][]string{"p": {"bob"}})
	out.fetch = func(peer string, req FetchRequest) (FetchReply, error) {
		if req.Term <= prev.Term() {
			return FetchReply{}, fmt.Errorf("fetch in term %d, want above the previous owner's %d", req.Term, prev.Term())
		}
		return fetch(peer, req)
	}
	s := startService(t, cfg, out)
	reply, ch := replies()
	s.Publish("r", "ann", "new", "held", reply)
	if p := next(t, ch); p.err != nil || p.ack.Seq != 3 || epochOfMID(p.ack.MID) != prev.Epoch() {
		t.Fatalf("held publish answered %+v, %v; want seq 3 of the previous owner's epoch %s", p.ack, p.err, prev.Epoch())
	}
	claims := out.claimsMade()
	if len(claims) != 3 || claims[0].Promise || !claims[1].Promise || claims[2].Term != prev.Term()+1 {
		t.Fatalf("claims %+v, want the question to the previous owner, a promise refused as stale, then one above its term %d", claims, prev.Term())
	}
	// The retired owner's subscribed node comes with the copy: it gets the
	// inherited messages once they are on every copy of the new term (it
	// drops those it has), then 3.
	if got := out.messages("p"); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("the retired owner's subscribed node got %v, want [1 2 3]", got)
	}
}

func TestHandedOverRoomResyncsItsReplicas(t *testing.T) {
	out := newFlaky(t, 0)
	cfg := awaitingConfig(&recorder{}, []string{"b"})
	cfg.ReplicationRetry, cfg.ReplicationRetryMax = time.Millisecond, 8*time.Millisecond
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) {
		return ClaimReply{Handing: !req.Promise, Promised: req.Term}, nil
	}
	s := startService(t, cfg, out)
	reply, ch := replies()
	s.Publish("r", "ann", "new", "held", reply)
	prev := previousLog()
	handOver(t, s, &out.peerAnswers, prev)
	if p := next(t, ch); p.err != nil || p.ack.Seq != 3 {
		t.Fatalf("held publish answered %+v, %v; want seq 3", p.ack, p.err)
	}
	checkStored(t, out, "r", prev.Epoch(), "old 1", "old 2", "held")
	if _, failures := out.counts(); failures != 0 {
		t.Fatalf("%d replication failures: the replica learnt of the handed-over history from a gap, not a sync", failures)
	}
}
