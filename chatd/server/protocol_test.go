package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

func u64(v uint64) *uint64 { return &v }

func TestProtocolWelcome(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--max-rooms", "7")
	c := chatdtest.Connect(t, srv.URL, "ann")
	w := c.Welcome
	if w.Protocol != protocol.Version || w.User != "ann" || !w.Anonymous || !strings.HasPrefix(w.Session, "s-") || w.Server != "test-node" {
		t.Fatalf("welcome = %+v", w)
	}
	if w.Limits.MaxRooms != 7 || w.Limits.MaxFrameBytes != 64<<10 || w.Limits.HistoryKept != 1000 {
		t.Fatalf("limits = %+v", w.Limits)
	}
	c.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: "p1"})
	var p protocol.Pong
	c.ExpectDecode(protocol.TypePong, &p)
	if p.ID != "p1" || p.TS == 0 {
		t.Fatalf("pong = %+v", p)
	}
}

func TestProtocolJoinSendOrder(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--rate-burst", "100")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	j := ann.Join("lobby")
	if j.Head != 0 || j.Count != 1 || !slices.Equal(j.Present, []string{"ann"}) || j.Epoch == "" || j.Recovered != nil {
		t.Fatalf("first joined = %+v", j)
	}
	jb := bob.Join("lobby")
	if jb.Count != 2 || !slices.Equal(jb.Present, []string{"ann", "bob"}) || jb.Epoch != j.Epoch {
		t.Fatalf("second joined = %+v", jb)
	}
	const n = 50
	for i := 1; i <= n; i++ {
		ack := ann.Say("lobby", fmt.Sprint("c", i), fmt.Sprint("hello ", i))
		if ack.Seq != uint64(i) || ack.CID != fmt.Sprint("c", i) || ack.Duplicate || ack.MID == "" || ack.TS == 0 {
			t.Fatalf("ack %d = %+v", i, ack)
		}
	}
	for _, who := range []*chatdtest.Client{ann, bob} {
		for i := 1; i <= n; i++ {
			m := who.NextMessage()
			if m.Seq != uint64(i) || m.Room != "lobby" || m.From != "ann" || m.Text != fmt.Sprint("hello ", i) || m.CID != fmt.Sprint("c", i) {
				t.Fatalf("message %d = %+v", i, m)
			}
		}
	}
}

func TestProtocolIdempotentResend(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	ann.Join("r")
	bob.Join("r")
	first := ann.Say("r", "same", "once")
	again := ann.Say("r", "same", "once")
	if !again.Duplicate || again.Seq != first.Seq || again.MID != first.MID || again.TS != first.TS {
		t.Fatalf("resend ack = %+v, first = %+v", again, first)
	}
	// A resend from a new connection of the same user is also a duplicate:
	// that is the reconnect case the window exists for.
	ann2 := chatdtest.Connect(t, srv.URL, "ann")
	ann2.Join("r")
	if third := ann2.Say("r", "same", "once"); !third.Duplicate || third.Seq != first.Seq {
		t.Fatalf("resend after reconnect = %+v", third)
	}
	// Bob's own "same" is a different message.
	if b := bob.Say("r", "same", "bob's"); b.Duplicate || b.Seq != 2 {
		t.Fatalf("other user's cid = %+v", b)
	}
	if m := bob.NextMessage(); m.Seq != 1 {
		t.Fatalf("bob got %+v first", m)
	}
	if m := bob.NextMessage(); m.Seq != 2 || m.From != "bob" {
		t.Fatalf("bob's second message = %+v: the duplicate was delivered", m)
	}
}

