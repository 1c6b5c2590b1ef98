package server_test

// The "bad input gets a clear error and loses nothing" suite: real WebSocket
// clients against a real chatd on loopback. Every test checks the exact
// answer the abuse gets (error code, close code and reason, HTTP status and
// Retry-After) and then that two well-behaved clients in the same room still
// exchange messages in order, with nothing of the abuse stored or delivered.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// ---------------------------------------------------------------------------
// Witnesses: the well-behaved clients every test checks after the abuse.

// limRoom is one or two well-behaved clients in a room. last is the sequence
// of the last message both have seen; check and drain move it.
type limRoom struct {
	t    *testing.T
	room string
	a, b *chatdtest.Client
	last uint64
}

// limCIDs numbers the witnesses' messages, so that no cid is ever reused
// (a reused cid would be acknowledged as a duplicate).
var limCIDs atomic.Uint64

// limWitnesses connects alice and bob anonymously and joins them to room.
func limWitnesses(t *testing.T, url, room string) *limRoom {
	t.Helper()
	return limWatch(t, room, chatdtest.Connect(t, url, "alice"), chatdtest.Connect(t, url, "bob"))
}

// limWatch joins a and b (which may be the same client) to room.
func limWatch(t *testing.T, room string, a, b *chatdtest.Client) *limRoom {
	t.Helper()
	j := a.Join(room)
	if b != a {
		j = b.Join(room)
	}
	return &limRoom{t: t, room: room, a: a, b: b, last: j.Head}
}

func (w *limRoom) clients() []*chatdtest.Client {
	if w.a == w.b {
		return []*chatdtest.Client{w.a}
	}
	return []*chatdtest.Client{w.a, w.b}
}

// drain checks that every witness receives the next messages of the room,
// sent by from with the given cids, in order and without a gap.
func (w *limRoom) drain(from string, cids ...string) {
	w.t.Helper()
	for _, c := range w.clients() {
		for i, cid := range cids {
			m := c.NextMessage()
			want := w.last + uint64(i) + 1
			if m.Room != w.room || m.Seq != want || m.From != from || m.CID != cid {
				w.t.Fatalf("%s: message %d = {room %s seq %d from %s cid %s}, want {room %s seq %d from %s cid %s}",
					c.Welcome.User, i, m.Room, m.Seq, m.From, m.CID, w.room, want, from, cid)
			}
		}
	}
	w.last += uint64(len(cids))
}

// check is the "loses nothing" assertion: both witnesses send, the acks
// carry the next sequences after the last message they saw, and both receive
// exactly these messages next, in order. A message stored or delivered by
// the abuse would show up as a gap or as a foreign message here.
func (w *limRoom) check() {
	w.t.Helper()
	n := limCIDs.Add(1)
	cidA, cidB := fmt.Sprintf("wa%d", n), fmt.Sprintf("wb%d", n)
	if ack := w.a.Say(w.room, cidA, "witness a "+cidA); ack.Seq != w.last+1 || ack.Duplicate {
		w.t.Fatalf("witness ack = %+v, want seq %d", ack, w.last+1)
	}
	if ack := w.b.Say(w.room, cidB, "witness b "+cidB); ack.Seq != w.last+2 || ack.Duplicate {
		w.t.Fatalf("witness ack = %+v, want seq %d", ack, w.last+2)
	}
	for _, c := range w.clients() {
		for i, want := range []struct{ cid, from string }{{cidA, w.a.Welcome.User}, {cidB, w.b.Welcome.User}} {
			m := c.NextMessage()
			if m.Seq != w.last+uint64(i)+1 || m.CID != want.cid || m.From != want.from || m.Room != w.room {
				w.t.Fatalf("%s: got message %+v, want seq %d cid %s from %s", c.Welcome.User, m, w.last+uint64(i)+1, want.cid, want.from)
			}
		}
		if n := c.Stashed(); n != 0 {
			w.t.Fatalf("%s: %d unexpected message or ack frames left", c.Welcome.User, n)
		}
	}
	w.last += 2
}

// head asks for the room's head through witness a.
func (w *limRoom) head() uint64 {
	w.t.Helper()
	w.a.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "head", Room: w.room, Limit: 1})
	var page protocol.HistoryPage
	w.a.ExpectDecode(protocol.TypeHistory, &page)
	return page.Head
}

// ---------------------------------------------------------------------------
// Small helpers.

// limExpectError waits for an error frame and checks code, id and room.
func limExpectError(t *testing.T, c *chatdtest.Client, code, id, room string) protocol.Error {
	t.Helper()
	e := c.ExpectError(code)
	if e.ID != id || e.Room != room || e.Message == "" {
		t.Fatalf("error %s: id %q room %q message %q, want id %q room %q and a message", code, e.ID, e.Room, e.Message, id, room)
	}
	return e
}

// limPing checks that the connection is still served: a ping gets its pong.
func limPing(t *testing.T, c *chatdtest.Client, id string) {
	t.Helper()
	c.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: id})
	var p protocol.Pong
	c.ExpectDecode(protocol.TypePong, &p)
	if p.ID != id {
		t.Fatalf("pong id %q, want %q", p.ID, id)
	}
}

// limExpectClose waits for the server's close and checks code and reason.
func limExpectClose(t *testing.T, c *chatdtest.Client, code int, reason string) {
	t.Helper()
	gotCode, gotReason := c.ExpectClose()
	if gotCode != code || gotReason != reason {
		t.Fatalf("close %d %q, want %d %q", gotCode, gotReason, code, reason)
	}
}

func limDial(url string, header http.Header) (*client.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	defer cancel()
	return client.Dial(ctx, url, client.Options{Header: header})
}

