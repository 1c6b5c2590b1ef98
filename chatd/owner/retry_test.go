package owner

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
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
	replica *Service

	mu       sync.Mutex
	fails    int
	calls    int
	failures int

	answers chan func()
	done    chan struct{}
}

func newFlaky(t *testing.T, fails int) *flaky {
	f := &flaky{replica: newService(&recorder{}, nil), fails: fails, answers: make(chan func(), 1024), done: make(chan struct{})}
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

func (f *flaky) Replicate(_ string, room string, msg protocol.Message, done func(error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := errInjected
	if !f.attempt() {
		err = f.replica.ApplyReplica(room, epochOfMID(msg.MID), msg)
	}
	f.answer(done, err)
}

func (f *flaky) SyncReplica(_ string, snap roomlog.Snapshot, done func(error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := errInjected
	if !f.attempt() {
		err = f.replica.SyncReplica(snap)
	}
	f.answer(done, err)
}

func (f *flaky) ForgetReplica(string, string) {}

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
	s.Subscribe("r", "n1", []string{"ann"}, create, func(feed.State, error) {})
	reply, ch := replies()
	s.Publish("r", "ann", "c1", "hello", create, reply)
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
	s.Subscribe("r", "n1", []string{"ann"}, create, func(feed.State, error) {})
	reply, ch := replies()
	texts := []string{"one", "two", "three", "four", "five"}
	for i, text := range texts {
		s.Publish("r", "ann", string(rune('a'+i)), text, create, reply)
	}
	s.Publish("r", "ann", "b", "two again", create, reply) // a resend while "two" is pending
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
	s.Publish("r", "ann", "c1", "hello", create, acks.reply)
	reps, _ := out.take()
	reps[0](errInjected)
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
	s.Publish("r", "ann", "c1", "hello", create, acks.reply) // refused: closed
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
	s.Publish("r", "ann", "c1", "hello", create, reply)
	var sent atomic.Int32
	var state HandoffState
	sendAs := func(n int32) func(HandoffState, func(error)) {
		return func(st HandoffState, done func(error)) {
			sent.Store(n)
			state = st
			go done(nil)
		}
	}
	s.HandOff("r", sendAs(1))
	clk.advance(4 * time.Second)
	s.HandOff("r", sendAs(2)) // the cluster's next pass, still within the wait
	if sent.Load() != 0 {
		t.Fatal("handed over while a message was still waiting for its replica, within the drain limit")
	}
	clk.advance(2 * time.Second)
	s.HandOff("r", sendAs(3)) // past half the new owner's grace: go without the ack
	if got := sent.Load(); got != 3 {
		t.Fatalf("handoff sent by call %d, want the latest (3): a stuck drain must not hold the room forever", got)
	}
	if state.Snapshot.Head != 1 || state.Snapshot.Messages[0].CID != "c1" {
		t.Fatalf("handoff state = %+v, want the pending message in it", state.Snapshot)
	}
	if p := next(t, ch); !errors.Is(p.err, ErrMoving) {
		t.Fatalf("sender of the pending message got %+v, %v; want ErrMoving, so it resends to the new owner", p.ack, p.err)
	}
	// The new owner answers that resend from its dedupe window.
	other := newService(&recorder{}, nil)
	if err := other.AcceptHandoff(state); err != nil {
		t.Fatal(err)
	}
	var acks ackLog
	other.Publish("r", "ann", "c1", "hello", create, acks.reply)
	if len(acks.acks) != 1 || !acks.acks[0].Duplicate || acks.acks[0].Seq != 1 {
		t.Fatalf("resend at the new owner = %+v %v, want the duplicate ack of seq 1", acks.acks, acks.errs)
	}
}

func TestExpiredHandoffWaitAsksPeersAgain(t *testing.T) {
	claims := make(chan struct{}, 1)
	cfg := testConfig(nil)
	cfg.HandoffGrace = time.Millisecond
	cfg.OnAwait = func(string) {
		select {
		case claims <- struct{}{}:
		default:
		}
	}
	s := startService(t, cfg, &recorder{})
	reply, ch := replies()
	s.Publish("r", "ann", "new", "held", await, reply)
	<-claims // the first claim, made when the wait began
	select {
	case <-claims:
	case p := <-ch:
		t.Fatalf("the room started without the handoff a peer announced: %+v, %v", p.ack, p.err)
	case <-time.After(failsafe):
		t.Fatal("the peers were not asked again after the grace")
	}
	// The handoff, held up on the previous owner, arrives late.
	prev := previousLog()
	if err := s.AcceptHandoff(HandoffState{Snapshot: prev.Snapshot()}); err != nil {
		t.Fatal(err)
	}
	if p := next(t, ch); p.err != nil || p.ack.Seq != 3 || epochOfMID(p.ack.MID) != prev.Epoch() {
		t.Fatalf("held publish answered %+v, %v; want seq 3 of the handed-over epoch %s", p.ack, p.err, prev.Epoch())
	}
}

func TestExpiredHandoffWaitStartsWhenNoPeerCanHold(t *testing.T) {
	cfg := testConfig(nil)
	cfg.HandoffGrace, cfg.OnAwait = time.Millisecond, func(string) {}
	s := startService(t, cfg, &recorder{})
	var asked atomic.Int32
	// The previous owner was alive when the room was claimed, and is gone
	// when the grace ends: nobody can hand the room over any more.
	claim := func(string, bool) Claim {
		if asked.Add(1) == 1 {
			return ClaimAwaitHandoff
		}
		return ClaimCreate
	}
	reply, ch := replies()
	s.Publish("r", "ann", "new", "first", claim, reply)
	if p := next(t, ch); p.err != nil || p.ack.Seq != 1 {
		t.Fatalf("publish answered %+v, %v; want seq 1 once the wait ended", p.ack, p.err)
	}
}

func TestHandedOverRoomResyncsItsReplicas(t *testing.T) {
	out := newFlaky(t, 0)
	s := newRetryService(t, out, []string{"b"})
	reply, ch := replies()
	s.Publish("r", "ann", "new", "held", await, reply)
	prev := previousLog()
	if err := s.AcceptHandoff(HandoffState{Snapshot: prev.Snapshot()}); err != nil {
		t.Fatal(err)
	}
	if p := next(t, ch); p.err != nil || p.ack.Seq != 3 {
		t.Fatalf("held publish answered %+v, %v; want seq 3", p.ack, p.err)
	}
	checkStored(t, out, "r", prev.Epoch(), "old 1", "old 2", "held")
	if _, failures := out.counts(); failures != 0 {
		t.Fatalf("%d replication failures: the replica learnt of the handed-over history from a gap, not a sync", failures)
	}
}