func TestProtocolResume(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--history-size", "5", "--send-queue", "64")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	j := ann.Join("r")
	for i := 1; i <= 3; i++ {
		ann.Say("r", fmt.Sprint(i), fmt.Sprint("m", i))
	}
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "r", Since: u64(1), Epoch: j.Epoch})
	var got protocol.Joined
	bob.ExpectDecode(protocol.TypeJoined, &got)
	if got.Recovered == nil || !*got.Recovered || got.Head != 3 {
		t.Fatalf("resume joined = %+v", got)
	}
	for want := uint64(2); want <= 3; want++ {
		if m := bob.NextMessage(); m.Seq != want {
			t.Fatalf("replayed seq %d, want %d", m.Seq, want)
		}
	}
	// Live messages continue right after the replay.
	ann.Say("r", "4", "m4")
	if m := bob.NextMessage(); m.Seq != 4 {
		t.Fatalf("live seq %d after replay, want 4", m.Seq)
	}
	// Push seq 2..4 out of the 5-message history: a resume from 1 has a gap.
	for i := 5; i <= 9; i++ {
		ann.Say("r", fmt.Sprint(i), fmt.Sprint("m", i))
	}
	carl := chatdtest.Connect(t, srv.URL, "carl")
	carl.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "r", Since: u64(1), Epoch: j.Epoch})
	carl.ExpectDecode(protocol.TypeJoined, &got)
	if got.Recovered == nil || *got.Recovered || got.Oldest != 5 || got.Head != 9 {
		t.Fatalf("gap joined = %+v, want recovered=false oldest=5 head=9", got)
	}
	// Nothing is replayed after an unrecoverable gap: the next frame is the
	// answer to a ping.
	carl.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: "after"})
	if f := carl.Expect(protocol.TypePong); carl.Stashed() != 0 {
		t.Fatalf("frames replayed after a gap; then %s", f.Raw)
	}
	// A resume in another epoch cannot be served either.
	dan := chatdtest.Connect(t, srv.URL, "dan")
	dan.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "r", Since: u64(8), Epoch: "otherepoch"})
	dan.ExpectDecode(protocol.TypeJoined, &got)
	if got.Recovered == nil || *got.Recovered {
		t.Fatalf("foreign epoch joined = %+v", got)
	}
	// Resuming at the head replays nothing and is recovered.
	eve := chatdtest.Connect(t, srv.URL, "eve")
	eve.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "r", Since: u64(9), Epoch: j.Epoch})
	eve.ExpectDecode(protocol.TypeJoined, &got)
	if got.Recovered == nil || !*got.Recovered {
		t.Fatalf("resume at head = %+v", got)
	}
}

func TestProtocolHistoryPaging(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--history-size", "10", "--send-queue", "64")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("r")
	for i := 1; i <= 12; i++ {
		ann.Say("r", fmt.Sprint(i), fmt.Sprint("m", i))
	}
	page := func(before uint64, limit int) protocol.HistoryPage {
		t.Helper()
		ann.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "r", Before: before, Limit: limit})
		var p protocol.HistoryPage
		ann.ExpectDecode(protocol.TypeHistory, &p)
		return p
	}
	p := page(0, 4)
	if p.ID != "h" || p.Head != 12 || p.Oldest != 3 || !p.More || seqsOf(p.Messages) != "9,10,11,12" {
		t.Fatalf("newest page = %+v (%s)", p, seqsOf(p.Messages))
	}
	p = page(9, 4)
	if !p.More || seqsOf(p.Messages) != "5,6,7,8" {
		t.Fatalf("second page = %s more=%v", seqsOf(p.Messages), p.More)
	}
	p = page(5, 4)
	if p.More || seqsOf(p.Messages) != "3,4" {
		t.Fatalf("last page = %s more=%v", seqsOf(p.Messages), p.More)
	}
	if p.Messages[0].Text != "m3" || p.Messages[0].From != "ann" {
		t.Fatalf("history message = %+v", p.Messages[0])
	}
	// The default page size applies when limit is omitted.
	if p = page(0, 0); len(p.Messages) != 10 {
		t.Fatalf("default page has %d messages", len(p.Messages))
	}
	// History of a room nobody created is empty, not an error.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h2", Room: "nowhere"})
	var empty protocol.HistoryPage
	ann.ExpectDecode(protocol.TypeHistory, &empty)
	if len(empty.Messages) != 0 || empty.Head != 0 || empty.More {
		t.Fatalf("empty room history = %+v", empty)
	}
}

