package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// storedNode starts chatd with its history on disk and only 20 messages per
// room in memory, so that all but the newest pages are read from the store.
func storedNode(t *testing.T, flags ...string) *chatdtest.Server {
	t.Helper()
	return chatdtest.Start(t, append([]string{"--data-dir", t.TempDir(), "--history-size", "20",
		"--storage-reserve-bytes", "0", "--rate", "1000", "--rate-burst", "1000"}, flags...)...)
}

// liveRoom has ann post n messages to room while bob, subscribed, records
// every message frame exactly as the protocol delivered it. It returns
// bob's frames and the room's epoch.
func liveRoom(t *testing.T, url, room string, n int) ([][]byte, string) {
	t.Helper()
	bob := chatdtest.Connect(t, url, "bob")
	j := bob.Join(room)
	ann := chatdtest.Connect(t, url, "ann")
	ann.Join(room)
	for i := 1; i <= n; i++ {
		// Texts the encoder must escape: the export must keep the bytes.
		ann.Say(room, fmt.Sprintf("c%d", i), fmt.Sprintf("message %d: \"quoted\" <b>&</b> ünïcødé\nline two", i))
	}
	var frames [][]byte
	for len(frames) < n {
		f := bob.Expect(protocol.TypeMessage)
		frames = append(frames, bytes.Clone(f.Raw))
	}
	return frames, j.Epoch
}

// exportLines splits an export into its message lines and its final
// chatctl.export record, failing on anything else.
func exportLines(t *testing.T, out string) ([][]byte, map[string]any) {
	t.Helper()
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("the export does not end with a newline: %q", lastN(out, 200))
	}
	lines := bytes.Split([]byte(strings.TrimSuffix(out, "\n")), []byte{'\n'})
	var sum map[string]any
	if err := json.Unmarshal(lines[len(lines)-1], &sum); err != nil || sum["type"] != "chatctl.export" {
		t.Fatalf("the export's last line is %q, want the chatctl.export record", lines[len(lines)-1])
	}
	msgs := lines[:len(lines)-1]
	for _, l := range msgs {
		var m struct{ Type string }
		if err := json.Unmarshal(l, &m); err != nil || m.Type != protocol.TypeMessage {
			t.Fatalf("export line %q is not a message", l)
		}
	}
	return msgs, sum
}

func lastN(s string, n int) string { return s[max(0, len(s)-n):] }

// checkSummary compares the chatctl.export record with what it must say.
func checkSummary(t *testing.T, sum map[string]any, want exportRecord) {
	t.Helper()
	b, _ := json.Marshal(want)
	var w map[string]any
	_ = json.Unmarshal(b, &w)
	for k, v := range w {
		if sum[k] != v {
			t.Errorf("summary %s = %v, want %v (summary %v)", k, sum[k], v, sum)
		}
	}
}

