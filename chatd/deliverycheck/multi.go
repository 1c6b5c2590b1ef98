package deliverycheck

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// MultiRoomConfig describes the traffic of a MultiRoom and the cluster's
// timing, from which every window of the checks is derived.
type MultiRoomConfig struct {
	// Live returns the WebSocket URLs of the nodes clients may connect to,
	// and is called on every (re)connect.
	Live func() []string
	// Rooms are the rooms under traffic; every client joins all of them.
	Rooms []string
	// Publishers is the number of clients that send (and, having joined
	// every room, also receive); publisher i connects to node index i first.
	Publishers int
	// Subscribers is the number of clients that only receive; subscriber i
	// connects to node index i first.
	Subscribers int
	// Rate is the number of messages per second all publishers together
	// try to send, spread over the rooms. A publisher keeps at most one
	// unacknowledged message per room, so the rate drops while rooms move.
	Rate float64
	// FailureDetection is how long the cluster takes to declare a silent
	// node dead (chatdtest.LocalGossipTiming for the local profile).
	FailureDetection time.Duration
	// RouteTimeout is chatd's --route-timeout: how long a request waits for
	// a room's owner before the client gets unavailable.
	RouteTimeout time.Duration
	// NodeName, when set, names the node at a URL in the report's examples.
	NodeName func(url string) string
	// Token, when set, makes every client authenticate with a token
	// instead of a name: it is called at every connect with the client's
	// name (which the token's "sub" must be, since the checks recognise a
	// client's own messages by it), so a test can rotate the issuer's keys
	// under the traffic. A hello the server refuses with 4001 is then a
	// failure (CheckAuthRefused): the test hands out valid tokens only.
	Token func(name string) string
	// SilenceMargin multiplies FailureDetection + RouteTimeout into the
	// silence bound (SilenceBound); zero means 1.5, the margin a loaded
	// two-core machine needs. RINGCHAT_TEST_TIMEOUT_SCALE (testtime)
	// multiplies it further.
	SilenceMargin float64
}

// SilenceBound is the longest a subscriber may receive nothing from a room
// that keeps acknowledging messages: a room whose owner died is taken over
// within failure detection, and a request to it is answered within the
// route timeout, so past their sum (times the margin, and the tests' time
// scale) a subscriber that has heard nothing, not even a joined with
// recovered:false, was left silent.
func (c MultiRoomConfig) SilenceBound() time.Duration {
	m := c.SilenceMargin
	if m == 0 {
		m = 1.5
	}
	return testtime.Bound(time.Duration(m * float64(c.FailureDetection+c.RouteTimeout)))
}

// ackTimeout is how long a publisher waits for an ack before it sends the
// same cid again on the same connection: docs/protocol.md §12.8 promises an
// answer within the route timeout plus 5 s while the connection lives.
func (c MultiRoomConfig) ackTimeout() time.Duration { return c.RouteTimeout + 5*time.Second }

// connectTimeout bounds a connect and its hello: a node that does not
// welcome a client within a failure detection time is as good as dead to
// the cluster too, and the client tries the next one.
func (c MultiRoomConfig) connectTimeout() time.Duration { return c.FailureDetection }

func (c MultiRoomConfig) validate() error {
	switch {
	case c.Live == nil:
		return fmt.Errorf("MultiRoomConfig.Live is nil")
	case len(c.Rooms) == 0:
		return fmt.Errorf("MultiRoomConfig.Rooms is empty")
	case c.Publishers < 1:
		return fmt.Errorf("MultiRoomConfig.Publishers is %d, want at least 1", c.Publishers)
	case c.Rate <= 0:
		return fmt.Errorf("MultiRoomConfig.Rate is %v, want a positive rate", c.Rate)
	case c.FailureDetection <= 0 || c.RouteTimeout <= 0:
		return fmt.Errorf("MultiRoomConfig needs FailureDetection and RouteTimeout (got %v and %v)", c.FailureDetection, c.RouteTimeout)
	}
	return nil
}

