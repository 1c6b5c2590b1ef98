package deliverycheck

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// These tests run MultiRoom against one real chatd node in this process
// and prove that each check can fail: a tamper function rewrites what one
// client reads (drops, duplicates, delays or alters a frame), and the test
// asserts that exactly the check that should fire does. A single node
// needs no failure detection and no routing; the timing below only has to
// keep the silence bound above its delivery latency on a loaded machine.
const (
	testDetection    = time.Second
	testRouteTimeout = time.Second
)

var testRooms = []string{"r-0", "r-1", "r-2"}

// recorder captures the failures Verify reports, so that a test can assert
// them instead of failing; anything fatal (the clients could not start)
// still fails the test.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Helper() {}

// newTestChecker starts a node and a MultiRoom on it (two publishers, two
// subscribers, three rooms) with tamper applied, and waits for traffic.
func newTestChecker(t *testing.T, tamper func(actor string, f client.Frame) []client.Frame) (*MultiRoom, *recorder) {
	t.Helper()
	srv := chatdtest.Start(t)
	rec := &recorder{TB: t}
	k := NewMultiRoom(rec, MultiRoomConfig{Live: func() []string { return []string{srv.URL} }, Rooms: testRooms,
		Publishers: 2, Subscribers: 2, Rate: 60, FailureDetection: testDetection, RouteTimeout: testRouteTimeout})
	k.tamper = tamper
	k.Start()
	if err := k.WaitProgress(nil, 5); err != nil {
		t.Fatal(err)
	}
	return k, rec
}

// frameOf encodes v as the frame a client would read.
func frameOf(t testing.TB, v any) client.Frame {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		t.Fatal(err)
	}
	return client.Frame{Type: head.Type, Raw: raw}
}

// nthMessage returns a tamper that applies change to the n-th message of
// room r-0 that actor reads (counting from 1), and passes every other
// frame through.
func nthMessage(t testing.TB, actor string, n int, change func(m protocol.Message, f client.Frame) []client.Frame) func(string, client.Frame) []client.Frame {
	var mu sync.Mutex
	seen := 0
	return func(who string, f client.Frame) []client.Frame {
		if who != actor || f.Type != protocol.TypeMessage {
			return []client.Frame{f}
		}
		var m protocol.Message
		if err := f.Decode(&m); err != nil {
			t.Error(err)
			return []client.Frame{f}
		}
		if m.Room != "r-0" {
			return []client.Frame{f}
		}
		mu.Lock()
		seen++
		hit := seen == n
		mu.Unlock()
		if !hit {
			return []client.Frame{f}
		}
		return change(m, f)
	}
}

// runFor lets traffic flow until every room has n more acks.
func runFor(t *testing.T, k *MultiRoom, n int) {
	t.Helper()
	if err := k.WaitProgress(nil, n); err != nil {
		t.Fatal(err)
	}
}

// wantChecks asserts that the report failed exactly the checks want, and
// that each failure reached the test.
func wantChecks(t *testing.T, rep Report, rec *recorder, want ...Check) {
	t.Helper()
	got := rep.FailedChecks()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %v, want %v:\n%v", got, want, rep.Problems())
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errs) != len(want) {
		t.Fatalf("%d failures reported to the test, want %d: %v", len(rec.errs), len(want), rec.errs)
	}
	for _, e := range rec.errs {
		t.Logf("reported as expected: %s", e)
	}
}