func seqsOf(ms []protocol.Message) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprint(m.Seq)
	}
	return strings.Join(parts, ",")
}

func TestProtocolDirectMessages(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	annTab2 := chatdtest.Connect(t, srv.URL, "ann")
	bob1 := chatdtest.Connect(t, srv.URL, "bob")
	bob2 := chatdtest.Connect(t, srv.URL, "bob")
	carl := chatdtest.Connect(t, srv.URL, "carl")

	ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "d1", To: "bob", CID: "x1", Text: "psst"})
	var ack protocol.Ack
	ann.ExpectDecode(protocol.TypeAck, &ack)
	if ack.ID != "d1" || ack.To != "bob" || ack.Delivered == nil || *ack.Delivered != 2 || ack.MID == "" {
		t.Fatalf("dm ack = %+v", ack)
	}
	for _, c := range []*chatdtest.Client{bob1, bob2, annTab2} {
		var dm protocol.DirectMessage
		c.ExpectDecode(protocol.TypeDM, &dm)
		if dm.From != "ann" || dm.To != "bob" || dm.Text != "psst" || dm.MID != ack.MID {
			t.Fatalf("dm = %+v", dm)
		}
	}
	// Resend: same ack, no second delivery.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "d2", To: "bob", CID: "x1", Text: "psst"})
	var again protocol.Ack
	ann.ExpectDecode(protocol.TypeAck, &again)
	if !again.Duplicate || again.MID != ack.MID || again.ID != "d2" {
		t.Fatalf("dm resend ack = %+v", again)
	}
	// Offline recipient: delivered 0.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeDM, ID: "d3", To: "nobody", CID: "x2", Text: "hello?"})
	ann.ExpectDecode(protocol.TypeAck, &ack)
	if *ack.Delivered != 0 {
		t.Fatalf("dm to offline user delivered to %d", *ack.Delivered)
	}
	// Carl saw none of it, and bob's next frame is a pong, not a second dm.
	for _, c := range []*chatdtest.Client{carl, bob1} {
		c.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: "p"})
		if f := c.Next(); f.Type != protocol.TypePong {
			t.Fatalf("unexpected frame %s", f.Raw)
		}
	}
}

func TestProtocolPresence(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("r")
	bob1 := chatdtest.Connect(t, srv.URL, "bob")
	bob1.Join("r")
	var p protocol.Presence
	ann.ExpectDecode(protocol.TypePresence, &p)
	if !slices.Equal(p.Joined, []string{"bob"}) || p.Count != 2 {
		t.Fatalf("presence on bob's join = %+v", p)
	}
	// A second connection of bob is not a new user: no presence frame. The
	// next frame ann sees must be the pong.
	bob2 := chatdtest.Connect(t, srv.URL, "bob")
	if j := bob2.Join("r"); j.Count != 2 {
		t.Fatalf("count with two bob connections = %d", j.Count)
	}
	bob1.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l", Room: "r"})
	var left protocol.Left
	bob1.ExpectDecode(protocol.TypeLeft, &left)
	if left.ID != "l" || left.Room != "r" {
		t.Fatalf("left = %+v", left)
	}
	ann.Do(protocol.ClientFrame{Type: protocol.TypePing, ID: "p"})
	if f := ann.Next(); f.Type != protocol.TypePong {
		t.Fatalf("per-connection presence leaked: %s", f.Raw)
	}
	// bob's last connection going away (without a leave) is a presence leave.
	bob2.Abort()
	ann.ExpectDecode(protocol.TypePresence, &p)
	if !slices.Equal(p.Left, []string{"bob"}) || p.Count != 1 {
		t.Fatalf("presence on bob's disconnect = %+v", p)
	}
}