// MultiRoom drives publishers and subscribers through many rooms of a
// cluster at once, every client joined to every room, while the test
// injects faults; it records every ack and every delivery, and Verify
// checks them (see Report for what it fails on). Clients behave as
// docs/protocol.md §12 asks: on a broken connection they reconnect to the
// next live node with a jittered backoff, resume every room with since and
// epoch, and send every unacknowledged message again with the same cid;
// they stay connected to a node that merely stops answering.
type MultiRoom struct {
	t   testing.TB
	cfg MultiRoomConfig

	mu sync.Mutex
	// actors are the clients, publishers first.
	actors []*actor
	led    *ledger
	// faults, impaired and allowRestart are what the test told the checker
	// about the faults it injected.
	faults       []faultMark
	impaired     map[string][]window // node URL → times it could not serve
	allowRestart map[string]string   // room → why a new epoch is expected
	// stopPublishing is closed by StopPublishing, stop by Stop.
	stopPublishing     chan struct{}
	stopPublishingOnce sync.Once
	stop               chan struct{}
	stopOnce           sync.Once
	// changed is signalled (without blocking) after every ack, delivery
	// and joined, for the waits.
	changed chan struct{}
	wg      sync.WaitGroup
	started time.Time
	ended   time.Time
	// tamper, when set (by this package's tests), rewrites the frames a
	// client reads before the checker records them: it is how the tests
	// prove each check can fail.
	tamper func(actor string, f client.Frame) []client.Frame
}

// faultMark is a fault the test announced, for the recovery time.
type faultMark struct {
	label string
	at    time.Time
	rooms []string
}

// window is a span of time; to is zero while it is open.
type window struct{ from, to time.Time }

// NewMultiRoom prepares the checker; Start connects its clients. Every
// client stops when the test ends.
func NewMultiRoom(t testing.TB, cfg MultiRoomConfig) *MultiRoom {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	k := &MultiRoom{t: t, cfg: cfg, led: newLedger(), impaired: map[string][]window{}, allowRestart: map[string]string{},
		stopPublishing: make(chan struct{}), stop: make(chan struct{}), changed: make(chan struct{}, 1)}
	interval := time.Duration(float64(time.Second) * float64(cfg.Publishers) / cfg.Rate)
	for i := 0; i < cfg.Publishers; i++ {
		k.actors = append(k.actors, newActor(k, fmt.Sprint("pub-", i), i, interval))
	}
	for i := 0; i < cfg.Subscribers; i++ {
		k.actors = append(k.actors, newActor(k, fmt.Sprint("sub-", i), i, 0))
	}
	t.Cleanup(k.Stop)
	return k
}

// Config returns the configuration the checker runs with.
func (k *MultiRoom) Config() MultiRoomConfig { return k.cfg }

// Start connects every client and returns once each has joined every room,
// failing the test after the silence bound.
func (k *MultiRoom) Start() {
	k.t.Helper()
	k.mu.Lock()
	k.started = time.Now()
	k.mu.Unlock()
	for _, a := range k.actors {
		k.wg.Add(1)
		go a.run()
	}
	if err := k.waitFor(k.cfg.SilenceBound(), func() (bool, string) {
		for _, a := range k.actors {
			for _, room := range k.cfg.Rooms {
				if !a.rooms[room].cursor.Known() {
					return false, fmt.Sprintf("%s has not joined %s", a.name, room)
				}
			}
		}
		return true, ""
	}); err != nil {
		k.t.Fatalf("clients could not join: %v", err)
	}
}

// signal wakes the waits after a change.
func (k *MultiRoom) signal() {
	select {
	case k.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond (called under k.mu) holds, waking on every
// change, and returns an error with cond's last reason after within.
func (k *MultiRoom) waitFor(within time.Duration, cond func() (bool, string)) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		ok, why := cond()
		k.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-k.changed:
		case <-deadline.C:
			return fmt.Errorf("not within %v: %s", within, why)
		case <-k.stop:
			return fmt.Errorf("checker stopped: %s", why)
		}
	}
}

func (k *MultiRoom) stopped() bool {
	select {
	case <-k.stop:
		return true
	default:
		return false
	}
}

func (k *MultiRoom) publishingStopped() bool {
	select {
	case <-k.stopPublishing:
		return true
	default:
		return false
	}
}

// liveURL picks a live node, preferring index i.
func (k *MultiRoom) liveURL(i int) string {
	live := k.cfg.Live()
	if len(live) == 0 {
		return ""
	}
	return live[i%len(live)]
}

// Acked returns how many distinct messages were acknowledged so far.
func (k *MultiRoom) Acked() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.led.ackedMessages()
}

// WaitProgress waits until every room of rooms (all rooms when nil) has
// had n more messages acknowledged than when it was called, which shows
// that those rooms take messages again after a fault. It returns an error
// after the silence bound.
func (k *MultiRoom) WaitProgress(rooms []string, n int) error {
	if rooms == nil {
		rooms = k.cfg.Rooms
	}
	k.mu.Lock()
	base := map[string]int{}
	for _, r := range rooms {
		base[r] = k.led.roomAcks[r]
	}
	k.mu.Unlock()
	return k.waitFor(k.cfg.SilenceBound(), func() (bool, string) {
		for _, r := range rooms {
			if got := k.led.roomAcks[r] - base[r]; got < n {
				return false, fmt.Sprintf("room %s has %d new acks of %d", r, got, n)
			}
		}
		return true, ""
	})
}

