package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/membership"
)

// fakeMembers is a membership whose view and readiness the test sets, and
// which records every state announced.
type fakeMembers struct {
	mu       sync.Mutex
	view     membership.View
	ready    bool
	startErr error
	states   []membership.State
}

func (f *fakeMembers) Start(context.Context) error { return f.startErr }

func (f *fakeMembers) View() membership.View {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view
}

func (f *fakeMembers) SetState(s membership.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states = append(f.states, s)
	return nil
}

func (f *fakeMembers) Ready() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready {
		return false, "membership not settled"
	}
	return true, ""
}

func (f *fakeMembers) announced() []membership.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]membership.State(nil), f.states...)
}

// ping is one Ping call the test answers.
type ping struct {
	name string
	done func(error)
}

// fakePinger hands every Ping to the test, which answers it.
type fakePinger struct{ calls chan ping }

func (f *fakePinger) Ping(name, _ string, _ time.Duration, done func(error)) {
	f.calls <- ping{name, done}
}

// nextPing returns the next ping of the link check, or fails the test if
// Join returned instead (it went ACTIVE, or gave up, without asking).
func nextPing(t *testing.T, p *fakePinger, joined <-chan struct{}) ping {
	t.Helper()
	select {
	case c := <-p.calls:
		return c
	case <-joined:
		t.Fatal("Join returned without (another) link check")
		return ping{}
	}
}

func members(self string, others ...string) membership.View {
	v := membership.View{Self: self, Members: []membership.Member{{Name: self, Meta: membership.Meta{RPCAddr: self + ":1"}}}}
	for _, o := range others {
		v.Members = append(v.Members, membership.Member{Name: o, Meta: membership.Meta{RPCAddr: o + ":1", State: membership.StateActive}})
	}
	return v
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// fast keeps the link check's retries short: the test answers each ping
// itself, so the backoff only spaces the attempts.
var fast = Config{RetryMin: time.Millisecond, RetryMax: time.Millisecond}

// joining is a node of members a and b whose Join runs in the background;
// joined closes when Join returns.
type joining struct {
	m      *fakeMembers
	p      *fakePinger
	l      *Lifecycle
	joined chan struct{}
}

// startJoin starts Join(ctx) on node a of a two-member view whose pinger
// hands the test every ping (buffered by pingBuffer).
func startJoin(ctx context.Context, pingBuffer int) joining {
	j := joining{m: &fakeMembers{view: members("a", "b"), ready: true}, p: &fakePinger{calls: make(chan ping, pingBuffer)}, joined: make(chan struct{})}
	j.l = New(fast, j.m, j.p, quiet())
	go func() {
		defer close(j.joined)
		j.l.Join(ctx)
	}()
	return j
}

// A node goes ACTIVE only after a ping reached another member; until then
// it stays joining and its readiness names the members asked and the
// number of failed attempts.
func TestJoinWaitsForTheLink(t *testing.T) {
	j := startJoin(context.Background(), 0)
	m, p, l, joined := j.m, j.p, j.l, j.joined

	if ok, why := l.Ready(); ok || !strings.Contains(why, "checking the inter-node connection") {
		t.Fatalf("before any ping: ready=%v %q", ok, why)
	}
	c := nextPing(t, p, joined)
	for attempt := 1; attempt <= 2; attempt++ {
		if c.name != "b" {
			t.Fatalf("pinged %q, want b", c.name)
		}
		c.done(errors.New("shared secret mismatch"))
		// The next attempt starts after the failure is recorded.
		c = nextPing(t, p, joined)
		ok, why := l.Ready()
		if ok || !strings.Contains(why, fmt.Sprintf("asked b; %d attempts;", attempt)) || !strings.Contains(why, "shared secret mismatch") {
			t.Fatalf("after %d failed attempts: ready=%v %q", attempt, ok, why)
		}
		if got := m.announced(); len(got) != 0 {
			t.Fatalf("announced %v while the link check fails", got)
		}
	}
	c.done(nil)
	<-joined
	if got := m.announced(); len(got) != 1 || got[0] != membership.StateActive {
		t.Fatalf("announced %v, want [active]", got)
	}
	if ok, why := l.Ready(); !ok {
		t.Fatalf("after the link check: not ready: %s", why)
	}
}

// A node alone (bootstrapped, nobody else alive) has nothing to check and
// goes ACTIVE at once; readiness still waits for the membership.
func TestJoinAlone(t *testing.T) {
	m := &fakeMembers{view: members("a")}
	l := New(fast, m, &fakePinger{}, quiet())
	l.Join(context.Background())
	if got := m.announced(); len(got) != 1 || got[0] != membership.StateActive {
		t.Fatalf("announced %v, want [active]", got)
	}
	if ok, why := l.Ready(); ok || why != "membership not settled" {
		t.Fatalf("ready=%v %q, want membership's reason first", ok, why)
	}
}

// A drain that starts while the link check is still failing wins: the
// join that completes afterwards must not announce ACTIVE over DRAINING.
func TestDrainBeforeActivationWins(t *testing.T) {
	j := startJoin(context.Background(), 0)
	m, p, l, joined := j.m, j.p, j.l, j.joined
	c := nextPing(t, p, joined)
	l.Drain(&fakeRooms{}, time.Now().Add(time.Minute))
	c.done(nil)
	<-joined
	if got := m.announced(); len(got) != 1 || got[0] != membership.StateDraining {
		t.Fatalf("announced %v, want [draining] only", got)
	}
}

// A join whose context ends while it retries gives up without announcing.
func TestJoinCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	j := startJoin(ctx, 1)
	nextPing(t, j.p, j.joined) // the first attempt is in flight and never answered
	cancel()
	<-j.joined
	if got := j.m.announced(); len(got) != 0 {
		t.Fatalf("announced %v after a cancelled join", got)
	}
}