func TestProtocolPresenceCountsInBigRooms(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--presence-list-max", "2")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("big")
	others := map[string]*chatdtest.Client{}
	join := func(name string) {
		others[name] = chatdtest.Connect(t, srv.URL, name)
		others[name].Join("big")
	}
	// bob's arrival is listed (2 users); carl's and dan's are folded into a
	// count. (bob's frame is awaited before carl joins: inside one presence
	// window the room would reach count mode before bob was announced.)
	join("bob")
	var p protocol.Presence
	ann.ExpectDecode(protocol.TypePresence, &p)
	if !slices.Equal(p.Joined, []string{"bob"}) {
		t.Fatalf("first presence = %+v", p)
	}
	join("carl")
	join("dan")
	p = protocol.Presence{}
	ann.ExpectDecode(protocol.TypePresence, &p)
	if p.Count != 4 || p.Joined != nil || p.Left != nil {
		t.Fatalf("count-mode presence = %+v", p)
	}
	late := chatdtest.Connect(t, srv.URL, "eve")
	if j := late.Join("big"); j.Present != nil || j.Count != 5 {
		t.Fatalf("big room snapshot = %+v", j)
	}
	// Shrinking back under the limit sends the whole list once, so clients
	// can show names again.
	for _, name := range []string{"carl", "dan"} {
		others[name].Abort()
	}
	late.Abort()
	for {
		p = protocol.Presence{}
		ann.ExpectDecode(protocol.TypePresence, &p)
		if p.Present != nil {
			break
		}
		if p.Joined != nil || p.Left != nil {
			t.Fatalf("list-mode delta %+v before the full list", p)
		}
	}
	if !slices.Equal(p.Present, []string{"ann", "bob"}) || p.Count != 2 {
		t.Fatalf("presence after shrinking = %+v", p)
	}
}

func TestProtocolResumeNeedsEpoch(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	c := chatdtest.Connect(t, srv.URL, "ann")
	c.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "r", Since: u64(3)})
	if e := c.ExpectError(protocol.CodeBadRequest); e.ID != "j" || e.Room != "r" {
		t.Fatalf("error = %+v", e)
	}
}

func TestProtocolTypingCoalesced(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	carl := chatdtest.Connect(t, srv.URL, "carl")
	for _, c := range []*chatdtest.Client{ann, bob, carl} {
		c.Join("r")
	}
	// A burst from two users becomes one frame naming both.
	for i := 0; i < 5; i++ {
		bob.Do(protocol.ClientFrame{Type: protocol.TypeTyping, Room: "r"})
		carl.Do(protocol.ClientFrame{Type: protocol.TypeTyping, Room: "r"})
	}
	var ty protocol.Typing
	for {
		f := ann.Next()
		if f.Type == protocol.TypePresence {
			continue
		}
		if f.Type != protocol.TypeTyping {
			t.Fatalf("unexpected %s", f.Raw)
		}
		if err := f.Decode(&ty); err != nil {
			t.Fatal(err)
		}
		break
	}
	if !slices.Equal(ty.Users, []string{"bob", "carl"}) || ty.Room != "r" {
		// Both signals normally land in one coalescing window; on a slow
		// machine carl's may land in the next, which is still coalesced.
		if len(ty.Users) != 1 {
			t.Fatalf("typing = %+v", ty)
		}
	}
	// Typing is never stored.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "r"})
	var h protocol.HistoryPage
	ann.ExpectDecode(protocol.TypeHistory, &h)
	if len(h.Messages) != 0 {
		t.Fatalf("typing was stored: %+v", h)
	}
	// Typing in a room not joined is an error.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeTyping, ID: "t", Room: "elsewhere"})
	if e := ann.ExpectError(protocol.CodeNotJoined); e.ID != "t" {
		t.Fatalf("typing error = %+v", e)
	}
}