// limRefused checks a refused upgrade: status, Retry-After and body.
func limRefused(t *testing.T, c *client.Conn, resp *http.Response, err error, status int, retryAfter, body string) {
	t.Helper()
	if err == nil {
		c.Close()
		t.Fatalf("upgrade accepted, want HTTP %d", status)
	}
	if resp == nil {
		t.Fatalf("dial failed without an HTTP response: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != status || resp.Header.Get("Retry-After") != retryAfter || !strings.Contains(string(b), body) {
		t.Fatalf("refusal = HTTP %d, Retry-After %q, body %q; want %d, %q, body containing %q",
			resp.StatusCode, resp.Header.Get("Retry-After"), b, status, retryAfter, body)
	}
}

// limAdmitted dials until the server admits the connection (after another
// one closed, the server needs a moment to release its slot), checking that
// every refusal on the way is the expected one, and says hello as name.
func limAdmitted(t *testing.T, url, name string, status int) *chatdtest.Client {
	t.Helper()
	deadline := time.Now().Add(chatdtest.Timeout)
	for {
		c, resp, err := limDial(url, nil)
		if err == nil {
			cl := chatdtest.Adopt(t, c)
			cl.Do(protocol.ClientFrame{Type: protocol.TypeHello, Name: name})
			cl.ExpectDecode(protocol.TypeWelcome, &cl.Welcome)
			return cl
		}
		limRefused(t, nil, resp, err, status, "5", "connection refused")
		if time.Now().After(deadline) {
			t.Fatalf("still refused after %v", chatdtest.Timeout)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// limRawDial opens a bare gorilla connection, for clients that misbehave
// below the protocol (never read, never answer pings).
func limRawDial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: chatdtest.Timeout}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// limFrame is the part of a server frame these tests look at.
type limFrame struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	CID  string `json:"cid"`
	From string `json:"from"`
}

// limRawRead reads one WebSocket message and splits it into frames.
func limRawRead(ws *websocket.Conn) ([]limFrame, error) {
	_, data, err := ws.ReadMessage()
	if err != nil {
		return nil, err
	}
	var out []limFrame
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		var f limFrame
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			return nil, fmt.Errorf("server sent %q: %w", line, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// limRawAwait sends frame and reads until a frame of type typ arrives.
func limRawAwait(t *testing.T, ws *websocket.Conn, frame protocol.ClientFrame, typ string) {
	t.Helper()
	if err := ws.WriteJSON(frame); err != nil {
		t.Fatalf("write %s: %v", frame.Type, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	defer ws.SetReadDeadline(time.Time{})
	for {
		fs, err := limRawRead(ws)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		for _, f := range fs {
			if f.Type == typ {
				return
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Malformed frames.

func TestBadFrames(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	mal.Join("lobby")
	w.last = w.head()

	cases := []struct {
		name string
		mt   int
		data string
		code string
		id   string
	}{
		{"malformed JSON", websocket.TextMessage, `{"type":"send","room":"lobby","cid":"x","text":"hi"`, protocol.CodeBadFrame, ""},
		{"JSON array", websocket.TextMessage, `[{"type":"send","room":"lobby","cid":"x","text":"hi"}]`, protocol.CodeBadFrame, ""},
		{"JSON string", websocket.TextMessage, `"send"`, protocol.CodeBadFrame, ""},
		{"null", websocket.TextMessage, `null`, protocol.CodeBadFrame, ""},
		{"empty message", websocket.TextMessage, ``, protocol.CodeBadFrame, ""},
		{"missing type", websocket.TextMessage, `{"id":"m1","room":"lobby","cid":"x","text":"hi"}`, protocol.CodeBadFrame, "m1"},
		{"empty type", websocket.TextMessage, `{"type":"","id":"m2"}`, protocol.CodeBadFrame, "m2"},
		{"type not a string", websocket.TextMessage, `{"type":7,"id":"m3"}`, protocol.CodeBadFrame, ""},
		{"member of the wrong type", websocket.TextMessage, `{"type":"send","room":"lobby","cid":"x","text":["hi"]}`, protocol.CodeBadFrame, ""},
		{"two objects", websocket.TextMessage, `{"type":"ping","id":"a"}{"type":"send","room":"lobby","cid":"x","text":"hi"}`, protocol.CodeBadFrame, "a"},
		{"trailing garbage", websocket.TextMessage, `{"type":"ping","id":"b"} x`, protocol.CodeBadFrame, "b"},
		{"unknown type", websocket.TextMessage, `{"type":"shout","id":"u1","room":"lobby","text":"hi"}`, protocol.CodeUnknownType, "u1"},
		{"server-only type", websocket.TextMessage, `{"type":"message","id":"u2","room":"lobby","text":"hi"}`, protocol.CodeUnknownType, "u2"},
		{"binary message", websocket.BinaryMessage, `{"type":"send","id":"bin","room":"lobby","cid":"x","text":"hi"}`, protocol.CodeBadFrame, ""},
		{"non-UTF-8", websocket.TextMessage, "{\"type\":\"send\",\"id\":\"u8\",\"room\":\"lobby\",\"cid\":\"x\",\"text\":\"\xff\xfe\"}", protocol.CodeBadFrame, ""},
	}
	for i, tc := range cases {
		if err := mal.SendMessageType(tc.mt, []byte(tc.data)); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		e := limExpectError(t, mal, tc.code, tc.id, "")
		t.Logf("%s: %s: %s", tc.name, e.Code, e.Message)
		limPing(t, mal, fmt.Sprint("alive-", i))
	}
	// The connection is still fully served, not just pinged.
	if ack := mal.Say("lobby", "ok", "after the garbage"); ack.Seq != w.last+1 {
		t.Fatalf("ack after garbage = %+v, want seq %d", ack, w.last+1)
	}
	w.drain("mallory", "ok")
	w.check()
}

// TestInapplicableMembersIgnored: members that do not apply to a frame's
// type are ignored whatever their JSON type (§2), while members that apply
// keep their types (§7, bad_frame).
func TestInapplicableMembersIgnored(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	raw := func(data string) {
		t.Helper()
		if err := mal.SendRaw([]byte(data)); err != nil {
			t.Fatal(err)
		}
	}

	raw(`{"type":"join","id":"j","room":"lobby","text":7,"cid":{"a":[1]},"limit":"all","to":false}`)
	var j protocol.Joined
	mal.ExpectDecode(protocol.TypeJoined, &j)
	if j.ID != "j" || j.Room != "lobby" || j.Recovered != nil {
		t.Fatalf("joined = %+v", j)
	}
	raw(`{"type":"ping","id":"p","room":"not a room!","since":-1,"text":["x"]}`)
	if p := mal.Expect(protocol.TypePong); !strings.Contains(string(p.Raw), `"id":"p"`) {
		t.Fatalf("pong %s", p.Raw)
	}
	raw(`{"type":"history","id":"h","room":"lobby","limit":1,"since":"3","Text":5}`)
	var page protocol.HistoryPage
	mal.ExpectDecode(protocol.TypeHistory, &page)
	if page.ID != "h" || page.Head != w.last {
		t.Fatalf("history = %+v, want head %d", page, w.last)
	}
	raw(`{"type":"send","id":"s","room":"lobby","cid":"ok1","text":"members ignored","since":"x","protocol":"v1","to":7}`)
	var ack protocol.Ack
	mal.ExpectDecode(protocol.TypeAck, &ack)
	if ack.ID != "s" || ack.Seq != w.last+1 || ack.To != "" {
		t.Fatalf("ack = %+v, want seq %d", ack, w.last+1)
	}
	w.drain("mallory", "ok1")

	// Members that apply are still checked, also behind an ignored one.
	for _, data := range []string{
		`{"type":"join","id":"b1","text":7,"room":"lobby","since":"3","epoch":"e"}`,
		`{"type":"send","id":"b2","room":"lobby","cid":"x","text":["hi"],"since":"x"}`,
		`{"type":"history","id":"b3","room":"lobby","limit":"10","cid":5}`,
		`{"type":"join","id":"b4","room":7,"text":7}`,
	} {
		raw(data)
		e := limExpectError(t, mal, protocol.CodeBadFrame, "", "")
		if !strings.Contains(e.Message, "has the wrong type") {
			t.Fatalf("%s: error %q does not name the mistyped member", data, e.Message)
		}
	}
	limPing(t, mal, "alive")
	w.check()
}

// TestRateLimitedEchoesNoIgnoredMember: a rate_limited refusal echoes the
// room of a valid frame; a room the frame's type does not have is ignored,
// so it is not reflected.
func TestRateLimitedEchoesNoIgnoredMember(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--rate", "0.001", "--rate-burst", "1")
	c := chatdtest.Dial(t, srv.URL) // the bucket's one token goes to the first ping
	for _, id := range []string{"p1", "p2"} {
		c.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: id, Room: "lobby"})
	}
	limExpectError(t, c, protocol.CodeHelloRequired, "p1", "")
	limExpectError(t, c, protocol.CodeRateLimited, "p2", "")
}

// TestBadFrameTrailingBracket: a frame is one JSON object, so a stray "]" or
// "}" after it must be refused like any other trailing data.
func TestBadFrameTrailingBracket(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	mal.Join("lobby")
	for i, data := range []string{`{"type":"send","id":"t1","room":"lobby","cid":"x1","text":"hi"}]`, `{"type":"send","id":"t2","room":"lobby","cid":"x2","text":"hi"}}`} {
		if err := mal.SendRaw([]byte(data)); err != nil {
			t.Fatal(err)
		}
		mal.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: fmt.Sprint("p", i)})
		f := mal.Next()
		if f.Type != protocol.TypeError {
			t.Errorf("frame %s: got %s, want a bad_frame error", data, f.Raw)
			// Skip the rest of the answer to the accepted frame.
			for f.Type != protocol.TypePong {
				f = mal.Next()
			}
			continue
		}
		var e protocol.Error
		_ = f.Decode(&e)
		if e.Code != protocol.CodeBadFrame {
			t.Errorf("frame %s: error %s, want bad_frame", data, f.Raw)
		}
		if f = mal.Next(); f.Type != protocol.TypePong || !strings.Contains(string(f.Raw), fmt.Sprintf(`"p%d"`, i)) {
			t.Errorf("after the bad frame: %s, want the pong p%d", f.Raw, i)
		}
	}
	if t.Failed() {
		return
	}
	w.check()
}

// ---------------------------------------------------------------------------
// Size limits.

func TestLimitsFrameTooBig(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-frame-bytes", "1024", "--max-text-bytes", "512")
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	mal.Join("lobby")

	// Exactly the limit is fine (JSON allows trailing white space).
	exact := `{"type":"ping","id":"exact"}`
	exact += strings.Repeat(" ", 1024-len(exact))
	if err := mal.SendRaw([]byte(exact)); err != nil {
		t.Fatal(err)
	}
	var p protocol.Pong
	mal.ExpectDecode(protocol.TypePong, &p)
	if p.ID != "exact" {
		t.Fatalf("pong = %+v", p)
	}

	// One byte more closes with 1009, and the message in it is not stored.
	big := fmt.Sprintf(`{"type":"send","id":"big","room":"lobby","cid":"big","text":"%s"}`, strings.Repeat("x", 400))
	big += strings.Repeat(" ", 1025-len(big))
	if err := mal.SendRaw([]byte(big)); err != nil {
		t.Fatal(err)
	}
	limExpectClose(t, mal, protocol.CloseMessageTooBig, "")
	srv.WaitMetric(t, `chatd_connection_closes_total{code="1009"}`, 1)
	srv.WaitMetric(t, "chatd_connections", 2)
	if h := w.head(); h != w.last {
		t.Fatalf("head %d after the oversized frame, want %d", h, w.last)
	}
	w.check()
}

func TestLimitsTextTooLong(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-text-bytes", "100")
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	mal.Join("lobby")
	before := w.head()
	w.last = before

	for _, tc := range []struct{ name, text string }{
		{"101 ASCII bytes", strings.Repeat("a", 101)},
		{"34 three-byte runes (102 bytes)", strings.Repeat("€", 34)},
		{"far too long", strings.Repeat("z", 10_000)},
	} {
		mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "long", Room: "lobby", CID: "long", Text: tc.text})
		e := limExpectError(t, mal, protocol.CodeTextTooLong, "long", "lobby")
		if e.Message != "text longer than 100 bytes" {
			t.Errorf("%s: message %q", tc.name, e.Message)
		}
	}
	mal.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "dm", To: "bob", CID: "dm", Text: strings.Repeat("d", 101)})
	limExpectError(t, mal, protocol.CodeTextTooLong, "dm", "")

	if h := w.head(); h != before {
		t.Fatalf("head moved from %d to %d: a too-long text was stored", before, h)
	}
	// The refused cid was not remembered either: the same cid with a text
	// that fits is a new message, not a duplicate, and takes the next seq.
	if ack := mal.Say("lobby", "long", strings.Repeat("a", 100)); ack.Seq != before+1 || ack.Duplicate {
		t.Fatalf("ack for a 100-byte text = %+v, want seq %d", ack, before+1)
	}
	w.drain("mallory", "long")
	w.check()
}

// ---------------------------------------------------------------------------
// Rooms.

func TestLimitsRoomNames(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")

	bad := []struct{ name, room string }{
		{"empty", ""},
		{"65 bytes", strings.Repeat("r", 65)},
		{"space", "the lobby"},
		{"bang", "lobby!"},
		{"non-ASCII", "löbby"},
		{"newline", "lobby\n"},
		{"wildcard", "team-*"},
	}
	for _, tc := range bad {
		for _, typ := range []string{protocol.TypeJoin, protocol.TypeLeave, protocol.TypeHistory, protocol.TypeTyping} {
			mal.Do(protocol.ClientFrame{Type: typ, ID: "bad-" + typ, Room: tc.room})
			limExpectError(t, mal, protocol.CodeInvalidRoom, "bad-"+typ, "")
		}
		mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "bad-send", Room: tc.room, CID: "c", Text: "hi"})
		limExpectError(t, mal, protocol.CodeInvalidRoom, "bad-send", "")
	}
	// The longest and the most exotic valid names work.
	for _, room := range []string{strings.Repeat("r", 64), "a-b_c.d:e/F9"} {
		mal.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "ok", Room: room})
		var j protocol.Joined
		mal.ExpectDecode(protocol.TypeJoined, &j)
		if j.ID != "ok" || j.Room != room {
			t.Fatalf("joined %+v, want room %q", j, room)
		}
	}
	limPing(t, mal, "alive")
	w.check()
}

