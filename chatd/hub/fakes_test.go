package hub

// The hub's unit tests run it against fakes of its two seams: a Router that
// records every call and lets the test answer it as the room's owner would,
// when the test chooses; and Conns that record the frames queued to them.
// Owner pushes are fed in with Deliver.
//
// Every test runs in a testing/synctest bubble: the hub's own goroutines
// (the resubscription a gap triggers) and timers (the ack hold) belong to
// the bubble, synctest.Wait tells when they have done all they can, and the
// bubble's clock moves only when everything waits, so the tests neither
// sleep nor depend on the machine's speed.

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// ---------------------------------------------------------------------------
// The router.

type subscribeCall struct {
	room  string
	users []string
	reply func(feed.State, error)
}

type publishCall struct {
	room, user, cid, text string
	reply                 func(protocol.Ack, error)
}

type historyCall struct {
	room   string
	before uint64
	limit  int
	reply  func(protocol.HistoryPage, error)
}

type dmCall struct {
	to, from, except string
	frame            []byte
	reply            func(int)
}

// fakeRouter records the hub's calls. Replies are the test's to make.
type fakeRouter struct {
	mu           sync.Mutex
	subscribes   []*subscribeCall
	unsubscribes []string
	presence     []string // "room user joined|left"
	publishes    []*publishCall
	histories    []*historyCall
	typing       []string // "room user"
	dms          []*dmCall
}

func (f *fakeRouter) Subscribe(room string, users []string, reply func(feed.State, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subscribes = append(f.subscribes, &subscribeCall{room, slices.Sorted(slices.Values(users)), reply})
}

func (f *fakeRouter) Unsubscribe(room string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unsubscribes = append(f.unsubscribes, room)
}

func (f *fakeRouter) PresenceChange(room, user string, joined bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	what := "left"
	if joined {
		what = "joined"
	}
	f.presence = append(f.presence, room+" "+user+" "+what)
}

func (f *fakeRouter) Publish(room, user, cid, text string, reply func(protocol.Ack, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishes = append(f.publishes, &publishCall{room, user, cid, text, reply})
}

func (f *fakeRouter) History(room string, before uint64, limit int, reply func(protocol.HistoryPage, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.histories = append(f.histories, &historyCall{room, before, limit, reply})
}

func (f *fakeRouter) Typing(room, user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.typing = append(f.typing, room+" "+user)
}

func (f *fakeRouter) DirectMessage(to, from, exceptSession string, frame []byte, reply func(delivered int)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dms = append(f.dms, &dmCall{to, from, exceptSession, frame, reply})
}

// subscribeCalls returns the Subscribe calls made so far.
func (f *fakeRouter) subscribeCalls() []*subscribeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.subscribes)
}

// subscribed returns the rooms of the Subscribe calls made so far, in order.
func (f *fakeRouter) subscribed() []string {
	var rooms []string
	for _, c := range f.subscribeCalls() {
		rooms = append(rooms, c.room)
	}
	return rooms
}

// onlyNewSubscribe returns the one Subscribe call made after the first
// seen ones, failing the test if there is not exactly one.
func (f *fakeRouter) onlyNewSubscribe(t *testing.T, seen int) *subscribeCall {
	t.Helper()
	calls := f.subscribeCalls()
	if len(calls) != seen+1 {
		t.Fatalf("%d Subscribe calls, want %d: %v", len(calls), seen+1, f.subscribed())
	}
	return calls[seen]
}

func (f *fakeRouter) presenceChanges() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.presence)
}

func (f *fakeRouter) unsubscribed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.unsubscribes)
}

func (f *fakeRouter) publishCalls() []*publishCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.publishes)
}

func (f *fakeRouter) historyCalls() []*historyCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.histories)
}

func (f *fakeRouter) dmCalls() []*dmCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.dms)
}

// ---------------------------------------------------------------------------
// Connections.