func TestProtocolRoomForgottenWhenIdle(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--room-idle-ttl", "50ms")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	first := ann.Join("r")
	ann.Say("r", "1", "x")
	ann.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l", Room: "r"})
	ann.Expect(protocol.TypeLeft)
	// The sweeper gives no event: poll until the room is gone. A room that
	// no longer exists has no epoch (§5.6), which tells a client holding
	// the old one that those messages are gone.
	chatdtest.Eventually(t, chatdtest.Timeout, "the empty room to be forgotten", func() (bool, string) {
		h := historyPage(t, ann, "h", "r")
		return h.Epoch == "" && h.Head == 0, fmt.Sprintf("history page %+v", h)
	})
	if again := ann.Join("r"); again.Epoch == first.Epoch || again.Epoch == "" || again.Head != 0 {
		t.Fatalf("recreated room = %+v, first epoch %s", again, first.Epoch)
	}
}

// historyPage asks c for the newest page of room.
func historyPage(t *testing.T, c *chatdtest.Client, id, room string) protocol.HistoryPage {
	t.Helper()
	c.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: id, Room: room})
	var h protocol.HistoryPage
	c.ExpectDecode(protocol.TypeHistory, &h)
	if h.ID != id || h.Room != room {
		t.Fatalf("history reply %+v to request %s for %s", h, id, room)
	}
	return h
}

// ownedRooms lists the rooms the node's owner service holds (/admin/rooms
// on the admin listener at addr).
func ownedRooms(t *testing.T, addr string) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/admin/rooms")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Rooms []struct {
			Room string `json:"room"`
		} `json:"rooms"`
	}
	if err := json.Unmarshal([]byte(readAll(t, resp)), &body); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range body.Rooms {
		names = append(names, r.Room)
	}
	return names
}

// TestProtocolHistoryOfUnusedRoom: reading a room nobody used does not
// create it; the page says so with an empty epoch (§5.6), and a client that
// read it follows the room correctly afterwards: a join without since, then
// history for what was posted in between.
func TestProtocolHistoryOfUnusedRoom(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	h := historyPage(t, ann, "h1", "fresh")
	if h.Epoch != "" || h.Head != 0 || h.Oldest != 1 || h.More || h.Messages == nil || len(h.Messages) != 0 {
		t.Fatalf("history of an unused room = %+v, want epoch \"\", head 0, oldest 1, no messages", h)
	}
	if rooms := ownedRooms(t, srv.AdminAddr); slices.Contains(rooms, "fresh") {
		t.Fatalf("a history read created the room: owned rooms %v", rooms)
	}
	// An empty epoch is no epoch: there is nothing to resume from.
	ann.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j0", Room: "fresh", Since: u64(0), Epoch: h.Epoch})
	if e := ann.ExpectError(protocol.CodeBadRequest); e.ID != "j0" || e.Room != "fresh" {
		t.Fatalf("resume with an empty epoch = %+v", e)
	}

	// Someone posts before ann joins.
	bob := chatdtest.Connect(t, srv.URL, "bob")
	jb := bob.Join("fresh")
	if jb.Epoch == "" || jb.Head != 0 {
		t.Fatalf("first joined = %+v", jb)
	}
	bob.Say("fresh", "b1", "one")
	bob.Say("fresh", "b2", "two")

	ja := ann.Join("fresh")
	if ja.Epoch != jb.Epoch || ja.Head != 2 || ja.Recovered != nil {
		t.Fatalf("ann's joined = %+v, want epoch %s head 2", ja, jb.Epoch)
	}
	before := historyPage(t, ann, "h2", "fresh")
	if before.Epoch != ja.Epoch || before.Head != 2 || len(before.Messages) != 2 || before.Messages[0].Seq != 1 || before.Messages[1].Text != "two" {
		t.Fatalf("history after joining = %+v", before)
	}
	bob.Say("fresh", "b3", "three")
	if m := ann.NextMessage(); m.Seq != 3 || m.Text != "three" {
		t.Fatalf("live message after the join = %+v, want seq 3", m)
	}
}

