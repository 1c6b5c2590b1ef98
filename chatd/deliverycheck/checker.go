// Package deliverycheck checks ringchat's delivery promise end to end, from
// the outside, with real WebSocket clients: while a cluster changes under
// them (nodes added, drained, crashed, rolled), every message whose send was
// acknowledged reaches every subscriber of the room exactly once, in sequence
// order, with no gap, and every subscriber that had to reconnect resumes
// where it stopped (joined with recovered: true), whatever node it lands on.
//
// A Checker drives publishers and subscribers that behave as the protocol
// asks a good client to (docs/protocol.md §12): reconnect after any
// disconnect, resume with since and epoch, resend an unacknowledged message
// with the same cid. It records every ack and every delivery, and Verify
// fails the test on any acknowledged message lost, duplicated, reordered or
// delivered under another sequence number, on any unrecovered resume, and on
// a subscriber that never catches up. Messages that were sent but never
// acknowledged are not held to account: the protocol promises nothing about
// them.
//
// It only needs the WebSocket URLs of the nodes that are up, so the same
// checker runs against nodes in the test process, chatd processes on
// loopback (chatd/cluster's tests) and pods on Kubernetes (e2e/).
//
// MultiRoom does the same in many rooms at once, for the fault schedule
// (chatd/faults) and the container faults (e2e/partition), and checks more:
// one sequence number carrying two messages (across subscribers and acks),
// an ack before the sender's own message, subscribers left silent, rooms
// restarted under a new epoch, and the recovery time of each fault. Its
// Report renders as a Markdown table.
package deliverycheck

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Timeout bounds a subscriber's first join (AddSubscriber, RunTraffic) and
// WaitAcked: long enough for a loaded CI machine running -race, short enough
// that traffic that never starts fails quickly.
const Timeout = 10 * time.Second

// catchUpTimeout bounds Verify's wait for subscribers to reach the highest
// acknowledged sequence.
const catchUpTimeout = 30 * time.Second

// Checker drives publishers and subscribers through a room of a cluster
// while its membership changes, and records every ack and every delivery.
// Verify then asserts the promise: every acknowledged message reaches every
// subscriber exactly once, in sequence order, with no gap, whatever node the
// clients had to move to.
//
// Clients behave as a good client should (docs/protocol.md): on any
// disconnect they reconnect to another live node, resume with since+epoch,
// and resend an unacknowledged message with the same cid.
type Checker struct {
	t    testing.TB
	live func() []string // WebSocket URLs of the live nodes
	room string

	mu       sync.Mutex
	acked    map[string]uint64 // cid → seq
	ackOrder []string
	problems []string
	subs     []*subscriber

	stop chan struct{}
	// stopPublishing ends the publishers after their current message (see
	// StopPublishing); stopPublishingOnce closes it.
	stopPublishing     chan struct{}
	stopPublishingOnce sync.Once
	// ackSignal is pinged on every acknowledgement, for WaitAcked.
	ackSignal chan struct{}
	wg        sync.WaitGroup
}

type subscriber struct {
	name  string
	epoch string
	last  uint64
	got   map[uint64]string // seq → cid
	moves int
}

// NewChecker prepares a checker for room; live returns the WebSocket URLs
// (ws://host:port/ws) of the nodes that are up, and is called on every
// (re)connect: chatdtest's Cluster.LiveURLs and ProcessCluster.LiveURLs, or a
// load balancer's address that only sends clients to live nodes. Every
// client stops when the test ends.
func NewChecker(t testing.TB, live func() []string, room string) *Checker {
	k := &Checker{t: t, live: live, room: room, acked: make(map[string]uint64), stop: make(chan struct{}),
		stopPublishing: make(chan struct{}), ackSignal: make(chan struct{}, 1)}
	t.Cleanup(k.Stop)
	return k
}

func (k *Checker) problem(format string, args ...any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.problems = append(k.problems, fmt.Sprintf(format, args...))
}

// decode decodes a frame the server sent, recording a problem when it does
// not decode: a frame the protocol does not allow is a failure, not a zero
// value to carry on with.
func (k *Checker) decode(who string, f client.Frame, v any) bool {
	if err := f.Decode(v); err != nil {
		k.problem("%s: undecodable %s frame %s: %v", who, f.Type, f.Raw, err)
		return false
	}
	return true
}

// liveURL picks a live node, preferring index i.
func (k *Checker) liveURL(i int) string {
	live := k.live()
	if len(live) == 0 {
		return ""
	}
	return live[i%len(live)]
}

func (k *Checker) stopped() bool {
	select {
	case <-k.stop:
		return true
	default:
		return false
	}
}

// pause waits briefly before a reconnect, returning false if stopping.
func (k *Checker) pause() bool {
	select {
	case <-k.stop:
		return false
	case <-time.After(time.Duration(20+rand.IntN(60)) * time.Millisecond):
		return true
	}
}

