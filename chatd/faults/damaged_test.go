//go:build faults

package faults

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// storeFixture is a data directory chatd wrote, with what it acknowledged.
type storeFixture struct {
	dir   string
	epoch map[string]string
	heads map[string]uint64
}

// bigText is a message text near the protocol's limit, so that a few
// thousand messages overflow Pebble's 16 MiB memtable and the store holds
// sorted tables as well as a WAL.
var bigText = strings.Repeat("0123456789abcdef", 250)

// writeFixture runs chatd on a new data dir, sends enough messages for
// flushed tables and a live WAL, and stops it with SIGKILL (the WAL's tail
// then holds what was acknowledged last).
func writeFixture(t *testing.T) storeFixture {
	t.Helper()
	f := storeFixture{dir: filepath.Join(t.TempDir(), "data"), epoch: map[string]string{}, heads: map[string]uint64{}}
	p := chatdtest.StartProcess(t, "--data-dir", f.dir)
	// Big messages in "big", pipelined on one connection; a few small
	// rooms written last, so that their messages are in the WAL only.
	c := chatdtest.Connect(t, p.URL, "writer")
	f.epoch["big"] = c.Join("big").Epoch
	const n = 6000
	// At most window sends unanswered: each costs two frames back (the
	// message and its ack), and the connection's queue must not overflow.
	const window = 256
	credit := make(chan struct{}, window)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			credit <- struct{}{}
			if err := c.Send(protocol.ClientFrame{Type: protocol.TypeSend, ID: fmt.Sprint("s", i), Room: "big", CID: fmt.Sprint("b-", i+1), Text: fmt.Sprintf("%d %s", i+1, bigText)}); err != nil {
				t.Errorf("send: %v", err)
				return
			}
		}
	}()
	for range n {
		var a protocol.Ack
		c.ExpectDecode(protocol.TypeAck, &a)
		<-credit
		f.heads["big"] = max(f.heads["big"], a.Seq)
	}
	wg.Wait()
	for i := range 5 {
		room := fmt.Sprint("small-", i)
		f.epoch[room] = c.Join(room).Epoch
		for j := range 20 {
			f.heads[room] = c.Say(room, fmt.Sprintf("%s-%d", room, j+1), fmt.Sprintf("%d small", j+1)).Seq
		}
	}
	p.Kill()
	return f
}

// copyTo copies the fixture's directory (flat: Pebble keeps no
// subdirectories) into a new one and returns it.
func (f storeFixture) copyTo(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(f.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		_ = in.Close()
		_ = out.Close()
	}
	return dst
}

// files lists the fixture's files matching pattern, largest first.
func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	slices.SortFunc(paths, func(a, b string) int { return int(size(b) - size(a)) })
	return paths
}

// newest returns the file matching pattern with the highest number (Pebble
// numbers its files in creation order).
func newest(t *testing.T, dir, pattern string) string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(paths) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	slices.Sort(paths)
	return paths[len(paths)-1]
}

func truncateBy(cut int64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, max(0, st.Size()-cut)); err != nil {
			t.Fatal(err)
		}
	}
}

func truncateTo(frac float64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, int64(float64(st.Size())*frac)); err != nil {
			t.Fatal(err)
		}
	}
}

