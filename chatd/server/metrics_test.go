package server_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// mtFrames reads the test clients' frames strictly (no presence frame
// skipped, every frame's type checked) and counts them. Every frame the
// server writes in the scripted exchange is read and accounted for, so the
// count is what chatd_frames_sent_total must say.
type mtFrames struct {
	t *testing.T
	n int
}

// read reads len(types) frames from c and checks that their types are
// types, in any order (a sender sees its message and its ack in either
// order).
func (m *mtFrames) read(c *chatdtest.Client, types ...string) []client.Frame {
	m.t.Helper()
	var got []client.Frame
	var gotTypes []string
	for range types {
		f := c.Next()
		got = append(got, f)
		gotTypes = append(gotTypes, f.Type)
	}
	want := slices.Clone(types)
	slices.Sort(want)
	slices.Sort(gotTypes)
	if !slices.Equal(gotTypes, want) {
		m.t.Fatalf("%s read %v, want %v: %q", c.Welcome.User, gotTypes, want, got)
	}
	m.n += len(types)
	return got
}

// ack returns the ack among frames.
func (m *mtFrames) ack(frames []client.Frame) protocol.Ack {
	m.t.Helper()
	for _, f := range frames {
		if f.Type == protocol.TypeAck {
			var a protocol.Ack
			if err := f.Decode(&a); err != nil {
				m.t.Fatal(err)
			}
			return a
		}
	}
	m.t.Fatalf("no ack in %q", frames)
	return protocol.Ack{}
}

// connect connects anonymously as name; the welcome is one frame.
func (m *mtFrames) connect(url, name string) *chatdtest.Client {
	m.t.Helper()
	c := chatdtest.Connect(m.t, url, name)
	m.n++
	return c
}