// fakeRooms counts down the rooms still owned, one per look. With t set,
// a look beyond maxLooks fails the test (Drain runs on the test's
// goroutine), so a drain that would wait for its deadline fails at once.
type fakeRooms struct {
	mu       sync.Mutex
	owned    int
	peers    bool
	looked   int
	t        *testing.T
	maxLooks int
}

func (f *fakeRooms) OwnedRoomCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.looked++
	if f.t != nil && f.looked > f.maxLooks {
		f.t.Fatalf("drain looked %d times, want at most %d", f.looked, f.maxLooks)
	}
	n := f.owned
	if f.owned > 0 {
		f.owned--
	}
	return n
}

func (f *fakeRooms) HasActivePeers() bool { return f.peers }

// Drain announces DRAINING and returns once no room is owned any more.
func TestDrainWaitsForHandoffs(t *testing.T) {
	m := &fakeMembers{view: members("a", "b")}
	l := New(Config{DrainPoll: time.Microsecond}, m, &fakePinger{}, quiet())
	r := &fakeRooms{owned: 3, peers: true}
	l.Drain(r, time.Now().Add(time.Hour))
	if got := m.announced(); len(got) != 1 || got[0] != membership.StateDraining {
		t.Fatalf("announced %v, want [draining]", got)
	}
	if r.looked != 4 || r.owned != 0 {
		t.Fatalf("looked %d times, %d rooms left; want 4 looks and none left", r.looked, r.owned)
	}
}

// With no active node left to take them, the rooms go with this node: the
// drain does not wait for its deadline.
func TestDrainWithNobodyToTakeOver(t *testing.T) {
	m := &fakeMembers{view: members("a")}
	l := New(Config{DrainPoll: time.Microsecond}, m, &fakePinger{}, quiet())
	r := &fakeRooms{owned: 5, t: t, maxLooks: 1}
	l.Drain(r, time.Now().Add(time.Hour))
	if r.looked != 1 {
		t.Fatalf("looked %d times, want 1", r.looked)
	}
}

// A drain stops at its deadline even with rooms still owned.
func TestDrainDeadline(t *testing.T) {
	m := &fakeMembers{view: members("a", "b")}
	l := New(Config{DrainPoll: time.Microsecond}, m, &fakePinger{}, quiet())
	r := &fakeRooms{owned: 1000, peers: true, t: t, maxLooks: 1}
	l.Drain(r, time.Now()) // already passed: one look, no poll
	if r.looked != 1 {
		t.Fatalf("looked %d times, want 1", r.looked)
	}
}

// linkCandidates asks active members first, never this node nor a member
// without a transport address, and at most fanout of them.
func TestLinkCandidates(t *testing.T) {
	v := members("a", "b", "c")
	v.Members = append(v.Members,
		membership.Member{Name: "j", Meta: membership.Meta{RPCAddr: "j:1", State: membership.StateJoining}},
		membership.Member{Name: "x"}) // no RPC address yet
	for range 20 {
		got := linkCandidates(v, 3)
		if len(got) != 3 || got[2].Name != "j" {
			t.Fatalf("candidates %v: want b and c (any order), then j", got)
		}
		for _, p := range got[:2] {
			if p.Name != "b" && p.Name != "c" {
				t.Fatalf("candidates %v: want the active ones first", got)
			}
		}
	}
	if got := linkCandidates(v, 1); len(got) != 1 || got[0].Name == "j" {
		t.Fatalf("fanout 1: %v", got)
	}
}
