package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// syncBuffer is a bytes.Buffer safe for a writer and a concurrent reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is one chatctl run.
type result struct {
	code   int
	stdout string
	stderr string
}

// chatctl runs the command with an empty environment plus env.
func chatctl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut syncBuffer
	code := run(context.Background(), args, strings.NewReader(""), &out, &errOut, func(k string) string { return env[k] })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// background starts chatctl in a goroutine; wait returns its result.
func background(t *testing.T, args ...string) (out *syncBuffer, wait func() result) {
	t.Helper()
	out = &syncBuffer{}
	var errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), out, &errOut, func(string) string { return "" }) }()
	var once sync.Once
	var res result
	wait = func() result {
		once.Do(func() {
			select {
			case code := <-done:
				res = result{code: code, stdout: out.String(), stderr: errOut.String()}
			case <-time.After(testtime.Bound(60 * time.Second)): // past every --timeout given below
				cancel()
				<-done
				t.Fatalf("chatctl %v did not finish; stdout:\n%s\nstderr:\n%s", args, out.String(), errOut.String())
			}
			cancel()
		})
		return res
	}
	t.Cleanup(func() {
		cancel()
		wait()
	})
	return out, wait
}

// jsonLines decodes every stdout line, failing on anything that is not a
// JSON object with a type.
func jsonLines(t *testing.T, stdout string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("output line %q is not JSON: %v", line, err)
		}
		if _, ok := m["type"].(string); !ok {
			t.Fatalf("output line %q has no type", line)
		}
		recs = append(recs, m)
	}
	return recs
}

func ofType(recs []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, r := range recs {
		if r["type"] == typ {
			out = append(out, r)
		}
	}
	return out
}

func texts(msgs []map[string]any) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprint(m["text"]))
	}
	return out
}

// waitFor polls cond, for what chatctl prints (output has no event to wait
// on), until within has passed: the --timeout of the chatctl that prints it,
// which gives up by then anyway.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	chatdtest.Eventually(t, within, what, func() (bool, string) { return cond(), "not yet" })
}

