package server_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// A DM to yourself reaches all your connections, the sending one included
// (docs/protocol.md, "dm"), and delivered counts them all.
func TestProtocolDirectMessageToSelf(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	annTab2 := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")

	ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "d1", To: "ann", CID: "note-1", Text: "remember the milk"})
	// The sending connection gets the dm, then its ack.
	var dms [2]protocol.DirectMessage
	ann.ExpectDecode(protocol.TypeDM, &dms[0])
	var ack protocol.Ack
	ann.ExpectDecode(protocol.TypeAck, &ack)
	if ack.ID != "d1" || ack.To != "ann" || ack.Duplicate || ack.Delivered == nil || *ack.Delivered != 2 {
		t.Fatalf("ack of a dm to oneself = %+v, want delivered 2 (both of ann's connections)", ack)
	}
	annTab2.ExpectDecode(protocol.TypeDM, &dms[1])
	for i, dm := range dms {
		if dm.From != "ann" || dm.To != "ann" || dm.CID != "note-1" || dm.Text != "remember the milk" || dm.MID != ack.MID {
			t.Fatalf("connection %d of ann got dm %+v (ack %+v)", i+1, dm, ack)
		}
	}
	// Once each, and nobody else got it.
	for i, c := range []*chatdtest.Client{ann, annTab2, bob} {
		limPing(t, c, fmt.Sprint("after-", i))
	}
	// A resend is a duplicate and delivered to nobody.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "d2", To: "ann", CID: "note-1", Text: "remember the milk"})
	var again protocol.Ack
	ann.ExpectDecode(protocol.TypeAck, &again)
	if !again.Duplicate || again.MID != ack.MID || again.ID != "d2" {
		t.Fatalf("resend ack = %+v", again)
	}
	for i, c := range []*chatdtest.Client{ann, annTab2} {
		limPing(t, c, fmt.Sprint("end-", i))
	}
}

// dmResendsPipelined sends pairs identical DMs (same cid) from sender to
// "bob", each resend right behind its original without waiting for the ack,
// and checks that every pair is delivered once: one ack, then the same ack as
// a duplicate, and one dm frame at each of recipients (bob's connections and
// the sender's other connections), nothing more.
func dmResendsPipelined(t *testing.T, sender *chatdtest.Client, recipients []*chatdtest.Client, pairs int) {
	t.Helper()
	for i := range pairs {
		f := protocol.ClientFrame{Type: protocol.TypeDM, To: "bob", CID: fmt.Sprint("dm-", i), Text: fmt.Sprint("hello ", i)}
		f.ID = fmt.Sprint("first-", i)
		sender.Do(f)
		f.ID = fmt.Sprint("again-", i)
		sender.Do(f)
	}
	mids := make(map[string]string) // cid -> mid of the delivered copy
	for range 2 * pairs {
		var ack protocol.Ack
		sender.ExpectDecode(protocol.TypeAck, &ack)
		var i int
		if _, err := fmt.Sscanf(ack.CID, "dm-%d", &i); err != nil {
			t.Fatalf("ack %+v: unexpected cid", ack)
		}
		first := ack.ID == fmt.Sprint("first-", i)
		if !first && ack.ID != fmt.Sprint("again-", i) {
			t.Fatalf("ack %+v: unexpected id", ack)
		}
		if ack.Duplicate == first {
			t.Fatalf("ack %+v: the original must be acked as new and the resend as a duplicate", ack)
		}
		if ack.Delivered == nil || *ack.Delivered != len(recipients)-countUser(recipients, sender.Welcome.User) {
			t.Fatalf("ack %+v: delivered should count bob's connections", ack)
		}
		if mid, ok := mids[ack.CID]; ok && mid != ack.MID {
			t.Fatalf("cid %s acked with mids %s and %s: the resend was delivered as a new message", ack.CID, mid, ack.MID)
		}
		mids[ack.CID] = ack.MID
	}
	if len(mids) != pairs {
		t.Fatalf("acks for %d cids, want %d", len(mids), pairs)
	}
	// Every dm frame is queued before the ack of its message, so once the
	// acks are in, every copy delivered is on its way: each recipient gets
	// one frame per pair, and its next frame is the answer to a ping.
	for n, c := range recipients {
		got := make(map[string]int)
		for range pairs {
			var dm protocol.DirectMessage
			c.ExpectDecode(protocol.TypeDM, &dm)
			if dm.MID != mids[dm.CID] {
				t.Fatalf("recipient %d got dm %+v, want mid %s", n, dm, mids[dm.CID])
			}
			got[dm.CID]++
		}
		if len(got) != pairs {
			t.Fatalf("recipient %d got dms %v: some twice, some never", n, got)
		}
		id := fmt.Sprint("ping-", n)
		c.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: id})
		if f := c.Next(); f.Type != protocol.TypePong {
			t.Fatalf("recipient %d: a resend was delivered again: %s", n, f.Raw)
		}
	}
}

func countUser(cs []*chatdtest.Client, user string) int {
	n := 0
	for _, c := range cs {
		if c.Welcome.User == user {
			n++
		}
	}
	return n
}

