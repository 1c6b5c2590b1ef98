package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// benchServerFlags are the limits the docs tell benchmark servers to use.
var benchServerFlags = []string{"--rate", "1000000", "--rate-burst", "1000000", "--max-connections-per-ip", "0"}

func testOptions(urls ...string) Options {
	return Options{URLs: urls, Warmup: 200 * time.Millisecond, Drain: 10 * time.Second, Tick: 2 * time.Millisecond, DialConcurrency: 8}
}

// withMetrics sets o's metrics endpoints.
func withMetrics(o Options, urls ...string) Options {
	o.MetricsURLs = urls
	return o
}

// srvOptions is testOptions for srv, with its metrics endpoint (on the
// admin listener).
func srvOptions(srv *chatdtest.Server) Options {
	return withMetrics(testOptions(srv.URL), srv.AdminURL("/metrics"))
}

// checkReport asserts the report round-trips through JSON and that no
// goroutine of this package outlived the run.
func checkReport(t *testing.T, rep *Report) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, buf.String())
	}
	if m["format_version"] != 1.0 || m["scenario"] != rep.Scenario {
		t.Fatalf("report header %v", m)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "result: ") {
		t.Fatalf("text report: %v\n%s", err, text.String())
	}
	if t.Failed() {
		t.Logf("report:\n%s", text.String())
	}
	checkNoLeaks(t)
	return m
}

