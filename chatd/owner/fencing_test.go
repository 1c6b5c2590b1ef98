package owner

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// replicaNode is a Service named self whose view has the given peers, for
// tests of the replica side.
func replicaNode(t *testing.T, self string, peers ...string) (*Service, *fakeView) {
	t.Helper()
	cfg := testConfig(nil)
	cfg.Self = self
	v := newFakeView(nil, peers...)
	v.self = self
	v.owners["r"] = peers[0]
	cfg.View = v
	return startService(t, cfg, &recorder{}), v
}

// copyOf returns a log of room r in term with the given messages from bob.
func copyOf(term uint64, texts ...string) *roomlog.Log {
	l := roomlog.New("r", roomlog.Config{HistorySize: 10, DedupeWindow: 10})
	_ = l.SetTerm(term, nil)
	for i, text := range texts {
		l.Append("bob", fmt.Sprint("c", i), text)
	}
	return l
}

// TestReplicaRefusesOlderTerms: once a node promised a term for a room, a
// write (sync or replicate) of an older term is refused with the promised
// term, so the stale owner learns it was replaced; the current owner's
// writes go on.
func TestReplicaRefusesOlderTerms(t *testing.T) {
	s, _ := replicaNode(t, "b", "old", "new")
	old := copyOf(1, "one")
	if err := installCopy(s, "old", old); err != nil {
		t.Fatal(err)
	}
	if rep := claimReply(s, "new", ClaimRequest{Room: "r", Promise: true, Term: 2}); rep.Refused != "" || rep.Copy == nil || rep.Copy.Head != 1 || rep.Copy.Term != 1 {
		t.Fatalf("claim of term 2 answered %+v, want granted with the copy (term 1, head 1)", rep)
	}
	m, _, _ := old.Append("ann", "late", "from the stale owner")
	err := applyReplica(s, "old", Replication{Room: "r", Epoch: old.Epoch(), Term: 1, Msg: m})
	var ste *StaleTermError
	if !errors.As(err, &ste) || ste.Promised != 2 || !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("replicate of term 1 after the promise of 2 = %v, want a StaleTermError naming 2", err)
	}
	if err := installCopy(s, "old", old); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("sync of term 1 after the promise of 2 = %v, want ErrStaleTerm", err)
	}
	if rep := claimReply(s, "new", ClaimRequest{Room: "r", Promise: true, Term: 2}); rep.Refused != refusedStale || rep.Promised != 2 {
		t.Fatalf("a second claim of term 2 answered %+v, want refused as stale", rep)
	}
	// The new owner (term 2) syncs and replicates.
	cur := copyOf(2, "one")
	if err := installCopy(s, "new", cur); err != nil {
		t.Fatalf("sync of the current term: %v", err)
	}
	next, _, _ := cur.Append("cat", "c2", "two")
	if err := applyReplica(s, "new", Replication{Room: "r", Epoch: cur.Epoch(), Term: 2, Msg: next}); err != nil {
		t.Fatalf("replicate of the current term: %v", err)
	}
}

// TestReplicaRefusesConflictingContent: a message at a sequence the copy
// already holds is a no-op when it is the same message and refused, loudly,
// when it is another.
func TestReplicaRefusesConflictingContent(t *testing.T) {
	var conflicts atomic.Int32
	cfg := testConfig(nil)
	cfg.Self = "b"
	v := newFakeView(nil, "a")
	v.self = "b"
	cfg.View = v
	cfg.Observe = conflictCounter{&conflicts}
	s := startService(t, cfg, &recorder{})
	l := copyOf(1, "one", "two")
	if err := installCopy(s, "a", l); err != nil {
		t.Fatal(err)
	}
	same := l.Recent()[1]
	if err := applyReplica(s, "a", Replication{Room: "r", Epoch: l.Epoch(), Term: 1, Msg: same}); err != nil {
		t.Fatalf("replaying a held message: %v", err)
	}
	other := same
	other.Text, other.CID = "something else", "zz"
	if err := applyReplica(s, "a", Replication{Room: "r", Epoch: l.Epoch(), Term: 1, Msg: other}); !errors.Is(err, roomlog.ErrConflict) {
		t.Fatalf("another message at seq 2 = %v, want ErrConflict", err)
	}
	if conflicts.Load() != 1 {
		t.Fatalf("%d conflicts observed, want 1", conflicts.Load())
	}
}