func TestLimitsRoomMembership(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-rooms", "2")
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")

	// Not joined: send, leave and typing are refused, and a send to the
	// witnesses' room is not stored.
	mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s1", Room: "lobby", CID: "c1", Text: "sneaky"})
	limExpectError(t, mal, protocol.CodeNotJoined, "s1", "lobby")
	mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s2", Room: "nowhere", CID: "c2", Text: "hi"})
	limExpectError(t, mal, protocol.CodeNotJoined, "s2", "nowhere")
	mal.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l1", Room: "lobby"})
	limExpectError(t, mal, protocol.CodeNotJoined, "l1", "lobby")
	mal.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l2", Room: "nowhere"})
	limExpectError(t, mal, protocol.CodeNotJoined, "l2", "nowhere")
	mal.Do(protocol.ClientFrame{Type: protocol.TypeTyping, ID: "t1", Room: "lobby"})
	limExpectError(t, mal, protocol.CodeNotJoined, "t1", "lobby")

	// Leaving twice: the second leave is refused.
	mal.Join("r1")
	mal.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l3", Room: "r1"})
	var left protocol.Left
	mal.ExpectDecode(protocol.TypeLeft, &left)
	if left.ID != "l3" || left.Room != "r1" {
		t.Fatalf("left = %+v", left)
	}
	mal.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l4", Room: "r1"})
	limExpectError(t, mal, protocol.CodeNotJoined, "l4", "r1")

	// --max-rooms 2.
	mal.Join("r1")
	mal.Join("r2")
	mal.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j3", Room: "lobby"})
	e := limExpectError(t, mal, protocol.CodeTooManyRooms, "j3", "lobby")
	if !strings.Contains(e.Message, "2") {
		t.Errorf("too_many_rooms message %q does not name the limit", e.Message)
	}
	// The refused join did not subscribe: a send there is still not_joined.
	mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s3", Room: "lobby", CID: "c3", Text: "sneaky"})
	limExpectError(t, mal, protocol.CodeNotJoined, "s3", "lobby")
	// Joining a room already joined is not a new room.
	if j := mal.Join("r2"); j.Room != "r2" {
		t.Fatalf("rejoin = %+v", j)
	}
	// After leaving one, the third room can be joined.
	mal.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l5", Room: "r1"})
	mal.Expect(protocol.TypeLeft)
	j := mal.Join("lobby")
	if j.Head != w.last {
		t.Fatalf("lobby head %d when mallory joined, want %d: a refused send was stored", j.Head, w.last)
	}
	if ack := mal.Say("lobby", "hello", "now I am in"); ack.Seq != w.last+1 {
		t.Fatalf("ack = %+v, want seq %d", ack, w.last+1)
	}
	w.drain("mallory", "hello")
	w.check()
}

