package server_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// tinyReceiveBuffer is the slow consumer's socket receive buffer.
const tinyReceiveBuffer = 4 << 10

// dialTinyBuffer opens TCP connections whose receive buffer is set to
// tinyReceiveBuffer before connecting, so the window the server may fill is
// a few KiB and its writes stall as soon as its own send buffer is full.
func dialTinyBuffer(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, tinyReceiveBuffer)
		}); err != nil {
			return err
		}
		return serr
	}}
	return d.DialContext(ctx, network, addr)
}

// sendBufferMax is the most a TCP socket's send buffer grows to on this
// machine (the third field of net.ipv4.tcp_wmem); 4 MiB, Linux's default,
// when it cannot be read.
func sendBufferMax(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if err != nil {
		return 4 << 20
	}
	f := strings.Fields(string(b))
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("tcp_wmem %q: %v", b, err)
	}
	return n
}

// roundTrips has from send n messages to room one at a time; each counts
// once from has its ack and to has the message. It reports the longest
// round trip, and sends the first error to errs.
func roundTrips(from, to *chatdtest.Client, room, prefix string, n int, errs chan<- error) time.Duration {
	var longest time.Duration
	for i := range n {
		cid := fmt.Sprint(prefix, i)
		start := time.Now()
		if err := from.Send(protocol.ClientFrame{Type: protocol.TypeSend, ID: cid, Room: room, CID: cid, Text: "ping " + cid}); err != nil {
			errs <- err
			return longest
		}
		for _, c := range []*chatdtest.Client{from, to} {
			if err := awaitOwn(c, cid, c == from); err != nil {
				errs <- fmt.Errorf("%s, round trip %s: %w", c.Welcome.User, cid, err)
				return longest
			}
		}
		longest = max(longest, time.Since(start))
	}
	return longest
}

// awaitOwn reads c until the message with cid (and its ack, when wantAck)
// arrived. Other messages of the room (the flood) and presence frames are
// skipped. It reads with the client package directly: the test helpers fail
// the test, which a goroutine must not do.
func awaitOwn(c *chatdtest.Client, cid string, wantAck bool) error {
	gotMsg, gotAck := false, !wantAck
	for !gotMsg || !gotAck {
		_ = c.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
		f, err := c.Read()
		if err != nil {
			return err
		}
		var m struct {
			ID  string `json:"id"`
			CID string `json:"cid"`
		}
		_ = f.Decode(&m)
		switch f.Type {
		case protocol.TypeMessage:
			gotMsg = gotMsg || m.CID == cid
		case protocol.TypeAck:
			gotAck = gotAck || m.CID == cid
		case protocol.TypePresence, protocol.TypeTyping:
		default:
			return fmt.Errorf("unexpected frame %s", f.Raw)
		}
	}
	return nil
}