// TestMetricsAfterScriptedExchange runs one scripted exchange on a fresh
// node (room messages, a duplicate resend, a DM, refused tokens, a client
// over its rate limit, a slow consumer) and checks the exact values /metrics
// gives for it (docs/configuration.md#metrics).
func TestMetricsAfterScriptedExchange(t *testing.T) {
	t.Parallel()
	// --rate 0.001 with a burst of 200: refill is nil during the test, so
	// exactly the frames past the 200th of a connection are refused.
	// --send-queue 20 (the smallest --history-size 4 allows) and 256 KiB
	// messages make the slow consumer overflow quickly. --write-timeout
	// keeps the slow consumer's blocked writer (and so its subscription)
	// alive until the test reads it.
	srv := chatdtest.Start(t, "--jwt-secret-file", chatdtest.SecretFile(t, "jwt-secret", limSecret),
		"--rate", "0.001", "--rate-burst", "200", "--rate-abuse-limit", "10",
		"--history-size", "4", "--send-queue", "20",
		"--max-frame-bytes", "300000", "--max-text-bytes", "262144",
		"--write-timeout", testtime.Bound(60*time.Second).String())
	m := &mtFrames{t: t}
	metric := func(series string, want float64) {
		t.Helper()
		srv.WaitMetric(t, series, want)
	}

	// Phase 1: two users chat in lobby.
	alice := m.connect(srv.URL, "alice")
	bob := m.connect(srv.URL, "bob")
	metric("chatd_connections", 2)
	alice.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "lobby"})
	m.read(alice, protocol.TypeJoined)
	bob.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "lobby"})
	m.read(bob, protocol.TypeJoined)
	m.read(alice, protocol.TypePresence) // bob joined
	alice.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s1", Room: "lobby", CID: "c1", Text: "hi bob"})
	if a := m.ack(m.read(alice, protocol.TypeMessage, protocol.TypeAck)); a.Seq != 1 || a.Duplicate {
		t.Fatalf("ack %+v", a)
	}
	m.read(bob, protocol.TypeMessage)
	bob.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s2", Room: "lobby", CID: "c2", Text: "hi alice"})
	m.read(bob, protocol.TypeMessage, protocol.TypeAck)
	m.read(alice, protocol.TypeMessage)
	// A resend: acknowledged (and timed) again, neither stored nor delivered.
	alice.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s3", Room: "lobby", CID: "c1", Text: "hi bob"})
	if a := m.ack(m.read(alice, protocol.TypeAck)); a.Seq != 1 || !a.Duplicate {
		t.Fatalf("resend ack %+v, want the duplicate of seq 1", a)
	}
	alice.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "d1", To: "bob", CID: "dm1", Text: "psst"})
	m.read(alice, protocol.TypeAck)
	m.read(bob, protocol.TypeDM)

	metric(`chatd_frames_received_total{type="hello"}`, 2)
	metric(`chatd_frames_received_total{type="join"}`, 2)
	metric(`chatd_frames_received_total{type="send"}`, 3)
	metric(`chatd_frames_received_total{type="dm"}`, 1)
	metric("chatd_frames_sent_total", float64(m.n)) // 14
	metric("chatd_messages_total", 2)
	metric("chatd_direct_messages_total", 1)
	metric("chatd_deliveries_total", 5) // 2 messages × 2 subscribers, 1 DM
	metric("chatd_send_ack_seconds_count", 3)
	metric(`chatd_send_ack_seconds_bucket{le="+Inf"}`, 3)
	if sum := srv.Metric(t, "chatd_send_ack_seconds_sum"); sum <= 0 {
		t.Fatalf("chatd_send_ack_seconds_sum = %v", sum)
	}

	// Phase 2: one good token, two refused ones.
	tina := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: limHS256(t, limClaims("tina"))})
	m.n++
	metric("chatd_connections", 3)
	jwtRefused(t, srv, limToken(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdefghijklmnop"), limClaims("mallory")), "token signature invalid")
	jwtRefused(t, srv, "garbage", "token malformed")
	metric(`chatd_auth_failures_total{code="token_bad_signature"}`, 1)
	metric(`chatd_auth_failures_total{code="token_malformed"}`, 1)
	metric(`chatd_connection_closes_total{code="4001"}`, 2)
	metric("chatd_connections", 3)

	// Phase 3: a client past its burst. hello took one token of 200, 199
	// pings take the rest, the next 3 frames are refused.
	mal := m.connect(srv.URL, "mal")
	metric("chatd_connections", 4)
	for i := range 202 {
		id := fmt.Sprint("p", i)
		mal.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: id})
		if i < 199 {
			m.read(mal, protocol.TypePong)
			continue
		}
		var e protocol.Error
		if err := m.read(mal, protocol.TypeError)[0].Decode(&e); err != nil || e.Code != protocol.CodeRateLimited || e.ID != id {
			t.Fatalf("frame %d: error %+v (%v), want rate_limited for %s", i, e, err, id)
		}
	}
	metric("chatd_rate_limited_total", 3)
	metric(`chatd_error_frames_total{code="rate_limited"}`, 3)
	metric(`chatd_frames_received_total{type="ping"}`, 199) // refused frames are not counted
	metric("chatd_frames_sent_total", float64(m.n))
	mal.Close()
	metric("chatd_connections", 3)

	// Phase 4: a slow consumer in room flood. It joins, then reads nothing
	// while pub publishes until its queue overflows.
	slow := limRawDial(t, srv.URL)
	limRawAwait(t, slow, protocol.ClientFrame{Type: protocol.TypeHello, Name: "slow"}, protocol.TypeWelcome)
	limRawAwait(t, slow, protocol.ClientFrame{Type: protocol.TypeJoin, Room: "flood"}, protocol.TypeJoined)
	slowRead := 2 // welcome, joined
	pub := m.connect(srv.URL, "pub")
	pub.Do(protocol.ClientFrame{Type: protocol.TypeJoin, Room: "flood"})
	m.read(pub, protocol.TypeJoined)
	metric("chatd_connections", 5)
	metric("chatd_rooms", 2) // lobby, flood; refreshed every 5 s

	text := strings.Repeat("m", 256<<10)
	flood := 0
	for srv.Metric(t, "chatd_queue_overflows_total") == 0 {
		if flood >= 150 { // pub's tokens: 200 - hello - join
			t.Fatalf("no queue overflow after %d messages of %d bytes", flood, len(text))
		}
		const batch = 4
		for i := range batch {
			cid := fmt.Sprint("f", flood+i)
			pub.Do(protocol.ClientFrame{Type: protocol.TypeSend, Room: "flood", CID: cid, Text: text})
		}
		for range batch {
			m.read(pub, protocol.TypeMessage, protocol.TypeAck)
		}
		flood += batch
	}
	t.Logf("the slow consumer's queue overflowed within %d messages", flood)
	metric("chatd_queue_overflows_total", 1)

	// The slow consumer reads a gap-free prefix of flood, then the 4008.
	_ = slow.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	var seq uint64
	for {
		fs, err := limRawRead(slow)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != protocol.CloseSlowConsumer {
				t.Fatalf("slow consumer: %v after %d messages, want close 4008", err, seq)
			}
			break
		}
		for _, f := range fs {
			slowRead++
			switch f.Type {
			case protocol.TypePresence:
			case protocol.TypeMessage:
				if f.Seq != seq+1 {
					t.Fatalf("slow consumer: seq %d after %d", f.Seq, seq)
				}
				seq = f.Seq
			default:
				t.Fatalf("slow consumer read a %s frame", f.Type)
			}
		}
	}
	m.n += slowRead
	metric(`chatd_connection_closes_total{code="4008"}`, 1)
	metric("chatd_connections", 4)
	m.read(pub, protocol.TypePresence) // slow left
	metric("chatd_frames_sent_total", float64(m.n))

	// Every flood message went to two subscribers: the slow consumer was
	// subscribed until it read its close.
	metric(`chatd_frames_received_total{type="send"}`, float64(3+flood))
	metric("chatd_messages_total", float64(2+flood))
	metric("chatd_deliveries_total", float64(5+2*flood))
	metric("chatd_send_ack_seconds_count", float64(3+flood))
	metric(`chatd_send_ack_seconds_bucket{le="+Inf"}`, float64(3+flood))

	pub.Close()
	metric("chatd_connections", 3)
	metric("chatd_rooms", 1) // flood is gone

	// The whole exchange.
	metric(`chatd_frames_received_total{type="hello"}`, 8) // alice, bob, tina, 2 refused, mal, slow, pub
	metric(`chatd_frames_received_total{type="join"}`, 4)
	metric("chatd_connections_accepted_total", 8)
	metric("chatd_direct_messages_total", 1)
	metric("chatd_queue_overflows_total", 1)
	metric("chatd_rate_limited_total", 3)

	// The others still chat, and nothing above reached them.
	alice.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s4", Room: "lobby", CID: "c4", Text: "still here"})
	if a := m.ack(m.read(alice, protocol.TypeMessage, protocol.TypeAck)); a.Seq != 3 {
		t.Fatalf("ack %+v, want seq 3", a)
	}
	m.read(bob, protocol.TypeMessage)
	tina.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: "alive"})
	m.read(tina, protocol.TypePong)
	metric("chatd_frames_sent_total", float64(m.n))
	metric("chatd_deliveries_total", float64(5+2*flood+2))
	metric("chatd_send_ack_seconds_count", float64(4+flood))
}