// fakeConn records the frames queued to it. Enqueue never blocks, as the
// hub requires; it also signals queued, so a test can wait for a frame.
type fakeConn struct {
	id, user string
	queued   chan struct{}

	mu     sync.Mutex
	frames [][]byte
	read   int // frames already returned by take
}

// newConn must be called inside the test's bubble (its channel belongs to it).
func newConn(id, user string) *fakeConn {
	return &fakeConn{id: id, user: user, queued: make(chan struct{}, 1)}
}

func (c *fakeConn) SessionID() string { return c.id }
func (c *fakeConn) UserID() string    { return c.user }

func (c *fakeConn) Enqueue(frame []byte) {
	c.mu.Lock()
	c.frames = append(c.frames, frame)
	c.mu.Unlock()
	select {
	case c.queued <- struct{}{}:
	default:
	}
}

// take returns a one-line summary of each frame queued since the last take.
func (c *fakeConn) take(t *testing.T) []string {
	t.Helper()
	c.mu.Lock()
	raw := c.frames[c.read:]
	c.read = len(c.frames)
	c.mu.Unlock()
	out := make([]string, 0, len(raw))
	for _, b := range raw {
		out = append(out, summarize(t, b))
	}
	return out
}

// rawFrames returns every frame queued to c, as queued.
func (c *fakeConn) rawFrames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

// expect checks the frames queued to c since the last take.
func (c *fakeConn) expect(t *testing.T, want ...string) {
	t.Helper()
	got := c.take(t)
	if !slices.Equal(got, want) {
		t.Fatalf("%s got\n\t%s\nwant\n\t%s", c.id, lines(got), lines(want))
	}
}

func lines(s []string) string {
	if len(s) == 0 {
		return "(nothing)"
	}
	return strings.Join(s, "\n\t")
}

// frame has every member of every server frame the hub sends.
type frame struct {
	Type      string             `json:"type"`
	ID        string             `json:"id"`
	Room      string             `json:"room"`
	Epoch     string             `json:"epoch"`
	Head      uint64             `json:"head"`
	Oldest    uint64             `json:"oldest"`
	Count     int                `json:"count"`
	Present   []string           `json:"present"`
	Recovered *bool              `json:"recovered"`
	Seq       uint64             `json:"seq"`
	MID       string             `json:"mid"`
	From      string             `json:"from"`
	To        string             `json:"to"`
	CID       string             `json:"cid"`
	Text      string             `json:"text"`
	Duplicate bool               `json:"duplicate"`
	Delivered *int               `json:"delivered"`
	Code      string             `json:"code"`
	More      bool               `json:"more"`
	Messages  []protocol.Message `json:"messages"`
	Joined    []string           `json:"joined"`
	Left      []string           `json:"left"`
	Users     []string           `json:"users"`
}

// summarize renders a frame as one line with the members that matter.
func summarize(t *testing.T, b []byte) string {
	t.Helper()
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("the hub queued a frame that is not JSON: %q: %v", b, err)
	}
	switch f.Type {
	case protocol.TypeMessage:
		return "message " + f.MID
	case protocol.TypeAck:
		s := "ack " + f.ID + " " + f.MID
		if f.Delivered != nil {
			s += " delivered=" + strconv.Itoa(*f.Delivered)
		}
		if f.Duplicate {
			s += " duplicate"
		}
		return s
	case protocol.TypeJoined:
		s := fmt.Sprintf("joined %s id=%s epoch=%s head=%d oldest=%d count=%d", f.Room, f.ID, f.Epoch, f.Head, f.Oldest, f.Count)
		if f.Present != nil {
			s += " present=" + strings.Join(f.Present, ",")
		}
		if f.Recovered != nil {
			s += " recovered=" + strconv.FormatBool(*f.Recovered)
		}
		return s
	case protocol.TypePresence:
		s := fmt.Sprintf("presence %s count=%d", f.Room, f.Count)
		for _, m := range []struct {
			name  string
			users []string
		}{{"joined", f.Joined}, {"left", f.Left}, {"present", f.Present}} {
			if m.users != nil {
				s += " " + m.name + "=" + strings.Join(m.users, ",")
			}
		}
		return s
	case protocol.TypeError:
		return fmt.Sprintf("error %s id=%s room=%s", f.Code, f.ID, f.Room)
	case protocol.TypeHistory:
		var seqs []string
		for _, m := range f.Messages {
			seqs = append(seqs, m.MID)
		}
		return fmt.Sprintf("history %s id=%s epoch=%s head=%d oldest=%d more=%t [%s]", f.Room, f.ID, f.Epoch, f.Head, f.Oldest, f.More, strings.Join(seqs, " "))
	case protocol.TypeDM:
		return fmt.Sprintf("dm %s %s->%s cid=%s", f.MID, f.From, f.To, f.CID)
	case protocol.TypeTyping:
		return "typing " + f.Room + " " + strings.Join(f.Users, ",")
	case protocol.TypeWelcome:
		return "welcome " + f.ID
	}
	return string(b)
}