// Fault records that a fault starts now and touches rooms (every room when
// nil): the report's recovery time runs from here to the first ack in the
// last of those rooms to take a message again.
func (k *MultiRoom) Fault(label string, rooms []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rooms == nil {
		rooms = k.cfg.Rooms
	}
	k.faults = append(k.faults, faultMark{label: label, at: time.Now(), rooms: slices.Clone(rooms)})
}

// Impair records that the node at url cannot serve its clients from now
// (frozen, cut off from the cluster, or holding a view that still counts a
// dead node as alive) until Restore: its subscribers' silence meanwhile is
// the fault itself and is not held against the silence bound, which
// applies again from Restore on. Impairing a node already impaired changes
// nothing.
func (k *MultiRoom) Impair(url string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ws := k.impaired[url]
	if len(ws) > 0 && ws[len(ws)-1].to.IsZero() {
		return
	}
	k.impaired[url] = append(ws, window{from: time.Now()})
}

// Restore ends the window Impair opened for url.
func (k *MultiRoom) Restore(url string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ws := k.impaired[url]
	if len(ws) > 0 && ws[len(ws)-1].to.IsZero() {
		ws[len(ws)-1].to = time.Now()
	}
}

// AllowRestart declares that room may legitimately start a new epoch
// (every node holding a copy of it was lost at once), with why; its
// acknowledged messages are then reported as erased rather than failing
// the test.
func (k *MultiRoom) AllowRestart(room, why string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.allowRestart[room] = why
}

// StopPublishing makes publishers send no new message; messages not yet
// acknowledged are still sent again until they are.
func (k *MultiRoom) StopPublishing() {
	k.stopPublishingOnce.Do(func() { close(k.stopPublishing) })
}

// Stop ends every client at once and waits for them. Verify calls it; it
// also runs when the test ends.
func (k *MultiRoom) Stop() {
	k.stopOnce.Do(func() {
		close(k.stop)
		k.mu.Lock()
		k.ended = time.Now()
		k.mu.Unlock()
	})
	k.wg.Wait()
}

// Verify stops the publishers, waits (up to the silence bound each) for
// their last acks and for every subscriber to catch up, stops the clients
// and checks everything recorded. Each failed check fails the test with
// concrete examples; the report carries the figures either way.
func (k *MultiRoom) Verify(scenario string) Report {
	k.t.Helper()
	k.StopPublishing()
	bound := k.cfg.SilenceBound()
	if err := k.waitFor(bound, func() (bool, string) {
		for _, a := range k.actors {
			if len(a.pending) > 0 {
				return false, fmt.Sprintf("%s has %d unacknowledged messages", a.name, len(a.pending))
			}
		}
		return true, ""
	}); err != nil {
		// Unacknowledged messages are not held to account: the protocol
		// promises nothing about them.
		k.t.Logf("publishers' last messages: %v", err)
	}
	caughtUp := k.waitFor(bound, k.caughtUp)
	k.Stop()
	k.mu.Lock()
	rep := k.analyze(scenario)
	k.mu.Unlock()
	if caughtUp != nil {
		rep.add(CheckNotCaughtUp, caughtUp.Error())
	}
	rep.fail(k.t)
	return rep
}

// caughtUp reports whether every client has every room up to its highest
// acknowledged sequence number, or was told it cannot (a newer epoch).
// Called under k.mu.
func (k *MultiRoom) caughtUp() (bool, string) {
	for _, a := range k.actors {
		for _, room := range k.cfg.Rooms {
			tr := a.rooms[room]
			latest := k.led.latestEpoch(room)
			if latest != "" && tr.cursor.Epoch != latest && k.led.maxAcked(room, latest) > 0 {
				return false, fmt.Sprintf("%s is still in epoch %s of %s, which moved on to epoch %s", a.name, tr.cursor.Epoch, room, latest)
			}
			if want := k.led.maxAcked(room, tr.cursor.Epoch); tr.cursor.Seq < want {
				return false, fmt.Sprintf("%s is at seq %d of %s (epoch %s), %d is acknowledged", a.name, tr.cursor.Seq, room, tr.cursor.Epoch, want)
			}
		}
	}
	return true, ""
}
