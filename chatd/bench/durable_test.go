package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// durableFlags start a benchmark server with a message store: acks wait
// for the fsync.
func durableFlags(t *testing.T, extra ...string) []string {
	return append(append([]string{"--data-dir", t.TempDir()}, benchServerFlags...), extra...)
}

func reportText(rep *Report) string {
	var b bytes.Buffer
	_ = rep.WriteText(&b)
	return b.String()
}

// TestRoomsDurableAckLatency runs rooms at a fixed total rate against a
// durable server: every ack is matched to its send and timed, so the
// measured step has exactly one ack sample per message and room-size
// delivery samples per message.
func TestRoomsDurableAckLatency(t *testing.T) {
	srv := chatdtest.Start(t, durableFlags(t)...)
	rep, err := Rooms(context.Background(), RoomsConfig{
		Options:     srvOptions(srv),
		Connections: 12, RoomSize: 3, TotalRate: 120, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	requireClean(t, rep)
	s := rep.Steps[0]
	if s.AckLatency == nil || s.AckLatency.Count == 0 || s.AckLatency.P99MS <= 0 || s.AckedPerSec <= 0 {
		t.Fatalf("step without send→ack figures: %+v\n%s", s, reportText(rep))
	}
	if s.Latency.Count != 3*s.AckLatency.Count {
		t.Fatalf("%d delivery samples for %d acked sends in rooms of 3", s.Latency.Count, s.AckLatency.Count)
	}
	// Every ack waited for a sync: the store synced, at least one write
	// each time.
	if ss := s.StoreSync; ss == nil || ss.SyncsPerSec <= 0 || ss.WritesPerSync < 1 || ss.MeanSyncMS <= 0 {
		t.Fatalf("store sync figures %+v", s.StoreSync)
	}
	if rep.Params["rate_per_connection"] != 10.0 {
		t.Fatalf("--total-rate 120 over 12 connections: rate_per_connection %v", rep.Params["rate_per_connection"])
	}
	if !strings.Contains(reportText(rep), "ack p99 ms") {
		t.Fatalf("text report lacks the send→ack table:\n%s", reportText(rep))
	}
}

func TestThroughputSmoke(t *testing.T) {
	srv := chatdtest.Start(t, durableFlags(t)...)
	rep, err := Throughput(context.Background(), ThroughputConfig{
		Options: srvOptions(srv),
		Rooms:   8, Window: 4, Rates: []float64{100, 200}, StepDuration: 500 * time.Millisecond,
		MaxP99: chatdtest.Timeout, AllSteps: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	requireClean(t, rep)
	if len(rep.Steps) != 2 {
		t.Fatalf("%d steps, want 2", len(rep.Steps))
	}
	for _, s := range rep.Steps {
		if s.AckLatency == nil || s.Latency.Count != s.AckLatency.Count || s.AckedPerSec <= 0 {
			t.Fatalf("step %+v: each room's one member must have one delivery and one ack sample per message", s)
		}
		if !s.Behind && rep.MaxSustainedAcked < s.AckedPerSec {
			t.Fatalf("max sustained %v below the sustained step's %v", rep.MaxSustainedAcked, s.AckedPerSec)
		}
	}
}

// TestThroughputBehind: a target the window cannot carry (one send in
// flight per connection, two connections) is reported as not sustained.
func TestThroughputBehind(t *testing.T) {
	srv := chatdtest.Start(t, durableFlags(t)...)
	rep, err := Throughput(context.Background(), ThroughputConfig{
		Options: srvOptions(srv),
		Rooms:   2, Window: 1, Rates: []float64{1e6}, StepDuration: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	requireClean(t, rep)
	s := rep.Steps[0]
	if !s.Behind || !strings.Contains(s.Reason, "published") || rep.MaxSustainedAcked != 0 {
		t.Fatalf("step %+v, max sustained %v: want behind for lack of publishes", s, rep.MaxSustainedAcked)
	}
}

// TestSchedulerWindow: a connection with Window sends unanswered is passed
// over, and none at all is picked when every one is full.
func TestSchedulerWindow(t *testing.T) {
	full, free := &conn{}, &conn{}
	full.sent.Store(3)
	full.acked.Store(1)
	full.errored.Store(1) // 1 in flight
	free.sent.Store(5)
	free.acked.Store(4)
	free.ackDups.Store(1) // 0 in flight
	s := &scheduler{pubs: []*conn{full, free}, connWindow: 1}
	next := 0
	for range 3 {
		if p := s.pick(&next); p != free {
			t.Fatalf("picked %p, want the connection under its window %p", p, free)
		}
	}
	free.sent.Add(1)
	if p := s.pick(&next); p != nil {
		t.Fatalf("picked %p with every window full", p)
	}
	s.connWindow = 0
	if p := s.pick(&next); p == nil {
		t.Fatal("no window: every connection may be picked")
	}
}

// chatdProcess is a real chatd process with a data dir, for the scenarios
// that need a process of their own (restart, RSS).
type chatdProcess struct {
	url     string
	metrics string // /metrics on its admin listener
	cmd     *exec.Cmd
	logs    *chatdtest.LogBuffer
	done    chan struct{}
}

func startChatdProcess(t *testing.T, bin string, args ...string) *chatdProcess {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		adminLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr, admin := ln.Addr().String(), adminLn.Addr().String()
		ln.Close()
		adminLn.Close()
		flags := append([]string{"--listen", addr, "--admin-listen", admin, "--allow-anonymous", "--log-level", "info"}, args...)
		p := &chatdProcess{url: "ws://" + addr + "/ws", metrics: "http://" + admin + "/metrics", cmd: exec.Command(bin, flags...), logs: chatdtest.NewLogBuffer(), done: make(chan struct{})}
		p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = p.cmd.Wait()
			close(p.done)
		}()
		t.Cleanup(func() {
			_ = p.cmd.Process.Kill()
			<-p.done
		})
		if p.waitListening(t) {
			return p
		}
		if attempt == 5 || !p.logs.Contains("address already in use") {
			t.Fatalf("chatd did not start:\n%s", p.logs.String())
		}
	}
}

func (p *chatdProcess) waitListening(t *testing.T) bool {
	deadline := time.After(chatdtest.Timeout)
	for !p.logs.Contains(`"msg":"chatd listening"`) {
		select {
		case <-p.logs.Wrote():
		case <-p.done:
			return false
		case <-deadline:
			t.Fatalf("chatd not listening within %v:\n%s", chatdtest.Timeout, p.logs.String())
		}
	}
	return true
}

func (p *chatdProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * chatdtest.Timeout):
		t.Fatalf("chatd did not stop after SIGTERM:\n%s", p.logs.String())
	}
}

// TestFillHistoryReady drives the durable scenarios against a real chatd
// process: a fill through the real write path, the rooms leaving memory,
// every room's cold first page read and checked, a page check that fails
// when a message is missing, a fill on top, and a restart measured by
// ready.
func TestFillHistoryReady(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs chatd processes")
	}
	bin := chatdtest.BuildChatd(t)
	dataDir := t.TempDir()
	const idleTTL = time.Second
	args := append([]string{"--data-dir", dataDir, "--room-idle-ttl", idleTTL.String()}, benchServerFlags...)
	p := startChatdProcess(t, bin, args...)
	opts := withMetrics(testOptions(p.url), p.metrics)
	// The rooms leave memory idleTTL after their last member; the owner
	// checks every second.
	settle := idleTTL + time.Second + chatdtest.Timeout

	const rooms, perRoom = 12, 30
	rep, err := Fill(context.Background(), FillConfig{
		Options: opts, Rooms: rooms, MessagesPerRoom: perRoom, RoomPrefix: "tf",
		Connections: 2, Batch: 5, Window: 8, Settle: settle,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	f := rep.Fill
	if !rep.OK || !rep.Integrity.Clean || f.RoomsFilled != rooms || f.Messages != rooms*perRoom || f.AckLatency.Count != rooms*perRoom ||
		rep.Integrity.Delivered != rooms*perRoom || rep.Integrity.Published != rooms*perRoom {
		t.Fatalf("fill:\n%s", reportText(rep))
	}
	if f.StoreSync == nil || f.StoreSync.WritesPerSync < 1 {
		t.Fatalf("fill without store sync figures:\n%s", reportText(rep))
	}
	if f.Idle == nil || !f.Idle.RoomsGone || f.Idle.RSSBytes == 0 || rep.Server == nil || !strings.HasPrefix(rep.Server.Source, "proc") {
		t.Fatalf("idle memory %+v, server %+v:\n%s", f.Idle, rep.Server, reportText(rep))
	}

	hist := func(perRoom int) *Report {
		t.Helper()
		rep, err := History(context.Background(), HistoryConfig{
			Options: opts, Rooms: rooms, RoomPrefix: "tf", MessagesPerRoom: perRoom, Limit: 7, Rate: 100, WaitCold: settle,
		})
		if err != nil {
			t.Fatal(err)
		}
		checkReport(t, rep)
		return rep
	}
	rep = hist(perRoom)
	h := rep.History
	if !rep.OK || !h.Clean || h.Pages != rooms || h.BadPages != 0 || h.RoomsRead != rooms || h.Cold.Count != rooms || h.Warm != nil || h.RoomsInMemoryAtStart != 0 {
		t.Fatalf("history:\n%s", reportText(rep))
	}
	// A room one message short of what was written fails every page.
	rep = hist(perRoom + 1)
	if rep.OK || rep.Consistent() || rep.History.BadPages != rooms || !strings.Contains(rep.History.Problems[0], fmt.Sprintf("head %d, want %d", perRoom, perRoom+1)) {
		t.Fatalf("a missing message was not reported:\n%s", reportText(rep))
	}

	// A second fill goes on top of what is there.
	rep, err = Fill(context.Background(), FillConfig{Options: opts, Rooms: rooms, MessagesPerRoom: perRoom, RoomPrefix: "tf", Connections: 1, Batch: rooms, Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Fill.RoomsFilled != rooms || rep.Fill.RoomsNotEmpty != rooms {
		t.Fatalf("fill on top:\n%s", reportText(rep))
	}

	p.stop(t)
	p = startChatdProcess(t, bin, args...)
	_, err = Ready(context.Background(), ReadyConfig{
		Options: withMetrics(testOptions(p.url), p.metrics), Rooms: rooms, RoomPrefix: "tf", MessagesPerRoom: 2 * perRoom,
		Timeout: chatdtest.Timeout,
	})
	if err == nil || !strings.Contains(err.Error(), "--server-pid") {
		t.Fatalf("ready without --server-pid or --started-at: %v", err)
	}
	rep, err = Ready(context.Background(), ReadyConfig{
		Options: withMetrics(testOptions(p.url), p.metrics), StartedAt: time.Now(), Rooms: rooms, RoomPrefix: "tf", MessagesPerRoom: 2 * perRoom,
		Timeout: chatdtest.Timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rd := rep.Ready; !rep.OK || rd.Polls != 1 || rd.PageProblem != "" || !strings.Contains(strings.Join(rep.Notes, " "), "upper bound") {
		t.Fatalf("ready on a running server:\n%s", reportText(rep))
	}
	p.stop(t)
	p = startChatdProcess(t, bin, args...)
	rep, err = Ready(context.Background(), ReadyConfig{
		Options: Options{URLs: []string{p.url}, MetricsURLs: []string{p.metrics}, ServerPID: p.cmd.Process.Pid}, Rooms: rooms, RoomPrefix: "tf", MessagesPerRoom: 2 * perRoom,
		Timeout: chatdtest.Timeout, Hold: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	rd := rep.Ready
	if !rep.OK || rd.StartedFrom != fmt.Sprintf("/proc/%d", p.cmd.Process.Pid) || rd.ReadySeconds <= 0 || rd.FirstPageSeconds < rd.ReadySeconds ||
		rd.FirstPageRoom == "" || rd.PageProblem != "" || rd.Idle == nil || rd.Idle.RSSBytes == 0 || rd.RSSAtReadyBytes == 0 {
		t.Fatalf("ready:\n%s", reportText(rep))
	}
	// The process started before Ready was called, within the wait bound.
	if rd.ReadySeconds > chatdtest.Timeout.Seconds() {
		t.Fatalf("ready %.3fs after a start that was at most %v ago", rd.ReadySeconds, chatdtest.Timeout)
	}
}

// TestFillAccounting: a room whose acks fall short, or whose read-back has
// a gap, is reported, not hidden.
func TestFillAccounting(t *testing.T) {
	run := &runState{ackLat: newLatencySet(), errors: map[string]uint64{}}
	f := &filler{cfg: FillConfig{Rooms: 4, MessagesPerRoom: 3}, run: run}
	full := func(name string) *fillRoom {
		r := &fillRoom{name: name, joined: true}
		for s := uint64(1); s <= 3; s++ {
			r.acks.add(s)
			r.echo.add(s)
		}
		r.acked, r.received = 3, 3
		return r
	}
	good := full("r-0")
	short := full("r-1")
	short.acks = seqTracker{}
	short.acks.add(1)
	short.acks.add(3)
	short.acked = 2
	gap := full("r-2")
	gap.echo = seqTracker{}
	gap.echo.add(1)
	gap.echo.add(3)
	gap.received = 2
	f.rooms = []*fillRoom{good, short, gap} // r-3 never reached
	run.published.Store(9)
	fr := f.report(time.Second)
	if fr.RoomsFilled != 2 || fr.RoomsShort != 1 || fr.RoomsFailed != 1 || fr.Messages != 8 || len(fr.Problems) != 1 || !strings.Contains(fr.Problems[0], "r-1") {
		t.Fatalf("fill report %+v", fr)
	}
	in := f.integrity()
	if in.Clean || in.Lost != 1 || in.Unanswered != 1 || in.Stored != 8 {
		t.Fatalf("integrity %+v", in)
	}
}

func TestCheckPage(t *testing.T) {
	msgs := func(room string, from, to uint64) []protocol.Message {
		var out []protocol.Message
		for s := from; s <= to; s++ {
			out = append(out, protocol.Message{Type: protocol.TypeMessage, Room: room, Seq: s})
		}
		return out
	}
	page := func(head, oldest uint64, more bool, m []protocol.Message) *protocol.HistoryPage {
		return &protocol.HistoryPage{Type: protocol.TypeHistory, Room: "r", Epoch: "e", Head: head, Oldest: oldest, More: more, Messages: m}
	}
	for _, tc := range []struct {
		name     string
		p        *protocol.HistoryPage
		before   uint64
		wantHead uint64
		bad      string
	}{
		{"newest", page(30, 1, true, msgs("r", 24, 30)), 0, 30, ""},
		{"middle", page(30, 1, true, msgs("r", 3, 9)), 10, 30, ""},
		{"oldest short page", page(30, 1, false, msgs("r", 1, 4)), 5, 30, ""},
		{"before past head", page(30, 1, true, msgs("r", 24, 30)), 99, 30, ""},
		{"head unchecked", page(31, 1, true, msgs("r", 25, 31)), 0, 0, ""},
		{"no room, nothing expected", &protocol.HistoryPage{Type: protocol.TypeHistory, Room: "r", Oldest: 1, Messages: []protocol.Message{}}, 0, 0, ""},
		{"no room", &protocol.HistoryPage{Type: protocol.TypeHistory, Room: "r", Oldest: 1}, 0, 30, "no history"},
		{"short head", page(29, 1, true, msgs("r", 23, 29)), 0, 30, "head 29, want 30"},
		{"removed", page(30, 5, true, msgs("r", 24, 30)), 0, 30, "oldest 5"},
		{"gap", page(30, 1, true, append(msgs("r", 24, 26), msgs("r", 28, 31)...)), 0, 30, "seq 28, want 27"},
		{"missing one", page(30, 1, true, msgs("r", 25, 30)), 0, 30, "6 messages, want 7"},
		{"other room", page(30, 1, true, msgs("x", 24, 30)), 0, 30, "room \"x\""},
		{"wrong more", page(30, 1, false, msgs("r", 3, 9)), 10, 30, "more false"},
		{"wrong answer", &protocol.HistoryPage{Type: protocol.TypeHistory, Room: "q"}, 0, 30, "answer for room"},
	} {
		err := checkPage(tc.p, "r", tc.before, 7, tc.wantHead)
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.bad)
		}
	}
}

func TestParseAck(t *testing.T) {
	raw := protocol.Encode(protocol.Ack{Type: protocol.TypeAck, Room: "bench-x-1", CID: "3.42", Seq: 17, MID: "e-17", TS: 1})
	a, ok := parseAck(raw)
	if !ok || a != (benchAck{room: "bench-x-1", cid: "3.42", seq: 17}) {
		t.Fatalf("parseAck = %+v, %v", a, ok)
	}
	if n, ok := cidCounter(a.cid); !ok || n != 42 {
		t.Fatalf("cidCounter(%q) = %d, %v", a.cid, n, ok)
	}
	dup := protocol.Encode(protocol.Ack{Type: protocol.TypeAck, Room: "r", CID: "f.7", Seq: 3, MID: "e-3", TS: 1, Duplicate: true})
	if a, ok := parseAck(dup); !ok || !a.duplicate || a.seq != 3 || a.cid != "f.7" {
		t.Fatalf("duplicate ack = %+v, %v", a, ok)
	}
	// A cid with an escape goes through encoding/json.
	esc := protocol.Encode(protocol.Ack{Type: protocol.TypeAck, Room: "r", CID: `a"b`, Seq: 4, MID: "e-4", TS: 1})
	if a, ok := parseAck(esc); !ok || a.cid != `a"b` || a.seq != 4 {
		t.Fatalf("escaped cid = %+v, %v", a, ok)
	}
	dm := protocol.Encode(protocol.Ack{Type: protocol.TypeAck, To: "bob", CID: "c", MID: "dm-1", TS: 1})
	if a, ok := parseAck(dm); !ok || a.room != "" {
		t.Fatalf("dm ack = %+v, %v", a, ok)
	}
	if _, ok := parseAck([]byte(`{"type":"ack","room":`)); ok {
		t.Fatal("a truncated ack was accepted")
	}
	if _, ok := cidCounter("nodot"); ok {
		t.Fatal("a cid without a counter was accepted")
	}
}

func TestStartFromProc(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	stat := []byte("4242 (chat d) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 9 0 12345 123456 789")
	at, err := startFromProc(stat, []byte("200.00 350.00\n"), now)
	// Started at tick 12345 = 123.45 s after boot; up 200 s: 76.55 s ago.
	if d := now.Add(-76550 * time.Millisecond).Sub(at); err != nil || d > time.Millisecond || d < -time.Millisecond {
		t.Fatalf("startFromProc = %v, %v; want %v", at, err, now.Add(-76550*time.Millisecond))
	}
	if _, err := startFromProc([]byte("4242 (x) S 1"), []byte("1.0 1.0"), now); err == nil {
		t.Fatal("a short stat was accepted")
	}
	self, err := procStartTime(syscall.Getpid())
	if err != nil || self.After(time.Now()) || time.Since(self) > time.Hour {
		t.Fatalf("procStartTime(self) = %v, %v", self, err)
	}
}

func TestFillHelpers(t *testing.T) {
	if i, ok := batchIndex("j12", "j", 13); !ok || i != 12 {
		t.Fatalf("batchIndex(j12) = %d, %v", i, ok)
	}
	for _, bad := range []string{"j13", "l1", "j", "j-1"} {
		if _, ok := batchIndex(bad, "j", 13); ok {
			t.Errorf("batchIndex(%q) accepted", bad)
		}
	}
	for _, p := range []string{"", strings.Repeat("a", 51), "a b", `a"b`} {
		if checkPrefix(p) == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	if err := checkPrefix("fill-x_1.2:3/4"); err != nil {
		t.Error(err)
	}
	if RoomName("fill", 42) != "fill-42" {
		t.Errorf("RoomName = %q", RoomName("fill", 42))
	}
}