// ---------------------------------------------------------------------------
// The hub and the owner's side of the conversation.

// newTestHub returns a hub wired to a fake router. Zero members of cfg get
// test defaults. It must be called inside the test's bubble.
func newTestHub(cfg Config) (*Hub, *fakeRouter) {
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 100
	}
	if cfg.PresenceListMax == 0 {
		cfg.PresenceListMax = 100
	}
	if cfg.DedupeWindow == 0 {
		cfg.DedupeWindow = 16
	}
	if cfg.TypingInterval == 0 {
		cfg.TypingInterval = time.Second
	}
	h := New(cfg, metrics.New(), slog.New(slog.DiscardHandler))
	r := &fakeRouter{}
	h.SetRouter(r)
	return h, r
}

func mid(epoch string, seq uint64) string { return epoch + "-" + strconv.FormatUint(seq, 10) }

func message(room, epoch string, seq uint64) protocol.Message {
	return protocol.Message{Type: protocol.TypeMessage, Room: room, Seq: seq, MID: mid(epoch, seq), From: "owner", CID: "c" + strconv.FormatUint(seq, 10), Text: "text " + strconv.FormatUint(seq, 10), TS: int64(seq)}
}

// messages returns the messages from..to of a room's epoch.
func messages(room, epoch string, from, to uint64) []protocol.Message {
	var out []protocol.Message
	for s := from; s <= to; s++ {
		out = append(out, message(room, epoch, s))
	}
	return out
}

// push is the owner's push of one message.
func push(room, epoch string, seq uint64) feed.Event {
	m := message(room, epoch, seq)
	return feed.Event{Kind: feed.KindMessage, Room: room, Epoch: epoch, Seq: seq, Message: &m, Frame: protocol.Encode(m)}
}

// state is an owner's subscribe reply holding the messages from..head.
func state(room, epoch string, from, head uint64, present ...string) feed.State {
	st := feed.State{Epoch: epoch, Head: head, Present: present, Count: len(present)}
	if from <= head {
		st.Messages = messages(room, epoch, from, head)
	}
	return st
}

// msgs renders the summaries of the messages from..to, as take returns them.
func msgs(epoch string, from, to uint64) []string {
	var out []string
	for s := from; s <= to; s++ {
		out = append(out, "message "+mid(epoch, s))
	}
	return out
}

// joinReady joins conns to a room whose owner answers with st, and consumes
// their joined frames.
func joinReady(t *testing.T, h *Hub, r *fakeRouter, room string, st feed.State, conns ...*fakeConn) {
	t.Helper()
	seen := len(r.subscribeCalls())
	for _, c := range conns {
		h.Join(c, JoinRequest{ID: "j-" + c.id, Room: room})
	}
	r.onlyNewSubscribe(t, seen).reply(st, nil)
	for _, c := range conns {
		if got := c.take(t); len(got) != 1 || !strings.HasPrefix(got[0], "joined "+room+" ") {
			t.Fatalf("%s joining %s got %v, want its joined frame", c.id, room, got)
		}
	}
}

func ptr[T any](v T) *T { return &v }