func flipAt(frac float64) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		off := int64(float64(st.Size()) * frac)
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0x40
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(t *testing.T, path string) {
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedDataDirAtStart (in the fault suite: it writes and reads back
// tens of MiB, too slow for make test on a loaded machine) starts chatd on copies of a data directory it
// wrote (tables, WAL, MANIFEST), each damaged another way: the newest WAL
// cut short by a few bytes (a torn last write) or to half (synced writes
// lost), the biggest table cut, a byte of it flipped, a table deleted, the
// MANIFEST cut or flipped. Each start must either serve every room whole,
// same epoch, every acknowledged message (what Pebble and the store's
// guards recover), or exit with a non-zero status and an error on stderr
// that names the message store, the directory and the problem. A node
// that starts and serves a shorter history, or fails reads of history it
// claims to have, fails the test.
func TestDamagedDataDirAtStart(t *testing.T) {
	t.Parallel()
	f := writeFixture(t)
	ents, _ := os.ReadDir(f.dir)
	var listing []string
	for _, e := range ents {
		info, _ := e.Info()
		listing = append(listing, fmt.Sprintf("%s %d", e.Name(), info.Size()))
	}
	t.Logf("data dir after %d acknowledged messages: %v", f.total(), listing)
	if len(files(t, f.dir, "*.sst")) == 0 {
		t.Fatalf("no sorted table in the data dir (%v): the fixture did not overflow a memtable", listing)
	}

	cases := []struct {
		name string
		// file picks the file to damage in a copy; mustRefuse says the
		// damage removed acknowledged data, so serving is wrong.
		file       func(t *testing.T, dir string) string
		damage     func(t *testing.T, path string)
		mustRefuse bool
		// knownBug, when set, describes why the case fails today.
		knownBug string
	}{
		{"intact", nil, nil, false, ""},
		{"newest WAL cut by 1 byte", func(t *testing.T, d string) string { return newest(t, d, "*.log") }, truncateBy(1), false, ""},
		{"newest WAL cut by 7 bytes", func(t *testing.T, d string) string { return newest(t, d, "*.log") }, truncateBy(7), false, ""},
		{"newest WAL cut to half", func(t *testing.T, d string) string { return newest(t, d, "*.log") }, truncateTo(0.5), true, ""},
		{"newest WAL emptied", func(t *testing.T, d string) string { return newest(t, d, "*.log") }, truncateTo(0), true, ""},
		{"biggest table cut by 100 bytes", func(t *testing.T, d string) string { return files(t, d, "*.sst")[0] }, truncateBy(100), true, ""},
		{"biggest table byte flipped at 50%", func(t *testing.T, d string) string { return files(t, d, "*.sst")[0] }, flipAt(0.5), true, ""},
		{"biggest table byte flipped at 99.9%", func(t *testing.T, d string) string { return files(t, d, "*.sst")[0] }, flipAt(0.999), true, ""},
		{"biggest table deleted", func(t *testing.T, d string) string { return files(t, d, "*.sst")[0] }, remove, true, ""},
		{"MANIFEST cut to half", func(t *testing.T, d string) string { return newest(t, d, "MANIFEST-*") }, truncateTo(0.5), false, ""},
		{"MANIFEST byte flipped at 70%", func(t *testing.T, d string) string { return newest(t, d, "MANIFEST-*") }, flipAt(0.7), false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.knownBug != "" {
				chatdtest.KnownBug(t, c.knownBug)
			}
			dir := f.copyTo(t)
			if c.damage != nil {
				path := c.file(t, dir)
				c.damage(t, path)
				t.Logf("damaged %s", filepath.Base(path))
			}
			p, exit := chatdtest.TryStartProcess(t, "--data-dir", dir)
			if exit != nil {
				if c.damage == nil {
					t.Fatalf("an intact data dir was refused: exit %d\n%s", exit.Code, exit.Stderr)
				}
				checkRefusal(t, dir, *exit)
				return
			}
			problems := f.served(t, p)
			switch {
			case len(problems) > 0:
				t.Errorf("chatd started on the damaged data dir and serves a history that is not what it acknowledged:\n  %s", strings.Join(problems, "\n  "))
			case c.mustRefuse:
				t.Errorf("chatd started on a data dir missing acknowledged data and served everything: the damage did not touch what this test damaged? (check the case)")
			default:
				t.Logf("started and served every acknowledged message")
			}
		})
	}
}

func (f storeFixture) total() uint64 {
	var n uint64
	for _, h := range f.heads {
		n += h
	}
	return n
}

// checkRefusal checks how chatd refused a damaged store: a non-zero exit
// and a log line on stderr naming the store, the directory and the reason.
func checkRefusal(t *testing.T, dir string, exit chatdtest.ExitResult) {
	t.Helper()
	var line string
	for _, l := range strings.Split(exit.Stderr, "\n") {
		if strings.Contains(l, `"msg":"chatd failed"`) {
			line = l
		}
	}
	switch {
	case exit.Code == 0:
		t.Fatalf("chatd exited with status 0 on a damaged store; stderr:\n%s", exit.Stderr)
	case line == "":
		t.Fatalf("chatd exited with %d without a \"chatd failed\" line on stderr:\n%s", exit.Code, exit.Stderr)
	case !strings.Contains(line, "message store") || !strings.Contains(line, dir):
		t.Fatalf("the error does not name the message store and its directory %s: %s", dir, line)
	case !strings.Contains(line, "corrupt") && !strings.Contains(line, "missing") && !strings.Contains(line, "no such file"):
		t.Fatalf("the error does not say what is wrong (corrupt, missing): %s", line)
	}
	t.Logf("refused, exit %d: %s", exit.Code, line)
}

// served reads every room of the fixture through a client and returns
// what differs from what was acknowledged: another epoch, a lower head, a
// history page missing messages or answered with an error.
func (f storeFixture) served(t *testing.T, p *chatdtest.Process) []string {
	t.Helper()
	c := chatdtest.Connect(t, p.URL, "reader")
	var problems []string
	for _, room := range slices.Sorted(mapsKeys(f.heads)) {
		var got []protocol.Message
		var before uint64
		for {
			h, e := c.TryHistory(room, before, 200)
			if e != nil {
				problems = append(problems, fmt.Sprintf("room %s: history before %d answered %s (%s)", room, before, e.Code, e.Message))
				break
			}
			if h.Epoch != f.epoch[room] || h.Head != f.heads[room] || h.Oldest != 1 {
				problems = append(problems, fmt.Sprintf("room %s: epoch %q head %d oldest %d, acknowledged epoch %q head %d from 1", room, h.Epoch, h.Head, h.Oldest, f.epoch[room], f.heads[room]))
				break
			}
			got = append(h.Messages, got...)
			if !h.More || len(h.Messages) == 0 {
				break
			}
			before = h.Messages[0].Seq
		}
		if uint64(len(got)) != f.heads[room] && len(problems) == 0 {
			problems = append(problems, fmt.Sprintf("room %s: history returned %d messages, %d acknowledged", room, len(got), f.heads[room]))
		}
		for i, m := range got {
			if m.Seq != uint64(i+1) || !strings.HasPrefix(m.Text, fmt.Sprint(i+1, " ")) {
				problems = append(problems, fmt.Sprintf("room %s: history message %d is seq %d %.20q", room, i, m.Seq, m.Text))
				break
			}
		}
	}
	return problems
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