// ---------------------------------------------------------------------------
// Requests missing members or out of range.

func TestBadRequests(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	mal.Join("lobby")
	w.last = w.head()

	cases := []struct {
		name string
		f    protocol.ClientFrame
		id   string
	}{
		{"send without cid", protocol.ClientFrame{Type: protocol.TypeSend, ID: "b1", Room: "lobby", Text: "hi"}, "b1"},
		{"send with empty text", protocol.ClientFrame{Type: protocol.TypeSend, ID: "b2", Room: "lobby", CID: "c2"}, "b2"},
		{"send with a 65-byte cid", protocol.ClientFrame{Type: protocol.TypeSend, ID: "b3", Room: "lobby", CID: strings.Repeat("c", 65), Text: "hi"}, "b3"},
		{"65-byte id", protocol.ClientFrame{Type: protocol.TypeSend, ID: strings.Repeat("i", 65), Room: "lobby", CID: "c4", Text: "hi"}, ""},
		{"dm without recipient", protocol.ClientFrame{Type: protocol.TypeDM, ID: "b5", CID: "c5", Text: "hi"}, "b5"},
		{"dm with a 129-byte recipient", protocol.ClientFrame{Type: protocol.TypeDM, ID: "b6", To: strings.Repeat("u", 129), CID: "c6", Text: "hi"}, "b6"},
		{"dm without cid", protocol.ClientFrame{Type: protocol.TypeDM, ID: "b7", To: "bob", Text: "hi"}, "b7"},
		{"dm with empty text", protocol.ClientFrame{Type: protocol.TypeDM, ID: "b8", To: "bob", CID: "c8"}, "b8"},
		{"history limit -1", protocol.ClientFrame{Type: protocol.TypeHistory, ID: "b9", Room: "lobby", Limit: -1}, "b9"},
		{"history limit 201", protocol.ClientFrame{Type: protocol.TypeHistory, ID: "b10", Room: "lobby", Limit: 201}, "b10"},
	}
	for _, tc := range cases {
		mal.Do(tc.f)
		e := limExpectError(t, mal, protocol.CodeBadRequest, tc.id, "")
		t.Logf("%s: %s", tc.name, e.Message)
	}
	// The bounds themselves are accepted.
	for _, limit := range []int{0, 1, 200} {
		mal.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "lobby", Limit: limit})
		var page protocol.HistoryPage
		mal.ExpectDecode(protocol.TypeHistory, &page)
		if page.ID != "h" || page.Head != w.last {
			t.Fatalf("history limit %d = %+v, want head %d", limit, page, w.last)
		}
	}
	mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: strings.Repeat("i", 64), Room: "lobby", CID: strings.Repeat("c", 64), Text: "a 64-byte id and cid are fine"})
	var ack protocol.Ack
	mal.ExpectDecode(protocol.TypeAck, &ack)
	if ack.Seq != w.last+1 || ack.ID != strings.Repeat("i", 64) {
		t.Fatalf("ack = %+v, want seq %d", ack, w.last+1)
	}
	w.drain("mallory", strings.Repeat("c", 64))
	// bob got no direct message from the refused dm frames.
	w.check()
}

// ---------------------------------------------------------------------------
// The hello handshake.

func TestHelloHandshakeErrors(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	w := limWitnesses(t, srv.URL, "lobby")
	// The group returns when its parallel subtests are done.
	t.Run("group", func(t *testing.T) { limHelloCases(t, srv) })
	w.check()
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4003"}`, 2)
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4001"}`, 4)
}

func limHelloCases(t *testing.T, srv *chatdtest.Server) {
	t.Run("frames before hello", func(t *testing.T) {
		t.Parallel()
		c := chatdtest.Dial(t, srv.URL)
		for _, f := range []protocol.ClientFrame{
			{Type: protocol.TypePing, ID: "p"},
			{Type: protocol.TypeJoin, ID: "j", Room: "lobby"},
			{Type: protocol.TypeSend, ID: "s", Room: "lobby", CID: "c", Text: "before hello"},
			{Type: protocol.TypeHistory, ID: "h", Room: "lobby"},
			{Type: protocol.TypeDM, ID: "d", To: "bob", CID: "c", Text: "before hello"},
		} {
			c.Do(f)
			limExpectError(t, c, protocol.CodeHelloRequired, f.ID, "")
		}
		// Undecodable frames get their own codes before hello too.
		if err := c.SendRaw([]byte(`{"type":`)); err != nil {
			t.Fatal(err)
		}
		limExpectError(t, c, protocol.CodeBadFrame, "", "")
		if err := c.SendRaw([]byte(`{"type":"shout","id":"x"}`)); err != nil {
			t.Fatal(err)
		}
		limExpectError(t, c, protocol.CodeUnknownType, "x", "")
		// And then hello still works.
		c.Do(protocol.ClientFrame{Type: protocol.TypeHello, ID: "hi", Name: "late"})
		var wel protocol.Welcome
		c.ExpectDecode(protocol.TypeWelcome, &wel)
		if wel.ID != "hi" || wel.User != "late" || !wel.Anonymous {
			t.Fatalf("welcome = %+v", wel)
		}
		limPing(t, c, "after")
	})
	t.Run("second hello", func(t *testing.T) {
		t.Parallel()
		c := chatdtest.Connect(t, srv.URL, "twice")
		c.Do(protocol.ClientFrame{Type: protocol.TypeHello, ID: "again", Name: "someone-else"})
		limExpectError(t, c, protocol.CodeAlreadyAuthenticated, "again", "")
		c.Do(protocol.ClientFrame{Type: protocol.TypeHello, ID: "v2", Protocol: 2})
		limExpectError(t, c, protocol.CodeAlreadyAuthenticated, "v2", "")
		limPing(t, c, "still")
		if c.Welcome.User != "twice" {
			t.Fatalf("user %q", c.Welcome.User)
		}
	})
	t.Run("explicit protocol 1", func(t *testing.T) {
		t.Parallel()
		c := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Name: "v1", Protocol: 1})
		if c.Welcome.Protocol != 1 {
			t.Fatalf("welcome = %+v", c.Welcome)
		}
	})
	for _, tc := range []struct {
		name   string
		hello  protocol.ClientFrame
		code   int
		reason string
	}{
		{"protocol 2", protocol.ClientFrame{Name: "future", Protocol: 2}, protocol.CloseUnsupportedVersion, "unsupported protocol version; this server speaks 1"},
		{"protocol -1", protocol.ClientFrame{Name: "past", Protocol: -1}, protocol.CloseUnsupportedVersion, "unsupported protocol version; this server speaks 1"},
		{"no name", protocol.ClientFrame{}, protocol.CloseAuthFailed, "name required"},
		{"name with a space", protocol.ClientFrame{Name: "mal lory"}, protocol.CloseAuthFailed, "name invalid: use 1-32 letters, digits, '_', '-' or '.'"},
		{"33-character name", protocol.ClientFrame{Name: strings.Repeat("n", 33)}, protocol.CloseAuthFailed, "name invalid: use 1-32 letters, digits, '_', '-' or '.'"},
		{"garbage token", protocol.ClientFrame{Token: "garbage", Name: "ann"}, protocol.CloseAuthFailed, "token authentication not configured: no key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := chatdtest.Dial(t, srv.URL)
			hello := tc.hello
			hello.Type = protocol.TypeHello
			c.Do(hello)
			limExpectClose(t, c, tc.code, tc.reason)
		})
	}
}