func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		leaked := ""
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "ringchat/chatd/bench.(*") {
				leaked = g
				break
			}
		}
		if leaked == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("goroutine left running after the run:\n%s", leaked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func requireClean(t *testing.T, rep *Report) {
	t.Helper()
	in := rep.Integrity
	if in == nil {
		t.Fatal("no integrity section")
	}
	if !in.Clean || !rep.OK || in.Lost != 0 || in.Duplicated != 0 || in.OutOfOrder != 0 {
		var text bytes.Buffer
		_ = rep.WriteText(&text)
		t.Fatalf("run not clean:\n%s", text.String())
	}
	if in.Delivered == 0 || in.Delivered != in.Expected || in.Stored != in.Published {
		t.Fatalf("delivered %d, expected %d, stored %d, published %d", in.Delivered, in.Expected, in.Stored, in.Published)
	}
	if in.SlowParses != 0 {
		t.Fatalf("%d frames missed the fast parser", in.SlowParses)
	}
}

func TestIdleSmoke(t *testing.T) {
	srv := chatdtest.Start(t, benchServerFlags...)
	rep, err := Idle(context.Background(), IdleConfig{Options: srvOptions(srv), Connections: 30, Rooms: 4, Hold: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := checkReport(t, rep)
	if rep.Connections.Opened != 30 || rep.Connections.Failed != 0 || !rep.OK {
		t.Fatalf("connections %+v, ok %v, notes %v", rep.Connections, rep.OK, rep.Notes)
	}
	// The in-process server is this process: its figures come from /metrics.
	if rep.Server == nil || rep.Server.Source != "metrics" || rep.Server.RSSAfterBytes == 0 || rep.Server.GoroutinesAfter == 0 {
		t.Fatalf("server section %+v", rep.Server)
	}
	if _, ok := m["server"].(map[string]any)["rss_per_connection_bytes"]; !ok {
		t.Fatalf("no rss_per_connection_bytes in %v", m["server"])
	}
}

// TestStormSmoke: every connection joins, then all reconnect and resume
// (every resume recovers); the presence frames the joins caused are
// counted, and are at most one per arrival per member already there.
func TestStormSmoke(t *testing.T) {
	srv := chatdtest.Start(t, benchServerFlags...)
	const conns, size = 60, 20
	rep, err := Storm(context.Background(), StormConfig{Options: srvOptions(srv), Connections: conns, RoomSize: size, Reconnect: true, Quiet: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := checkReport(t, rep)
	st := rep.Storm
	if st == nil || st.Reconnect == nil || !rep.OK {
		t.Fatalf("storm %+v, ok %v, notes %v", st, rep.OK, rep.Notes)
	}
	if st.Join.Opened != conns || st.Reconnect.Opened != conns || st.Reconnect.Recovered != conns || st.Join.PerSecond <= 0 {
		t.Fatalf("join %+v, reconnect %+v: want %d opened each time and every resume recovered", st.Join, *st.Reconnect, conns)
	}
	// Unbatched, the k-th arrival in a room is told to the k-1 before it.
	unbatched := uint64(conns / size * (size * (size - 1) / 2))
	if st.Join.PresenceFrames == 0 || st.Join.PresenceFrames > unbatched {
		t.Fatalf("join storm: %d presence frames, want 1..%d", st.Join.PresenceFrames, unbatched)
	}
	if _, ok := m["storm"].(map[string]any)["reconnect"]; !ok {
		t.Fatalf("no storm.reconnect in %v", m["storm"])
	}
}

// TestFanoutManyPublishers: publishers chosen among the subscribers share
// the rate, every one of them publishes, and every subscriber gets every
// message of every publisher, in order.
func TestFanoutManyPublishers(t *testing.T) {
	srv := chatdtest.Start(t, benchServerFlags...)
	rep, err := Fanout(context.Background(), FanoutConfig{
		Options:      srvOptions(srv),
		Subscribers:  20,
		Publishers:   5,
		Rates:        []float64{2000}, // 100 messages/s, 20 per publisher
		StepDuration: 500 * time.Millisecond,
		MaxP99:       5 * time.Second,
		AllSteps:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	requireClean(t, rep)
	if rep.Connections.Opened != 20 || rep.Integrity.Publishers != 5 {
		t.Fatalf("%d connections, %d publishers: want 20 (the publishers are subscribers) and 5", rep.Connections.Opened, rep.Integrity.Publishers)
	}
	if rep.Integrity.Delivered != rep.Integrity.Stored*20 {
		t.Fatalf("delivered %d of %d stored × 20 subscribers", rep.Integrity.Delivered, rep.Integrity.Stored)
	}
}

func TestFanoutSmoke(t *testing.T) {
	srv := chatdtest.Start(t, benchServerFlags...)
	rep, err := Fanout(context.Background(), FanoutConfig{
		Options:      srvOptions(srv),
		Subscribers:  20,
		Rates:        []float64{2000, 4000}, // 100 and 200 messages/s
		StepDuration: 500 * time.Millisecond,
		MaxP99:       5 * time.Second,
		AllSteps:     true, // a short step under -race may count as behind
	})
	if err != nil {
		t.Fatal(err)
	}
	m := checkReport(t, rep)
	requireClean(t, rep)
	if len(rep.Steps) != 2 {
		t.Fatalf("%d steps, want 2", len(rep.Steps))
	}
	for _, s := range rep.Steps {
		if s.Latency.Count == 0 || s.Latency.P99MS <= 0 || s.DeliveriesPerSec <= 0 {
			t.Fatalf("step %+v has no figures", s)
		}
		// Both halves of the step were stamped apart and measured.
		if s.FirstHalfP50MS == nil || s.SecondHalfP50MS == nil || *s.FirstHalfP50MS <= 0 || *s.SecondHalfP50MS <= 0 {
			t.Fatalf("step %d: halves' p50 %v, %v", s.Step, s.FirstHalfP50MS, s.SecondHalfP50MS)
		}
	}
	if steps := m["steps"].([]any); steps[0].(map[string]any)["latency"].(map[string]any)["p99_ms"] == nil {
		t.Fatalf("steps in JSON: %v", steps)
	}
	// Warm-up messages are checked but not measured.
	var measured int64
	for _, s := range rep.Steps {
		measured += s.Latency.Count
	}
	if uint64(measured) >= rep.Integrity.Delivered {
		t.Fatalf("%d latency samples for %d deliveries: the warm-up was measured", measured, rep.Integrity.Delivered)
	}
}

func TestRoomsSmoke(t *testing.T) {
	srv := chatdtest.Start(t, benchServerFlags...)
	rep, err := Rooms(context.Background(), RoomsConfig{
		Options:     srvOptions(srv),
		Connections: 30, RoomSize: 5, Rate: 20, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	requireClean(t, rep)
	if rep.Connections.Opened != 30 || len(rep.Steps) != 1 {
		t.Fatalf("connections %+v, steps %d", rep.Connections, len(rep.Steps))
	}
	// Every member receives every message of its room, its own included.
	if rep.Integrity.Expected != rep.Integrity.Stored*5 {
		t.Fatalf("expected %d deliveries for %d messages in rooms of 5", rep.Integrity.Expected, rep.Integrity.Stored)
	}
	// Memory only: acks are timed, and there is no store to sync.
	if s := rep.Steps[0]; s.AckLatency == nil || s.AckLatency.Count == 0 || s.StoreSync != nil {
		t.Fatalf("step %+v", s)
	}
}

func TestCrossNodeSmoke(t *testing.T) {
	srv := chatdtest.Start(t, benchServerFlags...)
	// Two URLs of the same node stand in for two nodes.
	urls := []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)}
	rep, err := CrossNode(context.Background(), CrossNodeConfig{
		Options: withMetrics(testOptions(urls...), srv.AdminURL("/metrics"), srv.AdminURL("/metrics")),
		Rooms:   4, PublishersPerRoom: 1, SubscribersPerRoom: 3, Rate: 50, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	requireClean(t, rep)
	if rep.Integrity.Expected != rep.Integrity.Stored*3 {
		t.Fatalf("expected %d deliveries for %d messages to 3 subscribers", rep.Integrity.Expected, rep.Integrity.Stored)
	}
}

// TestLossIsReported checks that a message a subscriber never gets is
// counted, not hidden: a subscriber that stops reading early misses the
// rest, and the report says so.
func TestLossIsReported(t *testing.T) {
	var tr seqTracker
	for _, s := range []uint64{1, 2, 4, 3, 3, 7} {
		tr.add(s)
	}
	if tr.ooo != 1 || tr.dups != 1 || tr.missing(9) != 4 { // 5, 6 in a gap; 8, 9 never came
		t.Fatalf("tracker %+v, missing %d", tr, tr.missing(9))
	}
	var split seqTracker
	for _, s := range []uint64{1, 10, 5, 2, 9} {
		split.add(s)
	}
	if split.ooo != 3 || split.dups != 0 || split.missing(10) != 5 || len(split.gaps) != 2 {
		t.Fatalf("split tracker %+v", split)
	}
}

func TestParseMessage(t *testing.T) {
	send := appendSend(nil, "bench-x-room-1", 3, 42, 1700000000123456789, 2, 64)
	f, perr := protocol.DecodeClientFrame(send)
	if perr != nil {
		t.Fatalf("our send frame is refused: %v (%s)", perr, send)
	}
	if len(f.Text) != 64 || f.CID != "3.42" || f.Room != "bench-x-room-1" {
		t.Fatalf("send frame %+v", f)
	}
	// What the server sends back for it.
	raw := protocol.Encode(protocol.Message{Type: protocol.TypeMessage, Room: f.Room, Seq: 17, MID: "e-17", From: "b1", CID: f.CID, Text: f.Text, TS: 1})
	want := benchMessage{seq: 17, slot: 3, n: 42, sentNs: 1700000000123456789, step: 2}
	got, ok := parseMessage(raw)
	if !ok || got != want {
		t.Fatalf("parseMessage = %+v, %v; want %+v", got, ok, want)
	}
	slow, ok := parseMessageSlow(raw)
	if !ok || slow != want {
		t.Fatalf("parseMessageSlow = %+v, %v", slow, ok)
	}
	// A message from someone else is tracked by seq but not measured.
	other := protocol.Encode(protocol.Message{Type: protocol.TypeMessage, Room: "r", Seq: 5, MID: "e-5", From: "ann", CID: "c-1", Text: `t="seq":9`, TS: 1})
	if m, ok := parseMessage(other); !ok || m.seq != 5 || m.slot != -1 {
		t.Fatalf("foreign message parsed as %+v, %v", m, ok)
	}
	if _, ok := parseMessage([]byte(`{"type":"message"}`)); ok {
		t.Fatal("a message without seq was accepted by the fast path")
	}
	if allocs := testing.AllocsPerRun(100, func() { parseMessage(raw) }); allocs != 0 {
		t.Fatalf("parseMessage allocates %v times", allocs)
	}
}

func TestCheckTargets(t *testing.T) {
	for _, ok := range []string{"ws://127.0.0.1:8080/ws", "ws://localhost:1/ws", "ws://[::1]:8080/ws", "wss://127.0.0.2/ws"} {
		if err := CheckTargets([]string{ok}, false); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"ws://10.1.2.3:8080/ws", "ws://192.0.2.1/ws", "http://127.0.0.1/ws", "ws:///ws"} {
		if err := CheckTargets([]string{bad}, false); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if err := CheckTargets([]string{"ws://10.1.2.3:8080/ws"}, true); err != nil {
		t.Errorf("--allow-remote: %v", err)
	}
}

func TestLimitsAndProc(t *testing.T) {
	if n, note := capConnections(100, 20000); n != 100 || note != "" {
		t.Fatalf("capConnections(100) = %d, %q", n, note)
	}
	if n, note := capConnections(30000, 20000); n != 20000-fdReserve || !strings.Contains(note, "20000") {
		t.Fatalf("capConnections(30000) = %d, %q", n, note)
	}
	limit, err := RaiseFileLimit()
	if err != nil || limit == 0 {
		t.Fatalf("RaiseFileLimit = %d, %v", limit, err)
	}
	p, err := readProc(os.Getpid())
	if err != nil || p.RSSBytes == 0 {
		t.Fatalf("readProc(self) = %+v, %v", p, err)
	}
	m, err := parseMetrics(strings.NewReader("# HELP x\nprocess_resident_memory_bytes 1.5e+07\nprocess_cpu_seconds_total 2.5\ngo_goroutines{x=\"y\"} 3\ngo_goroutines 12\n" +
		"chatd_store_sync_seconds_bucket{le=\"0.001\"} 3\nchatd_store_sync_seconds_sum 0.25\nchatd_store_sync_seconds_count 10\nchatd_store_sync_writes_sum 400\n"))
	if err != nil || m["process_resident_memory_bytes"] != 1.5e7 || m["process_cpu_seconds_total"] != 2.5 || m["go_goroutines"] != 12 ||
		m["chatd_store_sync_seconds_sum"] != 0.25 || m["chatd_store_sync_seconds_count"] != 10 || m["chatd_store_sync_writes_sum"] != 400 {
		t.Fatalf("parseMetrics = %v, %v", m, err)
	}
}

func TestFindListeningPID(t *testing.T) {
	srv := chatdtest.Start(t)
	pid, err := findListeningPID(srv.URL)
	if err != nil {
		t.Skipf("cannot inspect /proc here: %v", err)
	}
	if pid != os.Getpid() {
		t.Fatalf("found pid %d, want this process %d", pid, os.Getpid())
	}
}