// AddSubscriber starts a subscriber that connects to node index i first
// (of the URLs live returns) and then to the next on each reconnect. It
// returns once the subscriber has joined, failing the test after Timeout.
func (k *Checker) AddSubscriber(name string, i int) {
	s := &subscriber{name: name, got: make(map[uint64]string)}
	k.mu.Lock()
	k.subs = append(k.subs, s)
	k.mu.Unlock()
	joined := make(chan struct{})
	var once sync.Once
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		for attempt := i; !k.stopped(); attempt++ {
			k.subscribeOnce(s, k.liveURL(attempt), func() { once.Do(func() { close(joined) }) })
			if !k.pause() {
				return
			}
		}
	}()
	select {
	case <-joined:
	case <-time.After(Timeout):
		k.t.Fatalf("subscriber %s could not join", name)
	}
}

func (k *Checker) subscribeOnce(s *subscriber, url string, onJoined func()) {
	if url == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	c, err := client.Connect(ctx, url, protocol.ClientFrame{Name: s.name}, client.Options{})
	cancel()
	if err != nil {
		return
	}
	defer c.Abort()
	go func() {
		<-k.stop
		c.Abort()
	}()
	k.mu.Lock()
	join := protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: k.room}
	if s.epoch != "" {
		since := s.last
		join.Since, join.Epoch = &since, s.epoch
		s.moves++
	}
	k.mu.Unlock()
	if c.Send(join) != nil {
		return
	}
	for {
		f, err := c.Read()
		if err != nil {
			return
		}
		switch f.Type {
		case protocol.TypeJoined:
			var j protocol.Joined
			if !k.decode(s.name, f, &j) {
				continue
			}
			k.mu.Lock()
			if s.epoch != "" && (j.Recovered == nil || !*j.Recovered) {
				k.problems = append(k.problems, fmt.Sprintf("%s: resume from %d not recovered (epoch %s → %s, oldest %d)", s.name, s.last, s.epoch, j.Epoch, j.Oldest))
			}
			if s.epoch == "" {
				s.epoch, s.last = j.Epoch, j.Head
			}
			k.mu.Unlock()
			onJoined()
		case protocol.TypeMessage:
			var m protocol.Message
			if !k.decode(s.name, f, &m) {
				continue
			}
			k.mu.Lock()
			switch {
			case m.Seq == s.last+1:
				s.got[m.Seq] = m.CID
				s.last = m.Seq
			case m.Seq <= s.last:
				k.problems = append(k.problems, fmt.Sprintf("%s: duplicate seq %d (last %d)", s.name, m.Seq, s.last))
			default:
				k.problems = append(k.problems, fmt.Sprintf("%s: gap: seq %d after %d", s.name, m.Seq, s.last))
				s.got[m.Seq] = m.CID
				s.last = m.Seq
			}
			k.mu.Unlock()
		case protocol.TypeError:
			return // reconnect and try again
		}
	}
}

// Publish runs a publisher that sends count messages, one every interval
// after the previous one's ack, starting on node index i, and returns when
// all are acknowledged, or after the current message's ack once
// StopPublishing was called, or when the checker stops. A message refused
// with an error (unavailable while its room moves, rate_limited) or left
// without an ack by a broken connection is sent again with the same cid; one
// refused with not_joined (the join it sent after connecting failed) is sent
// again on a new connection that joins first.
func (k *Checker) Publish(name string, i, count int, interval time.Duration) {
	k.wg.Add(1)
	defer k.wg.Done()
	var c *client.Conn
	defer func() {
		if c != nil {
			c.Abort()
		}
	}()
	attempt := i
	for n := 0; n < count && !k.stopped(); {
		if c == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			var err error
			c, err = client.Connect(ctx, k.liveURL(attempt), protocol.ClientFrame{Name: name}, client.Options{})
			cancel()
			attempt++
			if err != nil {
				c = nil
				k.pause()
				continue
			}
			if c.Send(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: k.room}) != nil {
				c.Abort()
				c = nil
				continue
			}
		}
		cid := fmt.Sprintf("%s-%d", name, n)
		if err := c.Send(protocol.ClientFrame{Type: protocol.TypeSend, ID: cid, Room: k.room, CID: cid, Text: "checker " + cid}); err != nil {
			c.Abort()
			c = nil
			continue
		}
		acked := false
		_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
		for !acked {
			f, err := c.Read()
			if err != nil {
				break
			}
			switch f.Type {
			case protocol.TypeAck:
				var a protocol.Ack
				if !k.decode(name, f, &a) {
					continue
				}
				if a.CID != cid {
					continue
				}
				k.mu.Lock()
				if prev, ok := k.acked[cid]; ok && prev != a.Seq {
					k.problems = append(k.problems, fmt.Sprintf("%s acked twice with different seqs %d and %d", cid, prev, a.Seq))
				}
				if _, ok := k.acked[cid]; !ok {
					k.ackOrder = append(k.ackOrder, cid)
				}
				k.acked[cid] = a.Seq
				k.mu.Unlock()
				select {
				case k.ackSignal <- struct{}{}:
				default:
				}
				acked = true
			case protocol.TypeError:
				var e protocol.Error
				if !k.decode(name, f, &e) {
					continue
				}
				if e.ID == cid && e.Code == protocol.CodeNotJoined {
					// This connection's join failed (unavailable while the
					// room moved): join again on a new connection.
					c.Abort()
					c = nil
					goto resend
				}
				if e.ID == cid {
					// unavailable while a room moves: resend the same cid.
					goto resend
				}
			}
		}
		if !acked {
			c.Abort()
			c = nil
			continue
		}
		n++
		select {
		case <-k.stop:
			return
		case <-k.stopPublishing:
			return
		case <-time.After(interval):
		}
		continue
	resend:
		k.pause()
	}
}