type conflictCounter struct{ n *atomic.Int32 }

func (conflictCounter) Replicated(time.Duration)    {}
func (conflictCounter) Handoff(bool, error)         {}
func (conflictCounter) Held()                       {}
func (conflictCounter) Claimed(time.Duration, bool) {}
func (conflictCounter) Fenced()                     {}
func (c conflictCounter) Conflict()                 { c.n.Add(1) }

// TestStaleOwnerIsFenced is the paused owner: its view still names it the
// owner, but its replica promised a newer term to the node that took the
// room over. Its next message is refused there: it is never acknowledged,
// no sequence number is committed twice, and the sender is told to resend
// (ErrMoving), which its router takes to the current owner.
func TestStaleOwnerIsFenced(t *testing.T) {
	out := &recorder{}
	cfg := testConfig([]string{"b"})
	v := newFakeView([]string{"b"}, "b")
	cfg.View = v
	var fenced atomic.Int32
	cfg.Observe = fenceCounter{&fenced}
	s := startService(t, cfg, out)
	var acks ackLog
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	waitUntil(t, "the room's first sync", func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return len(out.syncs) == 1
	})
	_, syncs := out.take()
	syncs[0](nil)
	s.Publish("r", "ann", "c1", "acknowledged", acks.reply)
	reps, _ := out.take()
	reps[0](nil)
	if a, _ := acks.snapshot(); len(a) != 1 || a[0].Seq != 1 {
		t.Fatalf("first message acked %+v", a)
	}
	term := s.Promised("r")

	// Meanwhile b took the room over in a newer term. The paused owner's
	// view still says it owns the room; its next message reaches b...
	v.change(func(v *fakeView) { v.owners["r"] = "a" })
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) {
		return ClaimReply{Refused: refusedOwned, Promised: term + 1}, nil
	}
	s.Publish("r", "ann", "c2", "from a stale owner", acks.reply)
	reps, _ = out.take()
	if len(reps) != 1 {
		t.Fatalf("%d replicates of the second message, want 1", len(reps))
	}
	// ...which refuses it: it promised term+1.
	reps[0](&StaleTermError{Room: "r", Promised: term + 1})
	a, errs := acks.snapshot()
	if len(a) != 1 {
		t.Fatalf("acks %+v: the stale owner acknowledged a message its replica refused", a)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrMoving) {
		t.Fatalf("sender of the refused message got %v, want ErrMoving (resend at the owner)", errs)
	}
	if fenced.Load() != 1 {
		t.Fatalf("fenced %d times, want 1", fenced.Load())
	}
	if got := out.messages("n1"); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("fanned out %v, want only the acknowledged 1", got)
	}
	// The node claims the room again above the refused term, and is refused
	// while b owns it: requests wait meanwhile, unanswered.
	waitUntil(t, "a claim above the refused term", func() bool {
		for _, c := range out.claimsMade() {
			if c.Promise && c.Term > term+1 {
				return true
			}
		}
		return false
	})
	s.Publish("r", "ann", "c3", "held while fenced", acks.reply)
	if a, e := acks.snapshot(); len(a) != 1 || len(e) != 1 {
		t.Fatalf("a fenced room answered a request: acks %+v errors %v", a, e)
	}
	// Once its view catches up (b owns the room), it gives the room up and
	// the held request goes to b through its router.
	v.change(func(v *fakeView) { v.owners["r"] = "b" })
	waitUntil(t, "the held request to be refused with not-owner", func() bool {
		_, e := acks.snapshot()
		return len(e) == 2
	})
	if _, e := acks.snapshot(); !errors.Is(e[1], ErrNotOwner) {
		t.Fatalf("held request answered %v, want ErrNotOwner", e[1])
	}
}

type fenceCounter struct{ n *atomic.Int32 }

func (fenceCounter) Replicated(time.Duration)    {}
func (fenceCounter) Handoff(bool, error)         {}
func (fenceCounter) Held()                       {}
func (fenceCounter) Claimed(time.Duration, bool) {}
func (f fenceCounter) Fenced()                   { f.n.Add(1) }
func (fenceCounter) Conflict()                   {}