// A resend that arrives while its original is still being delivered is not
// delivered again: the server reserves the cid before delivering.
func TestProtocolDirectMessageResendPipelined(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--rate-burst", "200")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	annTab2 := chatdtest.Connect(t, srv.URL, "ann")
	bob1 := chatdtest.Connect(t, srv.URL, "bob")
	bob2 := chatdtest.Connect(t, srv.URL, "bob")
	dmResendsPipelined(t, ann, []*chatdtest.Client{bob1, bob2, annTab2}, 50)
}

// The same in a cluster, where the ack waits for the other nodes' answers:
// the window in which a resend used to slip through is wide there.
func TestClusterDirectMessageResendPipelined(t *testing.T) {
	t.Parallel()
	c := chatdtest.StartCluster(t, 3)
	ann := chatdtest.Connect(t, c.Nodes[0].URL, "ann")
	annTab2 := chatdtest.Connect(t, c.Nodes[2].URL, "ann")
	annTab3 := chatdtest.Connect(t, c.Nodes[0].URL, "ann")
	bob1 := chatdtest.Connect(t, c.Nodes[1].URL, "bob")
	bob2 := chatdtest.Connect(t, c.Nodes[0].URL, "bob")
	dmResendsPipelined(t, ann, []*chatdtest.Client{bob1, bob2, annTab2, annTab3}, 20)

	// And a DM to oneself reaches the sending connection on its node and
	// the user's connections on the other nodes.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "self", To: "ann", CID: "self-1", Text: "note"})
	var dms [3]protocol.DirectMessage
	ann.ExpectDecode(protocol.TypeDM, &dms[0])
	var ack protocol.Ack
	ann.ExpectDecode(protocol.TypeAck, &ack)
	if ack.Delivered == nil || *ack.Delivered != 3 {
		t.Fatalf("ack of a dm to oneself = %+v, want delivered 3", ack)
	}
	annTab2.ExpectDecode(protocol.TypeDM, &dms[1])
	annTab3.ExpectDecode(protocol.TypeDM, &dms[2])
	for i, dm := range dms {
		if dm.MID != ack.MID || dm.To != "ann" || dm.From != "ann" {
			t.Fatalf("connection %d of ann got %+v (ack %+v)", i+1, dm, ack)
		}
	}
}

// The server accepts one typing signal per user and room per second
// (docs/protocol.md, "typing"): repeated signals within that period give at
// most one frame naming the user, and a signal after it gives a new one.
func TestProtocolTypingThrottled(t *testing.T) {
	t.Parallel()
	// The throttle period: hub.Config.TypingInterval as chatd sets it
	// (chatd/app), the 1 s of docs/protocol.md and docs/configuration.md.
	const period = time.Second
	srv := chatdtest.Start(t, "--rate", "100", "--rate-burst", "100")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	ann.Join("r")
	bob.Join("r")

	type seen struct {
		at    time.Time
		users []string
	}
	frames := make(chan seen, 100)
	readErr := make(chan error, 1)
	_ = ann.SetReadDeadline(time.Now().Add(period + chatdtest.Timeout))
	go func() {
		for {
			f, err := ann.Read()
			if err != nil {
				readErr <- err
				return
			}
			if f.Type != protocol.TypeTyping {
				continue // bob's arrival
			}
			var ty protocol.Typing
			if err := f.Decode(&ty); err != nil {
				readErr <- err
				return
			}
			frames <- seen{time.Now(), ty.Users}
		}
	}()

	// bob signals every 50 ms (each signal followed by a ping, whose pong
	// says the server has handled it) until ann has seen two typing frames.
	// Every signal is handled after start, so the first accepted one is too,
	// and the next one the throttle lets through comes at least a period
	// later: so must the second frame. Without the throttle, the owner's
	// 250 ms coalescing alone would send one every 250 ms or so.
	start := time.Now()
	deadline := time.After(period + chatdtest.Timeout)
	var got []seen
	signals := 0
	for len(got) < 2 {
		bob.Do(protocol.ClientFrame{Type: protocol.TypeTyping, Room: "r"})
		signals++
		limPing(t, bob, fmt.Sprint("t", signals))
		select {
		case s := <-frames:
			got = append(got, s)
		case err := <-readErr:
			t.Fatalf("ann: %v", err)
		case <-time.After(50 * time.Millisecond): // the pace of bob's signals
		case <-deadline:
			t.Fatalf("ann saw %d typing frames in %v of signals", len(got), period+chatdtest.Timeout)
		}
	}
	for i, s := range got {
		if !slices.Equal(s.users, []string{"bob"}) {
			t.Fatalf("typing frame %d names %v, want [bob]", i+1, s.users)
		}
	}
	if d := got[1].at.Sub(start); d < period {
		t.Fatalf("a second typing frame for bob %v after his first signal (%d signals sent): the %v throttle let a signal through early", d, signals, period)
	}
	t.Logf("%d signals; frames after %v and %v", signals, got[0].at.Sub(start), got[1].at.Sub(start))
}