// TestMultiRoomPassesCleanTraffic runs the clients against a real node,
// breaking two of their connections mid-run: they must reconnect, resume
// and resend, and every check must pass.
func TestMultiRoomPassesCleanTraffic(t *testing.T) {
	k, rec := newTestChecker(t, nil)
	for _, name := range []string{"sub-0", "pub-0"} {
		k.mu.Lock()
		var s *session
		for _, a := range k.actors {
			if a.name == name {
				s = a.current
			}
		}
		k.mu.Unlock()
		if s == nil {
			t.Fatalf("%s has no connection", name)
		}
		s.conn.Abort()
	}
	runFor(t, k, 10)
	rep := k.Verify("clean")
	wantChecks(t, rep, rec)
	if rep.Acked < 30 {
		t.Fatalf("only %d messages acknowledged", rep.Acked)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, a := range k.actors {
		if a.name == "sub-0" || a.name == "pub-0" {
			if n := len(a.rooms["r-0"].epochs); n != 1 {
				t.Fatalf("%s saw %d epochs of r-0 across its reconnect, want 1", a.name, n)
			}
		}
	}
	t.Log(rep.Summary())
}

func TestMultiRoomDetectsLossAndGap(t *testing.T) {
	k, rec := newTestChecker(t, nthMessage(t, "sub-0", 3, func(protocol.Message, client.Frame) []client.Frame { return nil }))
	runFor(t, k, 5)
	rep := k.Verify("drop")
	wantChecks(t, rep, rec, CheckLost, CheckOutOfOrder)
	if rep.Lost != 1 || rep.LostEverywhere != 0 || rep.OutOfOrder != 1 {
		t.Fatalf("lost %d (%d everywhere), out of order %d; want 1 (0 everywhere) and 1", rep.Lost, rep.LostEverywhere, rep.OutOfOrder)
	}
}

func TestMultiRoomDetectsDuplicate(t *testing.T) {
	k, rec := newTestChecker(t, nthMessage(t, "sub-1", 3, func(_ protocol.Message, f client.Frame) []client.Frame { return []client.Frame{f, f} }))
	runFor(t, k, 5)
	rep := k.Verify("duplicate")
	wantChecks(t, rep, rec, CheckDuplicated)
}

func TestMultiRoomDetectsReorder(t *testing.T) {
	// sub-0 reads the 3rd message of r-1 it gets after the 4th.
	var held *client.Frame
	var mu sync.Mutex
	seen := 0
	tamper := func(who string, f client.Frame) []client.Frame {
		var m protocol.Message
		if who != "sub-0" || f.Type != protocol.TypeMessage || f.Decode(&m) != nil || m.Room != "r-1" {
			return []client.Frame{f}
		}
		mu.Lock()
		defer mu.Unlock()
		seen++
		switch {
		case seen == 3:
			held = &f
			return nil
		case seen == 4:
			return []client.Frame{f, *held}
		}
		return []client.Frame{f}
	}
	k, rec := newTestChecker(t, tamper)
	runFor(t, k, 5)
	rep := k.Verify("reorder")
	wantChecks(t, rep, rec, CheckOutOfOrder)
	if rep.OutOfOrder != 2 {
		t.Fatalf("out of order %d, want 2 (the 4th after the 2nd, the 3rd after the 4th)", rep.OutOfOrder)
	}
}

func TestMultiRoomDetectsConflictAtSubscriber(t *testing.T) {
	k, rec := newTestChecker(t, nthMessage(t, "sub-0", 3, func(m protocol.Message, _ client.Frame) []client.Frame {
		m.Text = "something else"
		return []client.Frame{frameOf(t, m)}
	}))
	runFor(t, k, 5)
	rep := k.Verify("conflict")
	// The subscriber got another message than the one acknowledged at that
	// seq: a conflict, and a loss of the acknowledged one.
	wantChecks(t, rep, rec, CheckConflict, CheckLost)
	if rep.ConflictingSeqs != 1 {
		t.Fatalf("%d conflicting seqs, want 1", rep.ConflictingSeqs)
	}
}

func TestMultiRoomDetectsConflictingAck(t *testing.T) {
	var mu sync.Mutex
	done := false
	tamper := func(who string, f client.Frame) []client.Frame {
		if who != "pub-0" || f.Type != protocol.TypeAck {
			return []client.Frame{f}
		}
		var a protocol.Ack
		_ = f.Decode(&a)
		mu.Lock()
		defer mu.Unlock()
		if done || a.Seq < 3 || a.Room != "r-2" {
			return []client.Frame{f}
		}
		done = true
		a.Seq-- // the ack names a seq that carries another message
		return []client.Frame{frameOf(t, a)}
	}
	k, rec := newTestChecker(t, tamper)
	runFor(t, k, 5)
	rep := k.Verify("conflicting ack")
	// Another message sits at the seq the ack names, and no subscriber has
	// the acknowledged one there: a conflict and a loss.
	wantChecks(t, rep, rec, CheckConflict, CheckLost)
	if rep.LostEverywhere != 1 {
		t.Fatalf("%d messages lost everywhere, want 1 (the acknowledged one is nowhere at its seq)", rep.LostEverywhere)
	}
}

func TestMultiRoomDetectsAckBeforeMessage(t *testing.T) {
	var mu sync.Mutex
	var held *client.Frame
	heldCID := ""
	swapped := false
	tamper := func(who string, f client.Frame) []client.Frame {
		if who != "pub-1" {
			return []client.Frame{f}
		}
		mu.Lock()
		defer mu.Unlock()
		if held != nil {
			h := *held
			held = nil
			var a protocol.Ack
			if f.Type == protocol.TypeAck && f.Decode(&a) == nil && a.CID == heldCID {
				swapped = true
				return []client.Frame{f, h}
			}
			return []client.Frame{h, f}
		}
		if swapped || f.Type != protocol.TypeMessage {
			return []client.Frame{f}
		}
		var m protocol.Message
		if f.Decode(&m) == nil && m.From == "pub-1" {
			held, heldCID = &f, m.CID
			return nil
		}
		return []client.Frame{f}
	}
	k, rec := newTestChecker(t, tamper)
	runFor(t, k, 5)
	rep := k.Verify("ack before message")
	mu.Lock()
	ok := swapped
	mu.Unlock()
	if !ok {
		t.Fatal("no ack followed its own message directly: the tamper never applied")
	}
	wantChecks(t, rep, rec, CheckAckBeforeMessage)
}

// delayRoom returns a tamper that, once started, holds back every frame of
// room r-0 that sub-0 reads for hold, then releases them in order with the
// next frame: a silence without loss or reordering.
func delayRoom(hold time.Duration) (tamper func(string, client.Frame) []client.Frame, start func()) {
	var mu sync.Mutex
	var since time.Time
	var held []client.Frame
	released := false
	start = func() {
		mu.Lock()
		defer mu.Unlock()
		since = time.Now()
	}
	tamper = func(who string, f client.Frame) []client.Frame {
		if who != "sub-0" {
			return []client.Frame{f}
		}
		mu.Lock()
		defer mu.Unlock()
		if since.IsZero() || released {
			return []client.Frame{f}
		}
		if time.Since(since) > hold {
			released = true
			return append(held, f)
		}
		var m protocol.Message
		if f.Type == protocol.TypeMessage && f.Decode(&m) == nil && m.Room == "r-0" {
			held = append(held, f)
			return nil
		}
		return []client.Frame{f}
	}
	return tamper, start
}

// waitReleased waits (through traffic) until the delayRoom hold is over.
func waitReleased(t *testing.T, k *MultiRoom, hold time.Duration) {
	t.Helper()
	deadline := time.Now().Add(hold)
	for time.Now().Before(deadline) {
		runFor(t, k, 1)
	}
	runFor(t, k, 5)
}

func TestMultiRoomDetectsSilentSubscriber(t *testing.T) {
	hold := 2 * (MultiRoomConfig{FailureDetection: testDetection, RouteTimeout: testRouteTimeout}).SilenceBound()
	tamper, start := delayRoom(hold)
	k, rec := newTestChecker(t, tamper)
	start()
	waitReleased(t, k, hold)
	rep := k.Verify("silent")
	wantChecks(t, rep, rec, CheckSilent)
	if rep.SilentSubscribers != 1 || rep.LongestStall < hold/2 {
		t.Fatalf("silent subscribers %d, longest stall %v; want 1 and about %v", rep.SilentSubscribers, rep.LongestStall, hold)
	}
}

// TestMultiRoomExcusesImpairedNode is the same silence on a node the test
// declared impaired for that time: not a failure.
func TestMultiRoomExcusesImpairedNode(t *testing.T) {
	hold := 2 * (MultiRoomConfig{FailureDetection: testDetection, RouteTimeout: testRouteTimeout}).SilenceBound()
	tamper, start := delayRoom(hold)
	k, rec := newTestChecker(t, tamper)
	url := k.cfg.Live()[0]
	k.Impair(url)
	start()
	waitReleased(t, k, hold)
	k.Restore(url)
	rep := k.Verify("impaired")
	wantChecks(t, rep, rec)
}

func TestMultiRoomDetectsSubscriberLeftBehind(t *testing.T) {
	var mu sync.Mutex
	seen := 0
	tamper := func(who string, f client.Frame) []client.Frame {
		var m protocol.Message
		if who != "sub-1" || f.Type != protocol.TypeMessage || f.Decode(&m) != nil || m.Room != "r-1" {
			return []client.Frame{f}
		}
		mu.Lock()
		defer mu.Unlock()
		if seen++; seen > 3 {
			return nil // from here on, r-1 never reaches sub-1
		}
		return []client.Frame{f}
	}
	k, rec := newTestChecker(t, tamper)
	runFor(t, k, 5)
	rep := k.Verify("left behind")
	// The run lasts less than the silence bound after the swallowing
	// starts, so only the end tells: never caught up, messages lost.
	wantChecks(t, rep, rec, CheckNotCaughtUp, CheckLost, CheckSilent)
}

// restartTamper makes sub-0 read, before the 4th message of r-0, an unasked
// joined announcing that r-0 started again in a new epoch.
func restartTamper(t *testing.T) func(string, client.Frame) []client.Frame {
	return nthMessage(t, "sub-0", 4, func(m protocol.Message, f client.Frame) []client.Frame {
		rf := false
		j := protocol.Joined{Type: protocol.TypeJoined, Room: "r-0", Epoch: "tampered", Head: m.Seq - 1, Oldest: 1, Recovered: &rf}
		return []client.Frame{frameOf(t, j), f}
	})
}

func TestMultiRoomDetectsEpochRestart(t *testing.T) {
	k, rec := newTestChecker(t, restartTamper(t))
	runFor(t, k, 5)
	rep := k.Verify("restart")
	wantChecks(t, rep, rec, CheckRestart)
	if len(rep.Restarts) != 1 || rep.Restarts[0].Erased == 0 {
		t.Fatalf("restarts %+v, want one that erased acknowledged messages", rep.Restarts)
	}
}

func TestMultiRoomAllowsDeclaredRestart(t *testing.T) {
	k, rec := newTestChecker(t, restartTamper(t))
	k.AllowRestart("r-0", "every copy lost (tampered)")
	runFor(t, k, 5)
	rep := k.Verify("allowed restart")
	wantChecks(t, rep, rec)
	if len(rep.Restarts) != 1 || rep.Restarts[0].Allowed == "" {
		t.Fatalf("restarts %+v, want one, allowed", rep.Restarts)
	}
}

func TestMultiRoomDetectsRollback(t *testing.T) {
	var mu sync.Mutex
	armed := false
	tamper := func(who string, f client.Frame) []client.Frame {
		var j protocol.Joined
		if who != "sub-0" || f.Type != protocol.TypeJoined || f.Decode(&j) != nil || j.Room != "r-2" || j.Recovered == nil || !*j.Recovered {
			return []client.Frame{f}
		}
		mu.Lock()
		defer mu.Unlock()
		if !armed {
			return []client.Frame{f}
		}
		armed = false
		j.Head = 1 // as if the room had gone back to seq 1
		return []client.Frame{frameOf(t, j)}
	}
	k, rec := newTestChecker(t, tamper)
	runFor(t, k, 3)
	mu.Lock()
	armed = true
	mu.Unlock()
	k.mu.Lock()
	for _, a := range k.actors {
		if a.name == "sub-0" {
			a.current.conn.Abort() // reconnect and resume
		}
	}
	k.mu.Unlock()
	runFor(t, k, 5)
	rep := k.Verify("rollback")
	// The replay that follows starts above the head the tampered joined
	// claimed: out of order too.
	wantChecks(t, rep, rec, CheckRollback, CheckOutOfOrder)
}

func TestMultiRoomDetectsNoRecovery(t *testing.T) {
	k, rec := newTestChecker(t, nil)
	k.StopPublishing()
	if err := k.waitFor(k.cfg.SilenceBound(), func() (bool, string) {
		for _, a := range k.actors {
			if len(a.pending) > 0 {
				return false, a.name + " has messages pending"
			}
		}
		return true, ""
	}); err != nil {
		t.Fatal(err)
	}
	k.Fault("a fault after the last message", []string{"r-1"})
	rep := k.Verify("no recovery")
	wantChecks(t, rep, rec, CheckNoRecovery)
}

func TestMultiRoomDetectsProtocolViolation(t *testing.T) {
	k, rec := newTestChecker(t, nthMessage(t, "sub-1", 2, func(m protocol.Message, f client.Frame) []client.Frame {
		m.Room = "never-joined"
		return []client.Frame{f, frameOf(t, m)}
	}))
	runFor(t, k, 5)
	rep := k.Verify("protocol")
	wantChecks(t, rep, rec, CheckProtocol)
}

func TestMultiRoomRecoveryTime(t *testing.T) {
	k, rec := newTestChecker(t, nil)
	k.Fault("nothing really", nil)
	runFor(t, k, 3)
	rep := k.Verify("recovery")
	wantChecks(t, rep, rec)
	d, ok := rep.Recovery()
	if !ok || d <= 0 || d > k.cfg.SilenceBound() {
		t.Fatalf("recovery %v (%v), want a positive time under the bound", d, ok)
	}
}

// TestMultiRoomAcceptsDuplicateAck replays an ack as the duplicate a
// resend would get: the same message at the same seq, not a conflict.
func TestMultiRoomAcceptsDuplicateAck(t *testing.T) {
	var mu sync.Mutex
	n := 0
	tamper := func(who string, f client.Frame) []client.Frame {
		var a protocol.Ack
		if who != "pub-0" || f.Type != protocol.TypeAck || f.Decode(&a) != nil {
			return []client.Frame{f}
		}
		mu.Lock()
		defer mu.Unlock()
		if n++; n%3 != 0 {
			return []client.Frame{f}
		}
		a.Duplicate = true
		return []client.Frame{f, frameOf(t, a)}
	}
	k, rec := newTestChecker(t, tamper)
	runFor(t, k, 5)
	rep := k.Verify("duplicate ack")
	wantChecks(t, rep, rec)
}

// TestMultiRoomDetectsMessageStoredTwice makes sub-0 read the 4th message
// of r-0 it gets with the content of the 3rd: one message under two seqs
// (and, at the 4th seq, another message than the one acknowledged there).
func TestMultiRoomDetectsMessageStoredTwice(t *testing.T) {
	var mu sync.Mutex
	var third protocol.Message
	seen := 0
	tamper := func(who string, f client.Frame) []client.Frame {
		var m protocol.Message
		if who != "sub-0" || f.Type != protocol.TypeMessage || f.Decode(&m) != nil || m.Room != "r-0" {
			return []client.Frame{f}
		}
		mu.Lock()
		defer mu.Unlock()
		switch seen++; seen {
		case 3:
			third = m
		case 4:
			again := third
			again.Seq, again.MID = m.Seq, m.MID
			return []client.Frame{frameOf(t, again)}
		}
		return []client.Frame{f}
	}
	k, rec := newTestChecker(t, tamper)
	runFor(t, k, 5)
	rep := k.Verify("stored twice")
	wantChecks(t, rep, rec, CheckDuplicated, CheckConflict, CheckLost)
	if rep.Duplicated != 1 {
		t.Fatalf("duplicated %d, want 1 (the 3rd message again at the 4th seq)", rep.Duplicated)
	}
}