// TestSlowConsumerDelaysNobody: a client whose receive buffer is 4 KiB and
// which never reads stalls the server's writes to it. While it is stalled,
// every other client, in its room and in another room, keeps getting acks
// and messages; it is dropped when its write timeout passes, and nobody
// waits for that either.
//
// The windows come from the configured write timeout W: the stall starts
// after t0 (before anything big is sent) and a write stalled at t0 or later
// fails at t0 + W at the earliest. The other clients' round trips must all be done
// before t0 + W: had any of them waited for the stalled write (a lock held
// across it, a blocking queue), it would have finished only when that write
// failed. After the drop, the round trips must again take less than W each.
func TestSlowConsumerDelaysNobody(t *testing.T) {
	t.Parallel()
	writeTimeout := testtime.Bound(8 * time.Second)
	const textBytes = 32 << 10
	srv := chatdtest.Start(t, "--write-timeout", writeTimeout.String(), "--max-text-bytes", strconv.Itoa(textBytes),
		"--rate", "100000", "--rate-burst", "100000")

	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	conn, err := client.Connect(ctx, srv.URL, protocol.ClientFrame{Name: "slow"}, client.Options{NetDialContext: dialTinyBuffer})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	slow := chatdtest.Adopt(t, conn)
	slow.Join("busy") // the last frame it ever reads

	pub, sub := chatdtest.Connect(t, srv.URL, "pub"), chatdtest.Connect(t, srv.URL, "sub")
	pub.Join("busy")
	sub.Join("busy")
	q1, q2 := chatdtest.Connect(t, srv.URL, "q1"), chatdtest.Connect(t, srv.URL, "q2")
	q1.Join("quiet")
	q2.Join("quiet")
	srv.WaitMetric(t, "chatd_connections", 5)

	// t0: nothing written to the slow client so far can still be pending
	// (a few hundred bytes of frames, far below any buffer), so every write
	// that stalls starts after t0.
	t0 := time.Now()
	// The room gets a page of big messages...
	const pageLen = 20
	text := strings.Repeat("f", textBytes)
	for i := range pageLen {
		pub.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: fmt.Sprint("big-", i), Room: "busy", CID: fmt.Sprint("big-", i), Text: text})
	}
	for i := range pageLen {
		for _, c := range []*chatdtest.Client{pub, sub} {
			if m := c.NextMessage(); m.CID != fmt.Sprint("big-", i) {
				t.Fatalf("%s got %s, want big-%d", c.Welcome.User, m.CID, i)
			}
		}
	}
	// ...which the slow client asks for again and again: more bytes than
	// the server's send buffer (at its largest) and the slow client's
	// receive buffer can hold together, so the server's writes to it cannot
	// all complete. The pages are served in the order asked, before the
	// slow client's marker message, which the others see: then all of them
	// are queued, and the writer is stalled.
	floodBytes := sendBufferMax(t) + tinyReceiveBuffer + 1<<20
	pages := (floodBytes + pageLen*textBytes - 1) / (pageLen * textBytes)
	for i := range pages {
		slow.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: fmt.Sprint("h", i), Room: "busy", Limit: pageLen})
	}
	slow.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "marker", Room: "busy", CID: "marker", Text: "all pages queued"})
	for _, c := range []*chatdtest.Client{pub, sub} {
		if m := c.NextMessage(); m.CID != "marker" {
			t.Fatalf("%s got %s, want the marker", c.Welcome.User, m.CID)
		}
	}
	t.Logf("%d history pages of %d KiB queued to the slow client %v after t0", pages, pageLen*textBytes>>10, time.Since(t0).Round(time.Millisecond))

	// The slow client is stalled now. Round trips in its room and in
	// another room, at the same time.
	const n = 30
	var (
		wg              sync.WaitGroup
		errs            = make(chan error, 2)
		busyMax, quiMax time.Duration
	)
	wg.Add(2)
	go func() { defer wg.Done(); busyMax = roundTrips(pub, sub, "busy", "b-", n, errs) }()
	go func() { defer wg.Done(); quiMax = roundTrips(q1, q2, "quiet", "q-", n, errs) }()
	wg.Wait()
	done := time.Since(t0)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("while stalled: %d round trips per room done %v after t0; longest %v (its room), %v (another room); write timeout %v",
		n, done.Round(time.Millisecond), busyMax.Round(time.Millisecond), quiMax.Round(time.Millisecond), writeTimeout)
	if done >= writeTimeout {
		t.Fatalf("the other clients' round trips took until %v after t0, not before the slow client's write timeout (%v): they waited for it", done, writeTimeout)
	}
	if c := srv.Metric(t, "chatd_connections"); c != 5 {
		t.Fatalf("%v connections after the round trips, want 5: the slow client was dropped before its write timeout, so it was not stalled", c)
	}

	// The slow client is dropped when its stalled write times out, and
	// leaves the room: its presence goes away.
	var left protocol.Presence
	_ = sub.SetReadDeadline(time.Now().Add(writeTimeout + chatdtest.Timeout))
	for left.Left == nil {
		f, err := sub.Read()
		if err != nil {
			t.Fatalf("waiting for the slow client to leave: %v", err)
		}
		if f.Type == protocol.TypePresence {
			_ = f.Decode(&left)
		}
	}
	dropped := time.Since(t0)
	if left.Left[0] != "slow" {
		t.Fatalf("presence %+v", left)
	}
	t.Logf("slow client dropped %v after t0", dropped.Round(time.Millisecond))
	if dropped < writeTimeout {
		t.Fatalf("the slow client was dropped %v after t0, before its write timeout (%v)", dropped, writeTimeout)
	}

	// Right after its departure, nobody waits either.
	errs = make(chan error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); busyMax = roundTrips(pub, sub, "busy", "a-", n, errs) }()
	go func() { defer wg.Done(); quiMax = roundTrips(q1, q2, "quiet", "r-", n, errs) }()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("after the drop: longest round trip %v (its room), %v (another room)", busyMax.Round(time.Millisecond), quiMax.Round(time.Millisecond))
	if longest := max(busyMax, quiMax); longest >= writeTimeout {
		t.Fatalf("a round trip after the slow client left took %v, as long as a write timeout (%v)", longest, writeTimeout)
	}
	srv.WaitMetric(t, "chatd_connections", 4)
}