func TestHelloTimeout(t *testing.T) {
	t.Parallel()
	const helloTimeout = 300 * time.Millisecond
	srv := chatdtest.Start(t, "--hello-timeout", helloTimeout.String())
	w := limWitnesses(t, srv.URL, "lobby")

	start := time.Now() // before the dial: the server's clock starts later
	c := chatdtest.Dial(t, srv.URL)
	// Frames other than hello do not extend the deadline.
	c.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: "p"})
	limExpectError(t, c, protocol.CodeHelloRequired, "p", "")
	limExpectClose(t, c, protocol.CloseHelloTimeout, "no hello received in time")
	if d := time.Since(start); d < helloTimeout || d > helloTimeout+testtime.Slack {
		t.Fatalf("closed after %v, want within %v of the %v hello timeout", d, testtime.Slack, helloTimeout)
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4002"}`, 1)
	srv.WaitMetric(t, "chatd_connections", 2)
	// The witnesses said hello in time and are not affected, although they
	// have been connected for longer than the hello timeout.
	w.check()
}

// ---------------------------------------------------------------------------
// Authentication with tokens.

const limSecret = "limits-test-secret-0123456789abcdefghij"

func limAuthServer(t *testing.T, args ...string) *chatdtest.Server {
	t.Helper()
	return chatdtest.StartWith(t, jwtBase, append([]string{"--jwt-secret-file", chatdtest.SecretFile(t, "jwt-secret", limSecret)}, args...)...)
}

// limClaims returns valid claims for sub, expiring in an hour.
func limClaims(sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func limToken(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	return s
}

func limHS256(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	return limToken(t, jwt.SigningMethodHS256, []byte(limSecret), claims)
}

// limTokenWitnesses connects wanda and walt with tokens and joins them to room.
func limTokenWitnesses(t *testing.T, url, room string) *limRoom {
	t.Helper()
	a := chatdtest.ConnectHello(t, url, protocol.ClientFrame{Token: limHS256(t, limClaims("wanda"))})
	b := chatdtest.ConnectHello(t, url, protocol.ClientFrame{Token: limHS256(t, limClaims("walt"))})
	return limWatch(t, room, a, b)
}

func TestAuthTokens(t *testing.T) {
	t.Parallel()
	srv := limAuthServer(t)
	w := limTokenWitnesses(t, srv.URL, "lobby")
	var refusals int
	// The group returns when its parallel subtests are done.
	t.Run("group", func(t *testing.T) { refusals = limAuthCases(t, srv) })
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4001"}`, float64(refusals))
	srv.WaitMetric(t, "chatd_connections", 2)
	w.check()
}

func limAuthCases(t *testing.T, srv *chatdtest.Server) int {
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		c := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: limHS256(t, limClaims("alice@example.com"))})
		if c.Welcome.User != "alice@example.com" || c.Welcome.Anonymous {
			t.Fatalf("welcome = %+v", c.Welcome)
		}
	})
	t.Run("token wins over name", func(t *testing.T) {
		t.Parallel()
		c := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: limHS256(t, limClaims("tom")), Name: "jerry"})
		if c.Welcome.User != "tom" || c.Welcome.Anonymous {
			t.Fatalf("welcome = %+v", c.Welcome)
		}
	})

	now := time.Now()
	with := func(sub string, edit func(jwt.MapClaims)) jwt.MapClaims {
		c := limClaims(sub)
		edit(c)
		return c
	}
	refused := []struct {
		name   string
		hello  protocol.ClientFrame
		reason string
	}{
		{"alg none", protocol.ClientFrame{Token: limToken(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, limClaims("mallory"))}, "token algorithm not allowed"},
		{"HS512 with the right secret", protocol.ClientFrame{Token: limToken(t, jwt.SigningMethodHS512, []byte(limSecret), limClaims("mallory"))}, "token algorithm not allowed"},
		{"expired", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) {
			c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
		}))}, "token expired"},
		{"nbf in the future", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))}, "token not valid yet"},
		{"iat in the future", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }))}, "token not valid yet"},
		{"wrong secret", protocol.ClientFrame{Token: limToken(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdefghijklmnop"), limClaims("mallory"))}, "token signature invalid"},
		{"tampered claims", protocol.ClientFrame{Token: func() string {
			good := strings.Split(limHS256(t, limClaims("mallory")), ".")
			other := strings.Split(limHS256(t, limClaims("admin")), ".")
			return good[0] + "." + other[1] + "." + good[2]
		}()}, "token signature invalid"},
		{"garbage", protocol.ClientFrame{Token: "garbage"}, "token malformed"},
		{"three garbage parts", protocol.ClientFrame{Token: "a.b.c"}, "token malformed"},
		{"too large", protocol.ClientFrame{Token: strings.Repeat("a", 16<<10+1)}, "token too large"},
		{"no expiry", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) { delete(c, "exp") }))}, "token has no expiry"},
		{"exp null", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) { c["exp"] = nil }))}, "token has no expiry"},
		{"exp zero", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) { c["exp"] = 0 }))}, "token has no expiry"},
		{"exp a string", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) { c["exp"] = fmt.Sprint(now.Add(time.Hour).Unix()) }))}, "token claims invalid"},
		{"exp null, nbf in the future", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) {
			c["exp"], c["nbf"] = nil, now.Add(time.Hour).Unix()
		}))}, "token not valid yet"},
		{"no subject", protocol.ClientFrame{Token: limHS256(t, with("", func(c jwt.MapClaims) { delete(c, "sub") }))}, "token has no subject"},
		{"rooms claim not an array", protocol.ClientFrame{Token: limHS256(t, with("mallory", func(c jwt.MapClaims) { c["rooms"] = "team-*" }))}, "token rooms claim invalid"},
		{"anonymous name", protocol.ClientFrame{Name: "mallory"}, "anonymous access disabled"},
		{"nothing", protocol.ClientFrame{}, "token required"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := chatdtest.Dial(t, srv.URL)
			hello := tc.hello
			hello.Type = protocol.TypeHello
			c.Do(hello)
			limExpectClose(t, c, protocol.CloseAuthFailed, tc.reason)
		})
	}
	return len(refused)
}

func TestAuthRoomsClaim(t *testing.T) {
	t.Parallel()
	srv := limAuthServer(t)
	w := limTokenWitnesses(t, srv.URL, "team-a")

	claims := limClaims("tess")
	claims["rooms"] = []string{"team-*"}
	tess := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: limHS256(t, claims)})
	if j := tess.Join("team-a"); j.Room != "team-a" {
		t.Fatalf("joined %+v", j)
	}
	tess.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "lobby"})
	limExpectError(t, tess, protocol.CodeForbidden, "j", "lobby")
	tess.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "lobby"})
	limExpectError(t, tess, protocol.CodeForbidden, "h", "lobby")
	tess.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s", Room: "lobby", CID: "c", Text: "hi"})
	limExpectError(t, tess, protocol.CodeNotJoined, "s", "lobby")
	// A prefix of the pattern is not a match.
	tess.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j2", Room: "team"})
	limExpectError(t, tess, protocol.CodeForbidden, "j2", "team")
	// History of an allowed room is served.
	tess.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h2", Room: "team-a"})
	var page protocol.HistoryPage
	tess.ExpectDecode(protocol.TypeHistory, &page)
	if page.ID != "h2" || page.Room != "team-a" {
		t.Fatalf("history = %+v", page)
	}
	if ack := tess.Say("team-a", "t1", "hi team"); ack.Seq != w.last+1 {
		t.Fatalf("ack = %+v, want seq %d", ack, w.last+1)
	}
	w.drain("tess", "t1")

	// An empty rooms list grants no room at all.
	none := limClaims("nobody")
	none["rooms"] = []string{}
	nobody := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: limHS256(t, none)})
	nobody.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "team-a"})
	limExpectError(t, nobody, protocol.CodeForbidden, "j", "team-a")
	limPing(t, nobody, "alive")
	w.check()
}