// TestClaimStartsFromTheNewestCopy: with every promise in, the claimant
// fetches the newest copy (highest term, then longest) — not its own older
// replica, not a longer copy of an older term — and the held request is
// sequenced after it.
func TestClaimStartsFromTheNewestCopy(t *testing.T) {
	out := &recorder{}
	cfg := testConfig(nil)
	cfg.View = newFakeView(nil, "b", "c", "d")
	s := startService(t, cfg, out)
	own := copyOf(1, "one")
	if err := installCopy(s, "b", own); err != nil {
		t.Fatal(err)
	}
	longerOlder := copyOf(1, "one", "two", "three", "four")
	newest := copyOf(2, "one", "two", "three")
	copies := map[string]*roomlog.Log{"b": longerOlder, "c": newest}
	out.claim = func(peer string, req ClaimRequest) (ClaimReply, error) {
		rep := ClaimReply{Promised: req.Term}
		if l := copies[peer]; l != nil {
			if req.Term <= l.Term() {
				return ClaimReply{Refused: refusedStale, Promised: l.Term()}, nil
			}
			rep.Copy = &CopyInfo{Epoch: l.Epoch(), Term: l.Term(), Head: l.Head()}
		}
		return rep, nil
	}
	var fetchedFrom atomic.Value
	fetch := fetchFrom(copies, nil)
	out.fetch = func(peer string, req FetchRequest) (FetchReply, error) {
		fetchedFrom.Store(peer)
		return fetch(peer, req)
	}
	reply, ch := replies()
	s.Publish("r", "ann", "new", "after the takeover", reply)
	p := next(t, ch)
	if p.err != nil || p.ack.Seq != 4 || epochOfMID(p.ack.MID) != newest.Epoch() {
		t.Fatalf("publish answered %+v, %v; want seq 4 on the newest copy (epoch %s)", p.ack, p.err, newest.Epoch())
	}
	if got := fetchedFrom.Load(); got != "c" {
		t.Fatalf("fetched from %v, want c (term 2 beats b's longer term-1 copy)", got)
	}
	if got := s.Promised("r"); got <= 2 {
		t.Fatalf("claimed in term %d, want above every member's (2)", got)
	}
}

// TestClaimWaitsWhileAMemberOwnsTheRoom: a member that owns the room in its
// own view refuses the claim (views have not converged: the claimant must
// not take the room from a live owner), and the claim goes on once the
// view changes.
func TestClaimWaitsWhileAMemberOwnsTheRoom(t *testing.T) {
	out := &recorder{}
	cfg := testConfig(nil)
	v := newFakeView(nil, "b")
	cfg.View = v
	// The claim asks again only when the view changes: with the tests'
	// 1ms retry, the stats read below could catch the next attempt asking
	// for promises instead of the refusal it waits on.
	cfg.ClaimRetry = failsafe
	var owned atomic.Bool
	owned.Store(true)
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) {
		if owned.Load() {
			return ClaimReply{Refused: refusedOwned}, nil
		}
		return ClaimReply{Promised: req.Term}, nil
	}
	s := startService(t, cfg, out)
	reply, ch := replies()
	s.Publish("r", "ann", "c1", "hello", reply)
	waitUntil(t, "a refused claim", func() bool {
		st := s.RoomStats()
		return len(st) == 1 && strings.Contains(st[0].WaitingFor, "to grant term")
	})
	select {
	case p := <-ch:
		t.Fatalf("answered %+v, %v while a member owns the room", p.ack, p.err)
	default:
	}
	st := s.RoomStats()
	if len(st) != 1 || st[0].State != "awaiting_handoff" || !strings.Contains(st[0].WaitingFor, "b to grant term") || !strings.Contains(st[0].WaitingFor, "owned") {
		t.Fatalf("room stats %+v, want the claim waiting for b, which owns the room", st)
	}
	owned.Store(false)
	v.change(func(*fakeView) {})
	if p := next(t, ch); p.err != nil || p.ack.Seq != 1 {
		t.Fatalf("answered %+v, %v; want seq 1 once the member let go", p.ack, p.err)
	}
}

