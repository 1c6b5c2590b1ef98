//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/deliverycheck"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Steady traffic of the tests that change the cluster: a few subscribers
// and publishers through the NodePort. A publisher sends its next message
// trafficInterval after the previous one's ack, which keeps each
// connection within chatd's default rate limit (20 frames/s, welcome.limits)
// while the room gets a message every ~17 ms.
const (
	trafficSubscribers = 4
	trafficPublishers  = 3
	trafficInterval    = 50 * time.Millisecond
	// trafficProgress is how many more acks show that traffic flows again
	// after a change.
	trafficProgress = 20
	// lastAckTimeout bounds the wait for every publisher's last ack after
	// StopPublishing.
	lastAckTimeout = 2 * time.Minute
)

// uniqueName is prefix plus a random suffix: rooms, users and objects of
// one run never meet those of an earlier run (chatd keeps an idle room, and
// the dedupe window of its senders, for minutes).
func uniqueName(prefix string) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return prefix + "-" + string(b)
}

// traffic is steady chat traffic in one room through the client Service's
// NodePort, recorded by a deliverycheck.Checker: its clients reconnect
// through the NodePort when their pod goes away, and kube-proxy sends them
// to pods that are ready.
type traffic struct {
	t    *testing.T
	k    *deliverycheck.Checker
	wait func()
}

// startTraffic starts subscribers and publishers in a new room and returns
// once messages are acknowledged.
func startTraffic(t *testing.T, ctx context.Context) *traffic {
	t.Helper()
	urls, err := env.nodePortURLs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	room := uniqueName("busy")
	k := deliverycheck.NewChecker(t, func() []string { return urls }, room)
	// Publishers run until StopPublishing: the count only has to outlast
	// any rollout.
	wait := k.RunTraffic(trafficSubscribers, trafficPublishers, math.MaxInt32, trafficInterval)
	k.WaitAcked(trafficProgress)
	t.Logf("traffic in room %s through %v: %d subscribers, %d publishers", room, urls, trafficSubscribers, trafficPublishers)
	return &traffic{t: t, k: k, wait: wait}
}

// flowing waits until trafficProgress more messages are acknowledged,
// showing that clients send again after a change.
func (tr *traffic) flowing() {
	tr.t.Helper()
	tr.k.WaitAcked(tr.k.Acked() + trafficProgress)
}

// verify ends the publishers after their current message, waits for their
// last acks, and checks the delivery promise (deliverycheck.Checker.Verify).
func (tr *traffic) verify() {
	tr.t.Helper()
	tr.k.StopPublishing()
	done := make(chan struct{})
	go func() {
		tr.wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(lastAckTimeout):
		tr.t.Errorf("publishers still waiting for their last ack %v after being asked to stop (%d messages acknowledged)", lastAckTimeout, tr.k.Acked())
	}
	tr.k.Verify()
}

// podClient is a protocol client connected to one given pod through a
// port-forward, paced to stay under the pod's rate limit.
type podClient struct {
	*client.Conn
	user string
	pace *rate.Limiter
}

// newPacer mirrors the server's token bucket from welcome.limits, as
// docs/protocol.md asks clients to, so that a burst of sends is not refused
// with rate_limited. Like the server's it starts full; the hello already
// took a token from the server's, so the pacer is one token short.
func newPacer(l protocol.Limits) *rate.Limiter {
	if l.RatePerSecond <= 0 || l.RateBurst <= 1 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(l.RatePerSecond), l.RateBurst-1)
}

// dialPod connects a client named user to pod and checks that the welcome
// comes from that pod. The connection and the port-forward close when the
// test ends.
func dialPod(t *testing.T, ctx context.Context, cc *chatv1alpha1.ChatCluster, pod *corev1.Pod, user string) *podClient {
	t.Helper()
	f, err := env.forwardHTTP(ctx, cc, pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := client.Connect(cctx, "ws://"+f.Addr+"/ws", protocol.ClientFrame{Name: user}, client.Options{})
	if err != nil {
		t.Fatalf("connecting %s to pod %s: %v", user, pod.Name, err)
	}
	t.Cleanup(c.Close)
	if c.Welcome.Server != pod.Name {
		t.Fatalf("%s's welcome comes from %q, want pod %s", user, c.Welcome.Server, pod.Name)
	}
	return &podClient{Conn: c, user: user, pace: newPacer(c.Welcome.Limits)}
}

// send paces and sends one frame.
func (c *podClient) send(f protocol.ClientFrame) error {
	if err := c.pace.Wait(context.Background()); err != nil {
		return fmt.Errorf("%s pacing %s: %w", c.user, f.Type, err)
	}
	if err := c.Send(f); err != nil {
		return fmt.Errorf("%s sending %s: %w", c.user, f.Type, err)
	}
	return nil
}

// readUntil reads frames until handle reports done, failing after within.
// handle sees every frame; frames it does not care about it ignores.
func (c *podClient) readUntil(within time.Duration, what string, handle func(client.Frame) (done bool, err error)) error {
	_ = c.SetReadDeadline(time.Now().Add(within))
	defer c.SetReadDeadline(time.Time{})
	for {
		f, err := c.Read()
		if err != nil {
			return fmt.Errorf("%s waiting for %s: %w", c.user, what, err)
		}
		done, err := handle(f)
		if err != nil {
			return fmt.Errorf("%s waiting for %s: %w", c.user, what, err)
		}
		if done {
			return nil
		}
	}
}

// join joins room and returns the joined frame.
func (c *podClient) join(room string) (protocol.Joined, error) {
	var j protocol.Joined
	if err := c.send(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "join-" + room, Room: room}); err != nil {
		return j, err
	}
	err := c.readUntil(30*time.Second, "joined "+room, func(f client.Frame) (bool, error) {
		switch f.Type {
		case protocol.TypeJoined:
			if err := f.Decode(&j); err != nil {
				return false, err
			}
			return j.Room == room, nil
		case protocol.TypeError:
			return false, errors.New(string(f.Raw))
		}
		return false, nil
	})
	return j, err
}

// say sends text to room with cid and returns its ack, sending again with
// the same cid when the server answers unavailable or rate_limited (a room
// moving, a burst), as a client should.
func (c *podClient) say(room, cid, text string) (protocol.Ack, error) {
	var ack protocol.Ack
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.send(protocol.ClientFrame{Type: protocol.TypeSend, ID: cid, Room: room, CID: cid, Text: text}); err != nil {
			return ack, err
		}
		retry := false
		err := c.readUntil(time.Until(deadline), "ack of "+cid, func(f client.Frame) (bool, error) {
			switch f.Type {
			case protocol.TypeAck:
				if err := f.Decode(&ack); err != nil {
					return false, err
				}
				return ack.CID == cid, nil
			case protocol.TypeError:
				var e protocol.Error
				if err := f.Decode(&e); err != nil {
					return false, err
				}
				if e.ID != cid {
					return false, nil
				}
				if e.Code == protocol.CodeUnavailable || e.Code == protocol.CodeRateLimited {
					retry = true
					return true, nil
				}
				return false, fmt.Errorf("send refused: %s: %s", e.Code, e.Message)
			}
			return false, nil
		})
		if err != nil || !retry {
			return ack, err
		}
	}
	return ack, fmt.Errorf("%s: no ack for %s within 30s", c.user, cid)
}