func TestShutdownClosesWith1012(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("r")
	go srv.Stop()
	code, reason := ann.ExpectClose()
	if code != protocol.CloseServiceRestart || !strings.Contains(reason, "reconnect") {
		t.Fatalf("close = %d %q", code, reason)
	}
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t)
	c := chatdtest.Connect(t, srv.URL, "ann")
	c.Join("r")
	c.Say("r", "1", "x")
	for _, tc := range []struct{ url, want string }{
		{"http://" + srv.Addr + "/healthz", "ok"},
		{"http://" + srv.Addr + "/readyz", "ready"},
		{srv.AdminURL("/healthz"), "ok"},
		{srv.AdminURL("/readyz"), "ready"},
		{srv.AdminURL("/metrics"), "chatd_messages_total 1"},
	} {
		resp, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != 200 || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d, body lacks %q", tc.url, resp.StatusCode, tc.want)
		}
	}
	resp, err := http.Get("http://" + srv.Addr + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("plain GET /ws = %d, want 400", resp.StatusCode)
	}
	resp.Body.Close()
}

// TestProtocolPipelinedRepliesInRequestOrder: on a single node, replies come
// in the order of the requests (§3.4), interleaved with pushed frames; a
// sender's own message comes before its ack (§5.5), and so does a DM to
// oneself (§5.7). Every request is sent before any reply is read, and the
// sequence is repeated so that a reply that is merely usually on time does
// not pass by luck.
func TestProtocolPipelinedRepliesInRequestOrder(t *testing.T) {
	t.Parallel()
	srv := chatdtest.Start(t, "--rate-burst", "1000", "--rate", "1000")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	const rounds = 20
	var want []string // "type id" of every frame ann must get, in order
	for i := range rounds {
		id := func(s string) string { return fmt.Sprint(s, i) }
		room := id("room-")
		for _, f := range []protocol.ClientFrame{
			{Type: protocol.TypeDM, ID: id("d"), To: "bob", CID: id("dm-"), Text: "hi bob"},
			{Type: protocol.TypePing, ID: id("p")},
			{Type: protocol.TypeHistory, ID: id("h"), Room: room},
			{Type: protocol.TypeJoin, ID: id("j"), Room: room},
			{Type: protocol.TypeSend, ID: id("s"), Room: room, CID: id("c"), Text: "hi room"},
			{Type: protocol.TypeDM, ID: id("e"), To: "ann", CID: id("note-"), Text: "to myself"},
			{Type: protocol.TypeDM, ID: id("f"), To: "bob", CID: id("dm-"), Text: "hi bob"}, // a resend
			{Type: protocol.TypeLeave, ID: id("l"), Room: room},
			{Type: protocol.TypeLeave, ID: id("n"), Room: room}, // not joined any more: an error
			{Type: protocol.TypePing, ID: id("q")},
		} {
			ann.Do(f)
		}
		want = append(want,
			"ack "+id("d"), "pong "+id("p"), "history "+id("h"), "joined "+id("j"),
			"message ", "ack "+id("s"), "dm ", "ack "+id("e"), "ack "+id("f"),
			"left "+id("l"), "error "+id("n"), "pong "+id("q"))
	}
	for i, w := range want {
		f := ann.Next()
		var head struct{ ID string }
		if err := f.Decode(&head); err != nil {
			t.Fatal(err)
		}
		if got := f.Type + " " + head.ID; got != w {
			t.Fatalf("frame %d is %s, want %q: replies out of request order", i, f.Raw, w)
		}
	}
	// bob got each round's DM once (the resend is a duplicate).
	for i := range rounds {
		var dm protocol.DirectMessage
		bob.ExpectDecode(protocol.TypeDM, &dm)
		if dm.CID != fmt.Sprint("dm-", i) {
			t.Fatalf("bob's dm %d = %+v", i, dm)
		}
	}
	limPing(t, bob, "bob-done")
}