// TestSlowClaimIsLogged: a claim that has not ended after twice the
// handoff grace is logged with what it waits for, and again only after as
// long: requests held by a room that never comes ready would otherwise
// only show as timeouts on other nodes.
func TestSlowClaimIsLogged(t *testing.T) {
	out := &recorder{}
	cfg := testConfig(nil)
	cfg.View = newFakeView(nil, "b")
	cfg.HandoffGrace = time.Second
	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	cfg.Now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	advance := func(d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(d)
	}
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) { return ClaimReply{Refused: refusedOwned}, nil }
	var logs syncBuffer
	s := New(cfg, out, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(s.Close)
	s.Publish("r", "ann", "c1", "hello", func(protocol.Ack, error) {})
	waitUntil(t, "a refused claim", func() bool { return len(out.claimsMade()) >= 2 })
	const line = "a room this node owns is still not served"
	s.Sweep()
	advance(1500 * time.Millisecond)
	s.Sweep()
	if strings.Contains(logs.String(), line) {
		t.Fatalf("logged before twice the grace: %s", logs.String())
	}
	advance(time.Second)
	s.Sweep()
	s.Sweep()
	// The claim keeps asking b (a millisecond apart): what it waits for is
	// b's promise, or b's grant after a refusal, depending on the moment.
	if got := strings.Count(logs.String(), line); got != 1 ||
		!strings.Contains(logs.String(), "b to grant term") && !strings.Contains(logs.String(), "from [b]") {
		t.Fatalf("logged %d times after twice the grace, want once with what it waits for: %s", got, logs.String())
	}
	advance(2 * time.Second)
	s.Sweep()
	if got := strings.Count(logs.String(), line); got != 2 {
		t.Fatalf("logged %d times after four graces, want twice", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestHandleClaimRetiresARoomOwnedElsewhere: a node holding a room that its
// own view gives to another node retires it on that node's promise: its
// pending message is not acknowledged (the sender resends), and its copy
// and subscribers go to the claimant's fetch.
func TestHandleClaimRetiresARoomOwnedElsewhere(t *testing.T) {
	out := &recorder{}
	cfg := testConfig([]string{"c"})
	v := newFakeView([]string{"c"}, "b", "c")
	cfg.View = v
	s := startService(t, cfg, out)
	out.claim = func(_ string, req ClaimRequest) (ClaimReply, error) { return ClaimReply{Promised: req.Term}, nil }
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	waitUntil(t, "the room's first sync", func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return len(out.syncs) == 1
	})
	_, syncs := out.take()
	syncs[0](nil)
	var acks ackLog
	s.Publish("r", "ann", "c1", "pending", acks.reply)
	term := s.Promised("r")

	if rep := claimReply(s, "b", ClaimRequest{Room: "r", Promise: true, Term: term + 1}); rep.Refused != refusedOwned {
		t.Fatalf("claim while this node owns the room in its view = %+v, want refused (owned)", rep)
	}
	if rep := claimReply(s, "zz", ClaimRequest{Room: "r", Promise: true, Term: term + 5}); rep.Refused != refusedNotMember {
		t.Fatalf("claim from a non-member = %+v, want refused (not_member)", rep)
	}
	v.change(func(v *fakeView) { v.owners["r"] = "b" })
	rep := claimReply(s, "b", ClaimRequest{Room: "r", Promise: true, Term: term + 1})
	if rep.Refused != "" || !rep.Handing || rep.Copy == nil || rep.Copy.Head != 1 || rep.Copy.Term != term {
		t.Fatalf("claim once b owns the room = %+v, want granted, handing, with the copy (term %d head 1)", rep, term)
	}
	if _, errs := acks.snapshot(); len(errs) != 1 || !errors.Is(errs[0], ErrMoving) {
		t.Fatalf("pending message answered %v, want ErrMoving", errs)
	}
	if len(s.OwnedRooms()) != 0 {
		t.Fatal("the room is still owned after the promise")
	}
	empty := roomlog.Meta{Room: "r", Epoch: "none", Oldest: 1}
	st, err := s.HandleFetch(FetchRequest{Room: "r", Term: term + 1, Have: &empty})
	if err != nil || !st.Reset || st.Meta.Head != 1 || len(st.Entries) != 1 || st.Entries[0].Msg.CID != "c1" || !slices.Equal(st.Nodes["n1"], []string{"ann"}) {
		t.Fatalf("fetch = %+v, %v; want the copy with the pending message and n1's subscriber", st, err)
	}
	if _, err := s.HandleFetch(FetchRequest{Room: "r", Term: term, Have: &empty}); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("fetch in the old term = %v, want ErrStaleTerm", err)
	}
}

// TestNothingCommitsWhileUnverified: between a pause and the moment the
// node notices it (Verified false), replicated messages are not
// acknowledged; they are once the node is verified again.
func TestNothingCommitsWhileUnverified(t *testing.T) {
	out := &recorder{}
	cfg := testConfig(nil)
	var verified atomic.Bool
	verified.Store(true)
	cfg.Verified = verified.Load
	s := startService(t, cfg, out)
	var acks ackLog
	s.Publish("r", "ann", "c1", "before", acks.reply)
	verified.Store(false)
	s.Publish("r", "ann", "c2", "while unverified", acks.reply)
	if a, _ := acks.snapshot(); len(a) != 1 {
		t.Fatalf("acks %+v while unverified, want only the first", a)
	}
	verified.Store(true)
	s.Suspend() // what the pause detector does once it notices
	if a, _ := acks.snapshot(); len(a) != 2 || a[1].Seq != 2 {
		t.Fatalf("acks %+v after the claim, want seq 2 too", a)
	}
}

// TestReplicaRefusesWritesWithoutQuorum: a replica that sees no majority
// refuses writes, so nothing is committed on the minority side.
func TestReplicaRefusesWritesWithoutQuorum(t *testing.T) {
	s, v := replicaNode(t, "b", "a")
	v.change(func(v *fakeView) { v.noQuorum = true })
	if err := installCopy(s, "a", copyOf(1, "one")); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("sync without quorum = %v, want ErrNoQuorum", err)
	}
	if rep := claimReply(s, "a", ClaimRequest{Room: "r", Promise: true, Term: 3}); rep.Refused != refusedNoQuorum {
		t.Fatalf("claim without quorum = %+v, want refused (no_quorum)", rep)
	}
}