// StopPublishing makes every publisher return after the ack of the message
// it is sending, instead of after its count: for traffic that must last as
// long as a change of unknown duration (a rolling update), started with a
// large count. Subscribers keep running, so that Verify can then wait for
// them to catch up. The function RunTraffic returned then returns once every
// publisher has had its last ack.
func (k *Checker) StopPublishing() {
	k.stopPublishingOnce.Do(func() { close(k.stopPublishing) })
}

// Stop ends every client at once, publishers and subscribers, and waits for
// them. Verify calls it; it also runs when the test ends.
func (k *Checker) Stop() {
	select {
	case <-k.stop:
	default:
		close(k.stop)
	}
	k.wg.Wait()
}

// RunTraffic adds subscribers (subscriber i connects to node index i first)
// and starts publishers sending count messages each, one every interval
// (publisher i starts on node index i+1). It returns once every subscriber
// has joined; the returned function waits for the publishers to finish
// (after count messages each, or StopPublishing).
func (k *Checker) RunTraffic(subscribers, publishers, count int, interval time.Duration) (wait func()) {
	for i := 0; i < subscribers; i++ {
		k.AddSubscriber(fmt.Sprint("sub", i), i)
	}
	var pubs sync.WaitGroup
	for i := 0; i < publishers; i++ {
		pubs.Add(1)
		go func(i int) {
			defer pubs.Done()
			k.Publish(fmt.Sprint("pub", i), i+1, count, interval)
		}(i)
	}
	return pubs.Wait
}

// WaitAcked waits until at least n messages have been acknowledged, failing
// the test after Timeout.
func (k *Checker) WaitAcked(n int) {
	k.t.Helper()
	deadline := time.After(Timeout)
	for k.Acked() < n {
		select {
		case <-k.ackSignal:
		case <-deadline:
			k.t.Fatalf("only %d of %d messages acknowledged within %v: traffic stalled or never started", k.Acked(), n, Timeout)
		}
	}
}

// Room returns the room the checker's clients use.
func (k *Checker) Room() string { return k.room }

// Acked returns how many distinct messages were acknowledged so far.
func (k *Checker) Acked() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.acked)
}

// Verify waits (up to 30 s) until every subscriber has caught up with the
// highest acknowledged sequence, stops the clients, and fails the test on
// any lost, duplicated, reordered or unrecovered message. Call it once the
// publishers are done (the function RunTraffic returned has returned);
// otherwise the messages acknowledged while it stops are checked too, and a
// subscriber stopped before receiving them counts as a loss.
func (k *Checker) Verify() {
	k.t.Helper()
	deadline := time.Now().Add(catchUpTimeout)
	for {
		k.mu.Lock()
		var maxSeq uint64
		for _, seq := range k.acked {
			maxSeq = max(maxSeq, seq)
		}
		behind := ""
		for _, s := range k.subs {
			if s.last < maxSeq {
				behind = fmt.Sprintf("%s at %d of %d", s.name, s.last, maxSeq)
			}
		}
		k.mu.Unlock()
		if behind == "" {
			break
		}
		if time.Now().After(deadline) {
			k.problem("subscribers never caught up: %s", behind)
			break
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	k.Stop()
	k.mu.Lock()
	defer k.mu.Unlock()
	seqs := map[uint64]string{}
	for cid, seq := range k.acked {
		if other, ok := seqs[seq]; ok {
			k.problems = append(k.problems, fmt.Sprintf("seq %d acked for two messages: %s and %s", seq, other, cid))
		}
		seqs[seq] = cid
	}
	for _, s := range k.subs {
		for _, cid := range k.ackOrder {
			seq := k.acked[cid]
			if got, ok := s.got[seq]; !ok {
				k.problems = append(k.problems, fmt.Sprintf("%s never got acked %s (seq %d)", s.name, cid, seq))
			} else if got != cid {
				k.problems = append(k.problems, fmt.Sprintf("%s got seq %d as %s, acked as %s", s.name, seq, got, cid))
			}
		}
	}
	if len(k.problems) > 0 {
		slices.Sort(k.problems)
		k.t.Fatalf("%d problems (first 20):\n%s", len(k.problems), joinLines(k.problems[:min(20, len(k.problems))]))
	}
	k.t.Logf("checker: %d messages acked, %d subscribers, all delivered exactly once in order", len(k.acked), len(k.subs))
}

func joinLines(ls []string) string {
	out := ""
	for _, l := range ls {
		out += "  " + l + "\n"
	}
	return out
}