func TestAuthTokenExpiresWhileConnected(t *testing.T) {
	t.Parallel()
	srv := limAuthServer(t, "--jwt-leeway", "0s")
	w := limTokenWitnesses(t, srv.URL, "lobby")
	claims := limClaims("brief")
	// exp is in whole seconds: the first whole second at least Slack away,
	// so that the hello is accepted before it even on a loaded machine.
	exp := time.Now().Add(testtime.Slack).Truncate(time.Second).Add(time.Second)
	claims["exp"] = exp.Unix()
	c := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: limHS256(t, claims)})
	c.Join("lobby")
	limExpectClose(t, c, protocol.CloseTokenExpired, "token expired")
	// At exp + leeway (0 here), not before (the close is read after it was
	// sent; 50 ms for the wall clock slewing against the server's timer),
	// and not much later.
	if early := time.Until(exp); early > 50*time.Millisecond {
		t.Fatalf("closed %v before the token expired", early)
	}
	if late := time.Since(exp); late > testtime.Slack {
		t.Fatalf("closed %v after the token expired, want within %v", late, testtime.Slack)
	}
	srv.WaitMetric(t, "chatd_connections", 2)
	w.check()
}

// TestAuthRefusedHelloEndsTheConnection: once the server has refused a
// hello with 4001 it must not go on serving the connection. A client that
// pipelines a second, valid hello and a send behind the refused one must not
// get anything stored.
func TestAuthRefusedHelloEndsTheConnection(t *testing.T) {
	t.Parallel()
	srv := limAuthServer(t)
	w := limTokenWitnesses(t, srv.URL, "lobby")
	c := chatdtest.Dial(t, srv.URL)
	expired := limClaims("eve")
	expired["iat"], expired["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	c.Do(protocol.ClientFrame{Type: protocol.TypeHello, Token: limHS256(t, expired)})
	c.Do(protocol.ClientFrame{Type: protocol.TypeHello, Token: limHS256(t, limClaims("eve"))})
	c.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "lobby"})
	c.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s", Room: "lobby", CID: "sneaky", Text: "after 4001"})
	limExpectClose(t, c, protocol.CloseAuthFailed, "token expired")
	// When the session is gone every frame it read has been handled.
	srv.WaitMetric(t, "chatd_connections", 2)
	if h := w.head(); h != w.last {
		t.Errorf("room head %d, want %d: frames after the 4001 close were served", h, w.last)
		w.drain("eve", "sneaky")
	}
	w.check()
}

// ---------------------------------------------------------------------------
// Rate limit.

// limAbuse sends frames from c to room as fast as the answers come back,
// until the server closes the connection. It returns the cids the server
// accepted, the number of rate_limited refusals, and the close.
func limAbuse(t *testing.T, c *chatdtest.Client, room string) (accepted []string, refused int, code int, reason string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	for i := 0; i < 100; i++ {
		cid := fmt.Sprint("m", i)
		c.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: cid, Room: room, CID: cid, Text: "spam " + cid})
		for answered := false; !answered; {
			f, err := c.Read()
			if err != nil {
				var ok bool
				code, reason, ok = client.CloseCode(err)
				if !ok {
					t.Fatalf("frame %d: read: %v", i, err)
				}
				return accepted, refused, code, reason
			}
			switch f.Type {
			case protocol.TypeMessage, protocol.TypePresence:
			case protocol.TypeAck:
				var a protocol.Ack
				_ = f.Decode(&a)
				if a.CID != cid {
					t.Fatalf("frame %d: ack %s", i, f.Raw)
				}
				if refused > 0 {
					t.Logf("frame %d accepted after %d refusals (the bucket refilled)", i, refused)
				}
				accepted = append(accepted, cid)
				answered = true
			case protocol.TypeError:
				var e protocol.Error
				_ = f.Decode(&e)
				if e.Code != protocol.CodeRateLimited || e.ID != cid || e.Room != room {
					t.Fatalf("frame %d: error %s, want rate_limited with id %s and room %s", i, f.Raw, cid, room)
				}
				refused++
				answered = true
			default:
				t.Fatalf("frame %d: unexpected %s", i, f.Raw)
			}
		}
	}
	t.Fatalf("not closed after 100 frames (%d accepted, %d refused)", len(accepted), refused)
	return
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--rate", "5", "--rate-burst", "5", "--rate-abuse-limit", "3")
	w := limWitnesses(t, srv.URL, "lobby")
	if got := w.a.Welcome.Limits; got.RatePerSecond != 5 || got.RateBurst != 5 {
		t.Fatalf("welcome limits = %+v", got)
	}
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	mal.Join("lobby") // hello and join: two tokens of five

	accepted, refused, code, reason := limAbuse(t, mal, "lobby")
	if len(accepted) < 3 || accepted[2] != "m2" {
		t.Fatalf("accepted %v, want at least the first three sends (the rest of the burst)", accepted)
	}
	if refused != 3 {
		t.Fatalf("%d rate_limited errors before the close, want 3 (--rate-abuse-limit)", refused)
	}
	if code != protocol.ClosePolicyViolation || reason != "rate limit exceeded repeatedly" {
		t.Fatalf("close %d %q, want 1008 %q", code, reason, "rate limit exceeded repeatedly")
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="1008"}`, 1)
	srv.WaitMetric(t, "chatd_rate_limited_total", 4)
	srv.WaitMetric(t, "chatd_connections", 2)
	// The witnesses got exactly the accepted messages, in order, and
	// nothing of the refused ones.
	w.drain("mallory", accepted...)
	if h := w.head(); h != w.last {
		t.Fatalf("head %d, want %d", h, w.last)
	}
	w.check()
}

// TestRateLimitAbuseCloseEndsTheConnection: after closing a connection with
// 1008 for abuse, the server must not keep serving frames it reads from it
// while it waits for the client's close reply.
func TestRateLimitAbuseCloseEndsTheConnection(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--rate", "5", "--rate-burst", "3", "--rate-abuse-limit", "1")
	w := limWitnesses(t, srv.URL, "lobby")
	mal := chatdtest.Connect(t, srv.URL, "mallory")
	mal.Join("lobby") // hello and join leave one token of three
	// Without reading: one accepted, one refused, one more closes with 1008.
	for i := 0; i < 3; i++ {
		mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: fmt.Sprint("m", i), Room: "lobby", CID: fmt.Sprint("m", i), Text: "spam"})
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="1008"}`, 1)
	// Keep going, as an abuser that ignores the close would. The bucket
	// (--rate 5) refills a token every 200ms; this sleep is part of the
	// abuse, not synchronisation: the frame after it would be allowed.
	time.Sleep(time.Second/5 + 50*time.Millisecond)
	mal.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "after", Room: "lobby", CID: "after", Text: "after the 1008 close"})
	code, reason := mal.ExpectClose()
	if code != protocol.ClosePolicyViolation || reason != "rate limit exceeded repeatedly" {
		t.Fatalf("close %d %q", code, reason)
	}
	srv.WaitMetric(t, "chatd_connections", 2)
	w.drain("mallory", "m0")
	if h := w.head(); h != w.last {
		t.Errorf("room head %d, want %d: a frame read after the 1008 close was served", h, w.last)
		w.drain("mallory", "after")
	}
	w.check()
}

// ---------------------------------------------------------------------------
// Slow consumer.

// limCollect reads c until it has seen the message with cid end (and its
// ack, when wantAck), and reports what it read. Acks are also streamed on
// acks for flow control.
type limCollected struct {
	msgs []protocol.Message
	acks []protocol.Ack
	err  error
}