// TestLoneNodeWithoutQuorumDoesNotClaim: a node that sees no other member
// and no majority of the expected cluster either (cut off, then it noticed
// a pause) holds its rooms' requests in a claim instead of claiming them
// alone, even when one answer would be enough to start a room; once a
// majority is back, the claim goes on.
func TestLoneNodeWithoutQuorumDoesNotClaim(t *testing.T) {
	out := &recorder{}
	cfg := testConfig(nil)
	v := newFakeView(nil)
	cfg.View = v
	s := startService(t, cfg, out)
	reply, ch := replies()
	s.Publish("r", "ann", "c1", "hello", reply)
	if p := next(t, ch); p.err != nil || p.ack.Seq != 1 {
		t.Fatalf("answered %+v, %v; want seq 1", p.ack, p.err)
	}
	v.change(func(v *fakeView) { v.noQuorum = true })
	if rooms := s.Suspend(); len(rooms) != 1 {
		t.Fatalf("Suspend put %v into a claim, want [r]", rooms)
	}
	if stats := s.RoomStats(); len(stats) != 1 || stats[0].State != "awaiting_handoff" {
		t.Fatalf("room stats %+v alone without quorum, want the room held in a claim", stats)
	}
	s.Publish("r", "ann", "c2", "again", reply)
	select {
	case p := <-ch:
		t.Fatalf("answered %+v, %v alone without quorum", p.ack, p.err)
	default:
	}
	v.change(func(v *fakeView) { v.noQuorum = false })
	if p := next(t, ch); p.err != nil || p.ack.Seq != 2 {
		t.Fatalf("answered %+v, %v; want seq 2 once the quorum is back", p.ack, p.err)
	}
}