func TestSendAndTail(t *testing.T) {
	srv := chatdtest.Start(t)
	// Flags after the text, and the URL without its /ws path, are accepted.
	r := chatctl(t, nil, "send", "--url", "ws://"+srv.Addr, "--name", "ann", "--room", "lobby", "hello", "world")
	if r.code != exitOK || !strings.Contains(r.stdout, "sent to lobby: seq 1,") {
		t.Fatalf("send: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = chatctl(t, nil, "send", "--url", srv.URL, "--name", "ann", "--room", "lobby", "--json", "--cid", "c-2", "second")
	if r.code != exitOK {
		t.Fatalf("send --json: code %d, stderr %q", r.code, r.stderr)
	}
	recs := jsonLines(t, r.stdout)
	if len(recs) != 1 || recs[0]["type"] != "ack" || recs[0]["seq"] != 2.0 || recs[0]["cid"] != "c-2" {
		t.Fatalf("send --json printed %v, want one ack with seq 2", recs)
	}
	// Resending the same cid is idempotent.
	r = chatctl(t, nil, "send", "--url", srv.URL, "--name", "ann", "--room", "lobby", "--cid", "c-2", "second")
	if r.code != exitOK || !strings.Contains(r.stdout, "seq 2,") || !strings.Contains(r.stdout, "duplicate") {
		t.Fatalf("resend: code %d, stdout %q", r.code, r.stdout)
	}

	tailTimeout := testtime.Bound(20 * time.Second)
	out, wait := background(t, "tail", "--url", srv.URL, "--name", "bob", "--room", "lobby", "--since", "0", "--count", "3", "--timeout", tailTimeout.String(), "--json")
	waitFor(t, "tail to print the history", tailTimeout, func() bool { return strings.Count(out.String(), `"type":"message"`) == 2 })
	r = chatctl(t, map[string]string{envURL: srv.URL, envName: "carl"}, "send", "--room", "lobby", "third")
	if r.code != exitOK {
		t.Fatalf("send with env defaults: code %d, stderr %q", r.code, r.stderr)
	}
	res := wait()
	if res.code != exitOK {
		t.Fatalf("tail: code %d, stderr %q", res.code, res.stderr)
	}
	recs = jsonLines(t, res.stdout)
	if c := ofType(recs, "chatctl.connected"); len(c) != 1 || c[0]["user"] != "bob" {
		t.Fatalf("tail connected records %v", c)
	}
	msgs := ofType(recs, "message")
	if got := texts(msgs); strings.Join(got, "|") != "hello world|second|third" {
		t.Fatalf("tail printed %q", got)
	}
	if msgs[2]["from"] != "carl" || msgs[2]["seq"] != 3.0 {
		t.Fatalf("third message %v", msgs[2])
	}
}

// awaitPresent returns once user is in room as obs sees it: listed in the
// joined frame obs got, or announced by a presence frame after it. within is
// how long the user has to get there.
func awaitPresent(t *testing.T, obs *chatdtest.Client, joined protocol.Joined, user string, within time.Duration) {
	t.Helper()
	if slices.Contains(joined.Present, user) {
		return
	}
	_ = obs.SetReadDeadline(time.Now().Add(within))
	for {
		f, err := obs.Read()
		if err != nil {
			t.Fatalf("waiting for %s to join %s: %v", user, joined.Room, err)
		}
		var p protocol.Presence
		if f.Type == protocol.TypePresence && f.Decode(&p) == nil && p.Room == joined.Room && slices.Contains(p.Joined, user) {
			return
		}
	}
}

func TestTailHumanOutputAndTimeouts(t *testing.T) {
	srv := chatdtest.Start(t)
	tailTimeout := testtime.Bound(20 * time.Second)
	out, wait := background(t, "tail", "--url", srv.URL, "--room", "lobby", "--count", "1", "--timeout", tailTimeout.String())
	obs := chatdtest.Connect(t, srv.URL, "obs")
	// Wait until tail's user is present, so that the message is live. tail
	// gives up after its --timeout, so that is how long it has to join.
	awaitPresent(t, obs, obs.Join("lobby"), "chatctl", tailTimeout)
	obs.Say("lobby", "c1", "line one\nline two")
	res := wait()
	if res.code != exitOK {
		t.Fatalf("tail: code %d, stderr %q", res.code, res.stderr)
	}
	if !strings.Contains(res.stdout, "lobby #1 obs: line one\n    line two") {
		t.Fatalf("human output %q", out.String())
	}

	// --timeout alone is a normal end; with --count unmet it is exit 5.
	r := chatctl(t, nil, "tail", "--url", srv.URL, "--room", "quiet", "--timeout", "300ms")
	if r.code != exitOK {
		t.Fatalf("tail --timeout: code %d, stderr %q", r.code, r.stderr)
	}
	r = chatctl(t, nil, "tail", "--url", srv.URL, "--room", "quiet", "--count", "1", "--timeout", "300ms", "--json")
	if r.code != exitTimeout {
		t.Fatalf("tail --count --timeout: code %d, want %d", r.code, exitTimeout)
	}
	errs := ofType(jsonLines(t, r.stdout), "chatctl.error")
	if len(errs) != 1 || errs[0]["code"] != "timeout" || errs[0]["exit"] != 5.0 {
		t.Fatalf("timeout records %v", errs)
	}
}

// TestTailSurvivesRestart stops the node under a tail (close 1012) and
// starts another on the same address: tail reconnects, learns that the room
// was recreated (new epoch, recovered=false), says so and reloads it.
func TestTailSurvivesRestart(t *testing.T) {
	srv1 := chatdtest.Start(t)
	tailTimeout := testtime.Bound(45 * time.Second)
	out, wait := background(t, "tail", "--url", srv1.URL, "--name", "bob", "--room", "lobby", "--since", "0", "--count", "3", "--timeout", tailTimeout.String(), "--json")
	ann := chatdtest.Connect(t, srv1.URL, "ann")
	ann.Join("lobby")
	ann.Say("lobby", "b1", "before restart")
	waitFor(t, "the first message", tailTimeout, func() bool { return strings.Contains(out.String(), "before restart") })

	srv1.Stop()
	waitFor(t, "the reconnect notice", tailTimeout, func() bool { return strings.Contains(out.String(), "chatctl.reconnecting") })
	srv2 := chatdtest.StartOn(t, srv1.Addr)
	ann2 := chatdtest.Connect(t, srv2.URL, "ann")
	ann2.Join("lobby")
	ann2.Say("lobby", "a1", "after restart 1")
	ann2.Say("lobby", "a2", "after restart 2")

	res := wait()
	if res.code != exitOK {
		t.Fatalf("tail: code %d, stdout %s, stderr %q", res.code, res.stdout, res.stderr)
	}
	recs := jsonLines(t, res.stdout)
	if got := texts(ofType(recs, "message")); strings.Join(got, "|") != "before restart|after restart 1|after restart 2" {
		t.Fatalf("messages %q", got)
	}
	rec := ofType(recs, "chatctl.reconnecting")
	if len(rec) == 0 || !strings.Contains(fmt.Sprint(rec[0]["reason"]), "1012") {
		t.Fatalf("reconnecting records %v, want a first one naming close 1012", rec)
	}
	resumed := ofType(recs, "chatctl.resumed")
	if len(resumed) != 1 || resumed[0]["outcome"] != "new-epoch" || resumed[0]["recovered"] != false || resumed[0]["since"] != 1.0 {
		t.Fatalf("resumed records %v, want one new-epoch resume after seq 1", resumed)
	}
	if len(ofType(recs, "chatctl.connected")) != 2 {
		t.Fatalf("want two connected records in %v", recs)
	}
}

func TestTailResumeFromCursor(t *testing.T) {
	srv := chatdtest.Start(t, "--history-size", "3")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	j := ann.Join("lobby")
	for i := 1; i <= 5; i++ {
		ann.Say("lobby", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	// Resume within the kept history: recovered, replay 4 and 5.
	r := chatctl(t, nil, "tail", "--url", srv.URL, "--room", "lobby", "--since", "3", "--epoch", j.Epoch, "--count", "2", "--timeout", chatdtest.Timeout.String(), "--json")
	if r.code != exitOK {
		t.Fatalf("code %d, stderr %q", r.code, r.stderr)
	}
	recs := jsonLines(t, r.stdout)
	if got := strings.Join(texts(ofType(recs, "message")), ","); got != "m4,m5" {
		t.Fatalf("recovered resume printed %s", got)
	}
	if res := ofType(recs, "chatctl.resumed"); len(res) != 1 || res[0]["outcome"] != "recovered" {
		t.Fatalf("resumed %v", res)
	}
	// Resume from before the kept history (3..5): a gap notice for 2, then 3..5.
	r = chatctl(t, nil, "tail", "--url", srv.URL, "--room", "lobby", "--since", "1", "--epoch", j.Epoch, "--count", "3", "--timeout", chatdtest.Timeout.String(), "--json")
	if r.code != exitOK {
		t.Fatalf("code %d, stderr %q", r.code, r.stderr)
	}
	recs = jsonLines(t, r.stdout)
	if got := strings.Join(texts(ofType(recs, "message")), ","); got != "m3,m4,m5" {
		t.Fatalf("gap resume printed %s", got)
	}
	gaps := ofType(recs, "chatctl.gap")
	if res := ofType(recs, "chatctl.resumed"); len(res) != 1 || res[0]["outcome"] != "gap" || len(gaps) != 1 || gaps[0]["from"] != 2.0 || gaps[0]["to"] != 2.0 {
		t.Fatalf("resumed %v, gaps %v", res, gaps)
	}
	// A stale epoch: the room's kept history is reloaded, with a notice.
	r = chatctl(t, nil, "tail", "--url", srv.URL, "--room", "lobby", "--since", "4", "--epoch", "stale", "--count", "3", "--timeout", chatdtest.Timeout.String())
	if r.code != exitOK || !strings.Contains(r.stderr, "the room was recreated") || !strings.Contains(r.stderr, "#1 to #2 are no longer kept") {
		t.Fatalf("stale epoch: code %d, stderr %q", r.code, r.stderr)
	}
	if n := strings.Count(r.stdout, "lobby #"); n != 3 {
		t.Fatalf("stale epoch printed %d messages:\n%s", n, r.stdout)
	}
}

func TestHistory(t *testing.T) {
	srv := chatdtest.Start(t, "--rate", "100000", "--rate-burst", "100000")
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")
	for i := 1; i <= 250; i++ {
		ann.Say("lobby", fmt.Sprint("c", i), fmt.Sprint("m", i))
	}
	r := chatctl(t, nil, "history", "--url", srv.URL, "--room", "lobby", "--limit", "3")
	if r.code != exitOK || strings.Count(r.stdout, "\n") != 3 || !strings.Contains(r.stdout, "lobby #248 ann: m248") ||
		!strings.Contains(r.stderr, "older messages exist (use --before 248)") {
		t.Fatalf("history: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// More than one page (200 per request), before a given seq.
	r = chatctl(t, nil, "history", "--url", srv.URL, "--room", "lobby", "--limit", "220", "--before", "241", "--json")
	if r.code != exitOK {
		t.Fatalf("history --json: code %d, stderr %q", r.code, r.stderr)
	}
	recs := jsonLines(t, r.stdout)
	msgs := ofType(recs, "message")
	if len(msgs) != 220 {
		t.Fatalf("got %d messages, want 220", len(msgs))
	}
	for i, m := range msgs {
		if m["seq"] != float64(21+i) {
			t.Fatalf("message %d has seq %v, want %d", i, m["seq"], 21+i)
		}
	}
	end := ofType(recs, "chatctl.history")
	if len(end) != 1 || end[0]["count"] != 220.0 || end[0]["more"] != true || end[0]["head"] != 250.0 || recs[len(recs)-1]["type"] != "chatctl.history" {
		t.Fatalf("history record %v", end)
	}
	r = chatctl(t, nil, "history", "--url", srv.URL, "--room", "empty", "--json")
	if r.code != exitOK || len(ofType(jsonLines(t, r.stdout), "message")) != 0 {
		t.Fatalf("empty room: code %d, stdout %q", r.code, r.stdout)
	}
}

func TestPresenceAndDM(t *testing.T) {
	srv := chatdtest.Start(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")
	r := chatctl(t, nil, "presence", "--url", srv.URL, "--name", "ann", "--room", "lobby")
	if r.code != exitOK || r.stdout != "lobby: 2 present\n  ann (you)\n  bob\n" {
		t.Fatalf("presence: code %d, stdout %q", r.code, r.stdout)
	}
	r = chatctl(t, nil, "presence", "--url", srv.URL, "--name", "ann", "--room", "lobby", "--json")
	recs := jsonLines(t, r.stdout)
	if r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "joined" || fmt.Sprint(recs[0]["present"]) != "[ann bob]" {
		t.Fatalf("presence --json: code %d, %v", r.code, recs)
	}

	r = chatctl(t, nil, "dm", "--url", srv.URL, "--name", "ann", "--to", "bob", "hi", "bob")
	if r.code != exitOK || !strings.Contains(r.stdout, "dm to bob: delivered to 1 connection(s)") {
		t.Fatalf("dm: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var dm protocol.DirectMessage
	bob.ExpectDecode(protocol.TypeDM, &dm)
	if dm.From != "ann" || dm.Text != "hi bob" {
		t.Fatalf("bob got %+v", dm)
	}
	r = chatctl(t, nil, "dm", "--url", srv.URL, "--to", "nobody", "--json", "hello?")
	recs = jsonLines(t, r.stdout)
	if r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "ack" || recs[0]["delivered"] != 0.0 {
		t.Fatalf("dm to nobody: code %d, %v", r.code, recs)
	}
}

func TestExitCodes(t *testing.T) {
	srv := chatdtest.Start(t, "--max-text-bytes", "10")
	cases := []struct {
		name string
		args []string
		exit int
		code string // chatctl.error code
	}{
		{"unknown command", []string{"frobnicate"}, exitUsage, ""},
		{"unknown flag", []string{"send", "--nope"}, exitUsage, ""},
		{"no room", []string{"send", "--url", srv.URL, "hi"}, exitUsage, "usage"},
		{"invalid room", []string{"send", "--url", srv.URL, "--room", "a b", "hi"}, exitUsage, "usage"},
		{"no text", []string{"send", "--url", srv.URL, "--room", "lobby"}, exitUsage, "usage"},
		{"bad url", []string{"history", "--url", "ftp://x", "--room", "lobby"}, exitUsage, "usage"},
		{"server error", []string{"send", "--url", srv.URL, "--room", "lobby", "far too long a text"}, exitServerError, "text_too_long"},
		{"bad name", []string{"send", "--url", srv.URL, "--name", "no spaces please", "--room", "lobby", "hi"}, exitAuth, "auth_failed"},
		{"connect failed", []string{"send", "--url", "ws://" + closedAddr(t) + "/ws", "--room", "lobby", "hi"}, exitFailure, "connect_failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := chatctl(t, nil, append(c.args, "--json")...)
			if r.code != c.exit {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, c.exit, r.stderr)
			}
			if r.stderr == "" {
				t.Fatal("no error message on stderr")
			}
			if c.code == "" {
				return
			}
			errs := ofType(jsonLines(t, r.stdout), "chatctl.error")
			if len(errs) != 1 || errs[0]["code"] != c.code || errs[0]["exit"] != float64(c.exit) {
				t.Fatalf("error records %v, want code %s", errs, c.code)
			}
			if c.exit == exitAuth && errs[0]["close_code"] != 4001.0 {
				t.Fatalf("auth failure without close_code 4001: %v", errs[0])
			}
		})
	}

	jwt := chatdtest.StartWith(t, []string{"--jwt-secret-file", chatdtest.SecretFile(t, "jwt-secret", strings.Repeat("k", 32))})
	r := chatctl(t, nil, "presence", "--url", jwt.URL, "--room", "lobby")
	if r.code != exitAuth || !strings.Contains(r.stderr, "close 4001: anonymous access disabled") {
		t.Fatalf("anonymous on a token-only server: code %d, stderr %q", r.code, r.stderr)
	}
}

func TestHelp(t *testing.T) {
	r := chatctl(t, nil, "help")
	for _, want := range []string{"Exit codes (stable)", "chatctl.resumed", "CHATCTL_URL", "tail"} {
		if r.code != exitOK || !strings.Contains(r.stdout, want) {
			t.Fatalf("help: code %d, missing %q", r.code, want)
		}
	}
	for _, c := range commands {
		r := chatctl(t, nil, c.name, "--help")
		if r.code != exitOK || !strings.Contains(r.stdout, "Usage: chatctl "+c.name) || !strings.Contains(r.stdout, "-timeout") {
			t.Fatalf("%s --help: code %d, stdout %q", c.name, r.code, r.stdout)
		}
	}
	if r := chatctl(t, nil); r.code != exitUsage {
		t.Fatalf("no arguments: code %d", r.code)
	}
}

func TestSendFromStdin(t *testing.T) {
	srv := chatdtest.Start(t)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"send", "--url", srv.URL, "--room", "lobby", "--json", "-"},
		strings.NewReader("from stdin\n"), &out, &errOut, func(string) string { return "" })
	if code != exitOK {
		t.Fatalf("code %d, stderr %q", code, errOut.String())
	}
	r := chatctl(t, nil, "history", "--url", srv.URL, "--room", "lobby", "--json")
	if msgs := ofType(jsonLines(t, r.stdout), "message"); len(msgs) != 1 || msgs[0]["text"] != "from stdin" {
		t.Fatalf("history %v", msgs)
	}
}

// closedAddr returns a loopback address nobody listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