func limCollect(c *chatdtest.Client, end string, wantAck bool, acks chan<- protocol.Ack) <-chan limCollected {
	done := make(chan limCollected, 1)
	go func() {
		var out limCollected
		defer func() { done <- out }()
		gotMsg, gotAck := false, !wantAck
		for !gotMsg || !gotAck {
			// A deadline per read, not one for the whole flood: under
			// load the flood alone can take longer than Timeout.
			_ = c.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
			f, err := c.Read()
			if err != nil {
				out.err = err
				return
			}
			switch f.Type {
			case protocol.TypeMessage:
				var m protocol.Message
				_ = f.Decode(&m)
				out.msgs = append(out.msgs, m)
				gotMsg = gotMsg || m.CID == end
			case protocol.TypeAck:
				var a protocol.Ack
				_ = f.Decode(&a)
				out.acks = append(out.acks, a)
				if acks != nil {
					acks <- a
				}
				gotAck = gotAck || a.CID == end
			case protocol.TypePresence, protocol.TypeTyping:
			default:
				out.err = fmt.Errorf("unexpected frame %s", f.Raw)
				return
			}
		}
	}()
	return done
}

func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	// The server's writes to the slow consumer stall early in the flood and
	// must not time out before it is over and the slow consumer reads (that
	// would drop it without its 4008): the write timeout is a bound the
	// flood, slow under -race on a loaded machine, must stay below.
	writeTimeout := testtime.Bound(60 * time.Second)
	srv := chatdtest.Start(t, "--send-queue", "1040", "--history-size", "1000",
		"--rate", "100000", "--rate-burst", "100000", "--write-timeout", writeTimeout.String())
	const room = "flood"

	// The slow consumer joins first, then never reads.
	slow := limRawDial(t, srv.URL)
	limRawAwait(t, slow, protocol.ClientFrame{Type: protocol.TypeHello, Name: "slow"}, protocol.TypeWelcome)
	limRawAwait(t, slow, protocol.ClientFrame{Type: protocol.TypeJoin, Room: room}, protocol.TypeJoined)

	pub := chatdtest.Connect(t, srv.URL, "pub")
	sub := chatdtest.Connect(t, srv.URL, "sub")
	pub.Join(room)
	sub.Join(room)

	acks := make(chan protocol.Ack, 1<<16)
	pubDone := limCollect(pub, "end", true, acks)
	subDone := limCollect(sub, "end", false, nil)

	// About 4 MB sit in socket buffers before the server's writes stall;
	// 1.5 kB messages keep the number of messages (and the test's time
	// under -race) near its minimum.
	text := strings.Repeat("m", 1500)
	sent, overflowAt := 0, 0
	publish := func(n int, cid func(int) string) {
		for i := 0; i < n; i++ {
			sent++
			if err := pub.Send(protocol.ClientFrame{Type: protocol.TypeSend, Room: room, CID: cid(sent), Text: text}); err != nil {
				t.Fatalf("send %d: %v", sent, err)
			}
		}
		for i := 0; i < n; i++ {
			select {
			case <-acks:
			case <-time.After(chatdtest.Timeout):
				t.Fatalf("no ack for message %d", sent-n+i+1)
			}
		}
	}
	numbered := func(i int) string { return fmt.Sprint("m", i) }
	t0 := time.Now()
	for overflowAt == 0 {
		publish(256, numbered)
		if srv.Metric(t, "chatd_queue_overflows_total") > 0 {
			overflowAt = sent
		}
		if sent > 50_000 {
			t.Fatalf("no queue overflow after %d messages", sent)
		}
	}
	publish(64, numbered) // the room goes on after the overflow
	publish(1, func(int) string { return "end" })
	t.Logf("queue overflowed after %d messages; %d published (%v)", overflowAt, sent, time.Since(t0))

	// Publisher and reading subscriber saw every message, in order.
	checkAll := func(who string, msgs []protocol.Message) {
		t.Helper()
		if len(msgs) != sent {
			t.Fatalf("%s got %d messages, want %d", who, len(msgs), sent)
		}
		for i, m := range msgs {
			if m.Seq != uint64(i+1) || m.From != "pub" {
				t.Fatalf("%s: message %d has seq %d from %s", who, i, m.Seq, m.From)
			}
		}
	}
	p, s := <-pubDone, <-subDone
	if p.err != nil || s.err != nil {
		t.Fatalf("publisher: %v; subscriber: %v", p.err, s.err)
	}
	checkAll("publisher", p.msgs)
	checkAll("subscriber", s.msgs)
	for i, a := range p.acks {
		if a.Seq != uint64(i+1) {
			t.Fatalf("ack %d has seq %d", i, a.Seq)
		}
	}

	// The slow consumer now reads: a gap-free prefix of the room, then 4008.
	_ = slow.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
	var got uint64
	for {
		fs, err := limRawRead(slow)
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("slow consumer: %v after %d messages, want close 4008", err, got)
			}
			if ce.Code != protocol.CloseSlowConsumer || ce.Text != "slow consumer: outgoing queue overflowed" {
				t.Fatalf("slow consumer closed with %d %q", ce.Code, ce.Text)
			}
			break
		}
		for _, f := range fs {
			if f.Type != protocol.TypeMessage {
				continue
			}
			if f.Seq != got+1 {
				t.Fatalf("slow consumer: seq %d after %d: frames were dropped without closing", f.Seq, got)
			}
			got = f.Seq
		}
	}
	if got >= uint64(overflowAt) {
		t.Fatalf("slow consumer read %d messages, but its queue overflowed by message %d", got, overflowAt)
	}
	t.Logf("slow consumer read %d messages before the 4008 close", got)
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4008"}`, 1)
	srv.WaitMetric(t, "chatd_connections", 2)

	// The room carries on for the others.
	w := &limRoom{t: t, room: room, a: pub, b: sub, last: uint64(sent)}
	w.check()
}

// ---------------------------------------------------------------------------
// Admission control and origins.

func TestAdmissionMaxConnections(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-connections", "2")
	w := limWitnesses(t, srv.URL, "lobby")

	for i := 0; i < 3; i++ {
		c, resp, err := limDial(srv.URL, nil)
		limRefused(t, c, resp, err, http.StatusServiceUnavailable, "5", "connection refused: node_full")
	}
	srv.WaitMetric(t, `chatd_connections_refused_total{reason="node_full"}`, 3)
	w.check()

	// A slot frees up when a connection closes.
	w.b.Close()
	carol := limAdmitted(t, srv.URL, "carol", http.StatusServiceUnavailable)
	w2 := limWatch(t, "lobby", w.a, carol)
	c, resp, err := limDial(srv.URL, nil)
	limRefused(t, c, resp, err, http.StatusServiceUnavailable, "5", "connection refused: node_full")
	w2.check()
}