// TestRecommitEndsASettleAcknowledgedWhileUnverified: a node that claimed
// a room from another member's copy settles it (its replica must hold the
// log in the new term before anything runs); when the replica's
// acknowledgement arrives while the node is not verified (it is noticing
// a pause), nothing commits then, and once verified again Recommit ends the
// settle and the held request runs. Without it the room waited for an
// acknowledgement that had already come, and held every request for good
// (seen in the fault schedule: a restarted node refuting its own death
// while it settled a room it had just claimed).
func TestRecommitEndsASettleAcknowledgedWhileUnverified(t *testing.T) {
	out := &recorder{}
	cfg := testConfig([]string{"b"})
	cfg.View = newFakeView([]string{"b"}, "b")
	var verified atomic.Bool
	verified.Store(true)
	cfg.Verified = verified.Load
	s := startService(t, cfg, out)
	theirs := copyOf(1, "one", "two")
	copies := map[string]*roomlog.Log{"b": theirs}
	out.claim = func(peer string, req ClaimRequest) (ClaimReply, error) {
		if req.Term <= theirs.Term() {
			return ClaimReply{Refused: refusedStale, Promised: theirs.Term()}, nil
		}
		return ClaimReply{Promised: req.Term, Copy: &CopyInfo{Epoch: theirs.Epoch(), Term: theirs.Term(), Head: theirs.Head()}}, nil
	}
	out.fetch = fetchFrom(copies, nil)
	reply, ch := replies()
	s.Publish("r", "ann", "c3", "after the takeover", reply)
	var syncs []func(error)
	waitUntil(t, "the new term's sync offer", func() bool {
		_, syn := out.take()
		syncs = append(syncs, syn...)
		return len(syncs) > 0
	})
	if st := s.RoomStats(); len(st) != 1 || st[0].State != "settling" {
		t.Fatalf("room stats %+v, want the room settling until its replica holds the log", st)
	}
	verified.Store(false)
	for _, done := range syncs {
		done(nil)
	}
	verified.Store(true)
	s.Recommit()
	var p published
	waitUntil(t, "the held message's ack", func() bool {
		rep, syn := out.take()
		for _, done := range append(rep, syn...) {
			done(nil)
		}
		select {
		case p = <-ch:
			return true
		default:
			return false
		}
	})
	if p.err != nil || p.ack.Seq != 3 {
		t.Fatalf("answered %+v, %v; want seq 3 once the settle ended", p.ack, p.err)
	}
}

// TestSettlingRoomPromisesNoHandoff: a node still settling a room it just
// claimed (its replica has not stored the log in the new term yet), whose
// view then gives the room to another node, answers that node's "are you
// handing it over?" with no: it has nothing in flight, and it would send
// no notice (a handoff starts only from a served room), so a "yes" left
// the new owner holding requests for a whole handoff grace (seen in the
// fault schedule). Meanwhile the room's stats say what it waits for.
func TestSettlingRoomPromisesNoHandoff(t *testing.T) {
	out := &recorder{}
	cfg := testConfig([]string{"c"})
	v := newFakeView([]string{"c"}, "b", "c")
	cfg.View = v
	s := startService(t, cfg, out)
	theirs := copyOf(1, "one", "two")
	out.claim = func(peer string, req ClaimRequest) (ClaimReply, error) {
		if peer == "c" && req.Promise {
			return ClaimReply{Promised: req.Term, Copy: &CopyInfo{Epoch: theirs.Epoch(), Term: theirs.Term(), Head: theirs.Head()}}, nil
		}
		return ClaimReply{Promised: req.Term}, nil
	}
	out.fetch = fetchFrom(map[string]*roomlog.Log{"c": theirs}, nil)
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	waitUntil(t, "the room's first sync", func() bool {
		out.mu.Lock()
		defer out.mu.Unlock()
		return len(out.syncs) == 1
	})
	st := s.RoomStats()
	if len(st) != 1 || st[0].State != "settling" || !strings.Contains(st[0].WaitingFor, "c holds 0 (catching up)") {
		t.Fatalf("room stats %+v, want the room settling, waiting for c", st)
	}
	v.change(func(v *fakeView) { v.owners["r"] = "b" })
	if rep := claimReply(s, "b", ClaimRequest{Room: "r"}); rep.Handing || rep.Refused != "" {
		t.Fatalf("asked by the new owner whether it hands the room over while settling: %+v, want no handoff", rep)
	}
	rep := claimReply(s, "b", ClaimRequest{Room: "r", Promise: true, Term: s.Promised("r") + 1})
	if rep.Refused != "" || !rep.Handing {
		t.Fatalf("the new owner's promise = %+v, want granted, retiring the room here", rep)
	}
	if len(s.OwnedRooms()) != 0 {
		t.Fatal("the room is still owned after the promise")
	}
}