// TestExportStoredRoom: a room of 450 messages on a node that keeps 20 in
// memory exports as 450 lines, oldest first, each byte for byte the message
// frame a subscriber received live, then the summary; to a file (renamed
// into place, nothing else left in its directory) and to stdout alike.
// --since/--epoch export the rest of a room after an earlier export.
func TestExportStoredRoom(t *testing.T) {
	srv := storedNode(t)
	const total = 450 // not a multiple of the page: a short last window
	live, epoch := liveRoom(t, srv.URL, "archive", total)

	dir := t.TempDir()
	file := filepath.Join(dir, "archive.jsonl")
	r := chatctl(t, nil, "export", "--url", srv.URL, "--room", "archive", "--out", file)
	if r.code != exitOK {
		t.Fatalf("export: exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, fmt.Sprintf("exported %d messages of archive", total)) {
		t.Errorf("export's stderr %q does not sum it up", r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("an export to a file printed %q on stdout", r.stdout)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "archive.jsonl" {
		t.Errorf("the export's directory holds %v, want only archive.jsonl", entries)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	msgs, sum := exportLines(t, string(data))
	if len(msgs) != total {
		t.Fatalf("the export holds %d messages, want %d", len(msgs), total)
	}
	for i := range msgs {
		if !bytes.Equal(msgs[i], live[i]) {
			t.Fatalf("export line %d is\n%s\nbut the protocol delivered\n%s", i+1, msgs[i], live[i])
		}
	}
	checkSummary(t, sum, exportRecord{Type: "chatctl.export", Room: "archive", Epoch: epoch, Oldest: 1, Head: total, First: 1, Last: total, Count: total})

	r = chatctl(t, nil, "export", "--url", srv.URL, "--room", "archive", "--json")
	if r.code != exitOK {
		t.Fatalf("export to stdout: exit %d, stderr %q", r.code, r.stderr)
	}
	if r.stdout != string(data) {
		t.Errorf("the export to stdout differs from the export to a file")
	}

	// The rest after an earlier export's head.
	r = chatctl(t, nil, "export", "--url", srv.URL, "--room", "archive", "--since", "399", "--epoch", epoch)
	if r.code != exitOK {
		t.Fatalf("export --since: exit %d, stderr %q", r.code, r.stderr)
	}
	msgs, sum = exportLines(t, r.stdout)
	if len(msgs) != total-399 || !bytes.Equal(msgs[0], live[399]) || !bytes.Equal(msgs[len(msgs)-1], live[total-1]) {
		t.Fatalf("export --since 399 holds %d messages from %s, want %d from seq 400", len(msgs), msgs[0], total-399)
	}
	checkSummary(t, sum, exportRecord{Type: "chatctl.export", Room: "archive", Epoch: epoch, Oldest: 1, Head: total, Since: 399, First: 400, Last: total, Count: total - 399})

	r = chatctl(t, nil, "export", "--url", srv.URL, "--room", "archive", "--since", "399", "--epoch", "not-"+epoch, "--out", filepath.Join(dir, "other.jsonl"))
	if r.code != exitFailure || !strings.Contains(r.stderr, "epoch") {
		t.Fatalf("export --since in another epoch: exit %d, stderr %q; want exit %d naming the epoch", r.code, r.stderr, exitFailure)
	}
	if errs := ofType(jsonLines(t, r.stdout), "chatctl.error"); len(errs) != 1 || errs[0]["code"] != "epoch_changed" {
		t.Errorf("export --since in another epoch: error records %v, want epoch_changed", errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.jsonl")); !os.IsNotExist(err) {
		t.Errorf("a failed export left its file: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("a failed export left files behind: %v", entries)
	}
}

// TestExportUnknownRoom: a room nobody has used exports nothing, says so,
// and creates no room.
func TestExportUnknownRoom(t *testing.T) {
	srv := storedNode(t)
	r := chatctl(t, nil, "export", "--url", srv.URL, "--room", "nowhere")
	if r.code != exitOK {
		t.Fatalf("export of an unknown room: exit %d, stderr %q", r.code, r.stderr)
	}
	msgs, sum := exportLines(t, r.stdout)
	if len(msgs) != 0 {
		t.Errorf("an unknown room exported %d messages", len(msgs))
	}
	checkSummary(t, sum, exportRecord{Type: "chatctl.export", Room: "nowhere", Epoch: "", Oldest: 1})
	if !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("export of an unknown room: stderr %q does not say the room does not exist", r.stderr)
	}
	c := chatdtest.Connect(t, srv.URL, "carl")
	c.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "nowhere"})
	var p protocol.HistoryPage
	c.ExpectDecode(protocol.TypeHistory, &p)
	if p.Epoch != "" {
		t.Errorf("the export created the room: epoch %q", p.Epoch)
	}
}

// TestExportForbidden: a token whose rooms claim leaves the room out is
// refused by the server: exit 3 with its code, and no file.
func TestExportForbidden(t *testing.T) {
	const secret = "export-test-secret-0123456789abcdefghij"
	srv := chatdtest.StartWith(t, []string{"--node-name", "test-node", "--log-level", "error", "--jwt-secret-file", chatdtest.SecretFile(t, "jwt-secret", secret),
		"--data-dir", t.TempDir(), "--storage-reserve-bytes", "0"})
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "auditor", "exp": time.Now().Add(time.Hour).Unix(), "rooms": []string{"public-*"},
	}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "secret.jsonl")
	r := chatctl(t, map[string]string{envToken: tok}, "export", "--url", srv.URL, "--room", "secret", "--out", file)
	if r.code != exitServerError || !strings.Contains(r.stderr, "forbidden") {
		t.Fatalf("export of a forbidden room: exit %d, stderr %q; want exit %d, forbidden", r.code, r.stderr, exitServerError)
	}
	if errs := ofType(jsonLines(t, r.stdout), "chatctl.error"); len(errs) != 1 || errs[0]["code"] != "forbidden" || errs[0]["exit"] != float64(exitServerError) {
		t.Errorf("error records %v, want one with code forbidden, exit 3", errs)
	}
	if entries, _ := os.ReadDir(filepath.Dir(file)); len(entries) != 0 {
		t.Errorf("a refused export left files: %v", entries)
	}
	r = chatctl(t, map[string]string{envToken: tok}, "export", "--url", srv.URL, "--room", "public-1")
	if r.code != exitOK {
		t.Errorf("export of an allowed room: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestExportRetriesAndResumes: on the way to the node the first pages are
// refused with unavailable, and the connection is cut once the export has
// written some pages; the export asks again after a backoff, reconnects,
// goes on from where it stopped, and still holds every message once, in
// order.
func TestExportRetriesAndResumes(t *testing.T) {
	srv := storedNode(t)
	// Ten windows of 200: the ninth is asked for only once the first is
	// written (exportDepth are asked for ahead).
	const total = 10*exportPage - 50
	live, epoch := liveRoom(t, srv.URL, "archive", total)
	proxy := chatdtest.StartFaultProxy(t, srv.Addr)
	history := func(f protocol.ClientFrame) bool { return f.Type == protocol.TypeHistory && f.Before > 0 }
	proxy.Refuse(history, protocol.CodeUnavailable, protocol.CodeUnavailable)
	ninth := uint64(exportDepth*exportPage + exportPage + 1)
	proxy.CutOn(func(f protocol.ClientFrame) bool { return history(f) && f.Before == ninth })

	r := chatctl(t, nil, "export", "--url", proxy.URL, "--room", "archive")
	if r.code != exitOK {
		t.Fatalf("export: exit %d, stderr %q", r.code, r.stderr)
	}
	var msgs [][]byte
	var sum map[string]any
	var notices []map[string]any
	for _, l := range strings.SplitAfter(r.stdout, "\n") {
		var rec map[string]any
		if l == "" || json.Unmarshal([]byte(l), &rec) != nil {
			continue
		}
		switch rec["type"] {
		case protocol.TypeMessage:
			msgs = append(msgs, []byte(strings.TrimSuffix(l, "\n")))
		case "chatctl.export":
			sum = rec
		default:
			notices = append(notices, rec)
		}
	}
	if !slices.EqualFunc(msgs, live, bytes.Equal) {
		t.Fatalf("the export holds %d messages, not the %d delivered live, once each in order", len(msgs), total)
	}
	checkSummary(t, sum, exportRecord{Type: "chatctl.export", Room: "archive", Epoch: epoch, Oldest: 1, Head: total, First: 1, Last: total, Count: total})
	var retries, reconnects int
	for _, n := range notices {
		switch n["type"] {
		case "chatctl.retrying":
			retries++
			if n["code"] != protocol.CodeUnavailable {
				t.Errorf("retry notice %v, want code unavailable", n)
			}
		case "chatctl.reconnecting":
			reconnects++
		}
	}
	if retries != 2 || reconnects != 1 {
		t.Errorf("notices %v: want 2 chatctl.retrying and 1 chatctl.reconnecting", notices)
	}
	// The second connection went on after what the first had written: the
	// first window, written before the ninth was asked for, was not asked
	// for again.
	asked := map[uint64]int{}
	cut := false
	for _, s := range proxy.Seen() {
		cut = cut || s.Cut
		if history(s.Frame) && s.Refused == "" && !s.Cut {
			asked[s.Frame.Before]++
		}
	}
	if !cut {
		t.Fatal("the proxy never cut the connection")
	}
	if n := asked[exportPage+1]; n != 1 {
		t.Errorf("the first window reached the node %d times, want once", n)
	}
	for before, n := range asked {
		if n > 2 {
			t.Errorf("the window before %d reached the node %d times", before, n)
		}
	}
}

// TestExportWindowChecks: a page is written only when it is the window
// asked for, gapless, in the export's epoch; what retention removed before
// the export reached it is counted, anything else fails the export.
func TestExportWindowChecks(t *testing.T) {
	msg := func(seq uint64) json.RawMessage {
		return json.RawMessage(fmt.Sprintf(`{"type":"message","room":"r","seq":%d,"mid":"e-%d","from":"u","cid":"c%d","text":"t","ts":1}`, seq, seq, seq))
	}
	page := func(epoch string, oldest uint64, seqs ...uint64) *historyPage {
		p := &historyPage{Epoch: epoch, Head: 100, Oldest: oldest, Messages: []json.RawMessage{}}
		for _, s := range seqs {
			p.Messages = append(p.Messages, msg(s))
		}
		return p
	}
	cases := []struct {
		name    string
		page    *historyPage
		code    string // "" when written
		count   uint64
		removed uint64
	}{
		{"whole window", page("e", 1, 11, 12, 13, 14, 15), "", 5, 0},
		{"front removed by retention", page("e", 13, 13, 14, 15), "", 3, 2},
		{"all removed by retention", page("e", 40), "", 0, 5},
		{"other epoch", page("f", 1, 11, 12, 13, 14, 15), "epoch_changed", 0, 0},
		{"gap inside", page("e", 1, 11, 12, 14, 15), "unexpected_reply", 0, 0},
		{"short at the top", page("e", 1, 11, 12, 13, 14), "unexpected_reply", 0, 0},
		{"beyond the window", page("e", 1, 12, 13, 14, 15, 16), "unexpected_reply", 0, 0},
		{"below the window", page("e", 1, 10, 11, 12, 13, 14, 15), "unexpected_reply", 0, 0},
		{"empty though kept", page("e", 1), "unexpected_reply", 0, 0},
		{"front missing though kept", page("e", 1, 13, 14, 15), "unexpected_reply", 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			x := &exporter{room: "r", epoch: "e", head: 100, next: 11, w: &out, e: &env{out: newPrinter(&bytes.Buffer{}, &bytes.Buffer{}, true)}}
			w := newWindow(11, 15)
			w.page = c.page
			err := x.write(w)
			if c.code != "" {
				ce, ok := err.(*cliError)
				if !ok || ce.code != c.code || ce.exit != exitFailure {
					t.Fatalf("write: %v, want a %s failure (exit %d)", err, c.code, exitFailure)
				}
				if out.Len() != 0 {
					t.Fatalf("a refused page wrote %q", out.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("write: %v", err)
			}
			if x.count != c.count || x.removed != c.removed || x.next != 16 {
				t.Fatalf("count %d, removed %d, next %d; want %d, %d, 16", x.count, x.removed, x.next, c.count, c.removed)
			}
			if lines := strings.Count(out.String(), "\n"); uint64(lines) != c.count {
				t.Fatalf("wrote %d lines, want %d", lines, c.count)
			}
		})
	}
}