// TestAdmissionPerIP: the per-IP cap counts the TCP peer's address. With a
// cap of one, 127.0.0.1 is refused (429, Retry-After) while a client dialing
// from 127.0.0.2 (Linux routes all of 127/8 to lo) is admitted, and the
// witnesses from both addresses keep chatting.
func TestAdmissionPerIP(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-connections-per-ip", "1")
	alice := chatdtest.Connect(t, srv.URL, "alice") // from 127.0.0.1
	bob := limConnectFrom(t, srv.URL, "127.0.0.2", "bob")
	w := limWatch(t, "lobby", alice, bob)

	c, resp, err := limDial(srv.URL, nil)
	limRefused(t, c, resp, err, http.StatusTooManyRequests, "5", "connection refused: ip_limit")
	c, resp, err = limDialFrom(srv.URL, "127.0.0.2")
	limRefused(t, c, resp, err, http.StatusTooManyRequests, "5", "connection refused: ip_limit")
	srv.WaitMetric(t, `chatd_connections_refused_total{reason="ip_limit"}`, 2)
	if n := srv.Metric(t, "chatd_connections_accepted_total"); n != 2 {
		t.Fatalf("chatd_connections_accepted_total = %v, want 2", n)
	}
	w.check()

	// alice's slot frees up for another client of 127.0.0.1; 127.0.0.2
	// stays full.
	alice.Close()
	carol := limAdmitted(t, srv.URL, "carol", http.StatusTooManyRequests)
	w2 := limWatch(t, "after", carol, bob)
	c, resp, err = limDial(srv.URL, nil)
	limRefused(t, c, resp, err, http.StatusTooManyRequests, "5", "connection refused: ip_limit")
	c, resp, err = limDialFrom(srv.URL, "127.0.0.2")
	limRefused(t, c, resp, err, http.StatusTooManyRequests, "5", "connection refused: ip_limit")
	w2.check()
}

// limFrom dials TCP from the local address ip.
func limFrom(ip string) func(context.Context, string, string) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return d.DialContext
}

// limDialFrom is limDial from the local address ip.
func limDialFrom(url, ip string) (*client.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	defer cancel()
	return client.Dial(ctx, url, client.Options{NetDialContext: limFrom(ip)})
}

// limConnectFrom connects anonymously as name from the local address ip.
func limConnectFrom(t *testing.T, url, ip, name string) *chatdtest.Client {
	t.Helper()
	c, resp, err := limDialFrom(url, ip)
	if err != nil {
		status := "no HTTP response"
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial from %s: %v (%s)", ip, err, status)
	}
	cl := chatdtest.Adopt(t, c)
	cl.Do(protocol.ClientFrame{Type: protocol.TypeHello, Name: name})
	cl.ExpectDecode(protocol.TypeWelcome, &cl.Welcome)
	return cl
}

func TestOrigin(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--allowed-origins", "https://good.example")
	w := limWitnesses(t, srv.URL, "lobby") // no Origin header: allowed

	for _, origin := range []string{"https://evil.example", "http://good.example", "https://good.example.evil.example", "https://good.example:8443", "null"} {
		limOriginRefused(t, srv.URL, "", origin)
	}
	for i, origin := range []string{"https://good.example", "HTTPS://Good.Example", "http://" + srv.Addr} {
		limOriginAccepted(t, srv.URL, fmt.Sprint("browser", i), "", origin)
	}
	w.check()
}

// limOriginHeader is a request header with Origin origin and, unless host
// is empty, Host host; limOriginCase names the pair in failures.
func limOriginHeader(host, origin string) http.Header {
	h := http.Header{"Origin": {origin}}
	if host != "" {
		h.Set("Host", host)
	}
	return h
}

func limOriginCase(host, origin string) string {
	if host == "" {
		return "origin " + origin
	}
	return fmt.Sprintf("Host %q, Origin %s", host, origin)
}

// limOriginRefused checks that an upgrade with origin (and host, unless
// empty) is refused with 403 "origin not allowed".
func limOriginRefused(t *testing.T, url, host, origin string) {
	t.Helper()
	what := limOriginCase(host, origin)
	c, resp, err := limDial(url, limOriginHeader(host, origin))
	if err == nil {
		c.Close()
		t.Fatalf("%s: accepted, want 403", what)
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("%s: %v, want HTTP 403", what, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "origin not allowed") {
		t.Errorf("%s: body %q", what, b)
	}
}

// limOriginAccepted connects as name with origin (and host, unless empty)
// and checks that the connection is served.
func limOriginAccepted(t *testing.T, url, name, host, origin string) *chatdtest.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	conn, err := client.Connect(ctx, url, protocol.ClientFrame{Name: name}, client.Options{Header: limOriginHeader(host, origin)})
	cancel()
	if err != nil {
		t.Fatalf("%s: %v", limOriginCase(host, origin), err)
	}
	c := chatdtest.Adopt(t, conn)
	limPing(t, c, "ok")
	return c
}

// ---------------------------------------------------------------------------
// Dead peers.

func TestDeadPeerReaped(t *testing.T) {
	t.Parallel()
	// The interval is scaled: the live peer must answer each ping within
	// two intervals, on a loaded machine too. (300 ms was too short: with
	// two other -race suites on the 2 cores, a pong came later than 600 ms
	// and the live peer was reaped as dead.)
	pingInterval := testtime.Bound(time.Second)
	srv := chatdtest.Start(t, "--ping-interval", pingInterval.String())

	// The dead peer's TCP connection is open, but it never answers pings.
	dead := limRawDial(t, srv.URL)
	deadPings := make(chan struct{}, 100)
	dead.SetPingHandler(func(string) error {
		select {
		case deadPings <- struct{}{}:
		default:
		}
		return nil
	})
	start := time.Now()
	limRawAwait(t, dead, protocol.ClientFrame{Type: protocol.TypeHello, Name: "dead"}, protocol.TypeWelcome)
	deadEnd := make(chan error, 1)
	go func() {
		for {
			if _, _, err := dead.ReadMessage(); err != nil {
				deadEnd <- err
				return
			}
		}
	}()

	// The live peer answers pings, and sends nothing else.
	live := limRawDial(t, srv.URL)
	livePings := make(chan struct{}, 100)
	live.SetPingHandler(func(data string) error {
		select {
		case livePings <- struct{}{}:
		default:
		}
		err := live.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(chatdtest.Timeout))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	limRawAwait(t, live, protocol.ClientFrame{Type: protocol.TypeHello, Name: "live"}, protocol.TypeWelcome)
	var mu sync.Mutex
	var liveFrames []limFrame
	liveGot := make(chan struct{}, 100)
	liveEnd := make(chan error, 1)
	go func() {
		for {
			fs, err := limRawRead(live)
			if err != nil {
				liveEnd <- err
				return
			}
			mu.Lock()
			liveFrames = append(liveFrames, fs...)
			mu.Unlock()
			liveGot <- struct{}{}
		}
	}()

	select {
	case err := <-deadEnd:
		d := time.Since(start)
		t.Logf("dead peer dropped after %v: %v", d, err)
		// The read deadline is two intervals after the welcome (after start).
		if d < 2*pingInterval || d > 2*pingInterval+testtime.Slack {
			t.Fatalf("dead peer dropped after %v, want within %v of 2 ping intervals (%v)", d, testtime.Slack, 2*pingInterval)
		}
	case <-time.After(chatdtest.Timeout):
		t.Fatalf("dead peer still connected after %v", chatdtest.Timeout)
	}
	if len(deadPings) == 0 {
		t.Fatalf("the server never pinged the dead peer")
	}
	srv.WaitMetric(t, "chatd_connections", 1)

	// The live peer outlives several read deadlines on pongs alone.
	for n := 0; n < 5; n++ {
		select {
		case <-livePings:
		case err := <-liveEnd:
			t.Fatalf("live peer dropped after %d pings: %v", n, err)
		case <-time.After(chatdtest.Timeout):
			t.Fatalf("live peer got only %d pings", n)
		}
	}
	if err := live.WriteJSON(protocol.ClientFrame{Type: protocol.TypePing, ID: "alive"}); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case <-liveGot:
			mu.Lock()
			fs := liveFrames
			mu.Unlock()
			for _, f := range fs {
				if f.Type == protocol.TypePong && f.ID == "alive" {
					return
				}
			}
		case err := <-liveEnd:
			t.Fatalf("live peer dropped: %v", err)
		case <-time.After(chatdtest.Timeout):
			t.Fatalf("no pong for the live peer")
		}
	}
}
