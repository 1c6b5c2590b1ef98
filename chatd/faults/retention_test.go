//go:build faults

package faults

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/store"
)

// TestDurableRetention runs a chatd process with --history-max-messages and
// one with --history-retention, and reads their rooms back once the store's
// retention pass (every store.DefaultRetentionInterval, a minute) removed
// what the limits say: history stops at the new oldest (more:false there),
// a resume from before it answers recovered:false in the same epoch
// (docs/protocol.md §5.3), a resume after it recovers, and the next message
// takes the next seq. It lives in the fault suite because it waits for
// that pass. (That the disk space comes back is the store's own test,
// TestRetentionFreesDisk.)
func TestDurableRetention(t *testing.T) {
	// Parallel: it mostly waits for the pass, which the damaged data dir
	// test (parallel too) can use to run beside it, after the scenarios.
	t.Parallel()
	// The pass runs a retention interval after the process starts; the
	// bound adds a slow machine's slack.
	within := testtime.Bound(store.DefaultRetentionInterval) + testtime.Timeout
	t.Run("count", func(t *testing.T) {
		t.Parallel()
		const keep, sent = 100, 300
		p := chatdtest.StartProcess(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--history-max-messages", fmt.Sprint(keep))
		ann := chatdtest.Connect(t, p.URL, "ann")
		epoch := ann.Join("counted").Epoch
		for seq := 1; seq <= sent; seq++ {
			ann.Say("counted", fmt.Sprint("m-", seq), fmt.Sprint("text ", seq))
		}
		waitRemoved(t, p, sent-keep, within)
		t.Run("in memory", func(t *testing.T) {
			waitTrimmed(t, p, "counted", epoch, sent-keep+1)
			checkTrimmed(t, p, "counted", epoch, sent-keep+1, sent, false)
		})
		t.Run("after a restart", func(t *testing.T) {
			checkTrimmed(t, p.Restart(), "counted", epoch, sent-keep+1, sent, true)
		})
	})
	t.Run("age", func(t *testing.T) {
		t.Parallel()
		const sent = 50
		p := chatdtest.StartProcess(t, "--data-dir", filepath.Join(t.TempDir(), "data"), "--history-retention", "2s")
		ann := chatdtest.Connect(t, p.URL, "ann")
		epoch := ann.Join("aged").Epoch
		for seq := 1; seq <= sent; seq++ {
			ann.Say("aged", fmt.Sprint("m-", seq), fmt.Sprint("text ", seq))
		}
		// The pass comes at least a minute after the start: every message
		// is older than 2 s by then, so every one goes.
		waitRemoved(t, p, sent, within)
		t.Run("in memory", func(t *testing.T) {
			waitTrimmed(t, p, "aged", epoch, sent+1)
			checkTrimmed(t, p, "aged", epoch, sent+1, sent, false)
		})
		t.Run("after a restart", func(t *testing.T) {
			checkTrimmed(t, p.Restart(), "aged", epoch, sent+1, sent, true)
		})
	})
}

// waitTrimmed waits until a join of room says the kept history starts at
// oldest: the rooms in memory learn of a retention pass right after it
// (chatd/owner's Trim), a moment after the store counts what it removed.
func waitTrimmed(t *testing.T, p *chatdtest.Process, room, epoch string, oldest uint64) {
	t.Helper()
	chatdtest.Eventually(t, chatdtest.Timeout, "the room in memory to forget what retention removed", func() (bool, string) {
		c := chatdtest.Connect(t, p.URL, "peek")
		defer c.Close()
		j := resumeJoin(t, c, room, epoch, 0)
		return j.Oldest == oldest, fmt.Sprintf("joined says oldest %d, want %d", j.Oldest, oldest)
	})
}

// waitRemoved waits until the process's store reports n messages removed
// by retention.
func waitRemoved(t *testing.T, p *chatdtest.Process, n int, within time.Duration) {
	t.Helper()
	start := time.Now()
	chatdtest.Eventually(t, within, "the retention pass", func() (bool, string) {
		v := p.Server().Metric(t, "chatd_store_retention_removed_total")
		return v >= float64(n), fmt.Sprintf("chatd_store_retention_removed_total is %v, want %d", v, n)
	})
	t.Logf("retention removed %d messages %.0fs after the wait began", n, time.Since(start).Seconds())
}

// checkTrimmed checks room as a client sees it once retention kept only
// seqs oldest..head: history pages, resumes before and after oldest, and,
// when send is set, the next send.
func checkTrimmed(t *testing.T, p *chatdtest.Process, room, epoch string, oldest, head uint64, send bool) {
	t.Helper()
	c := chatdtest.Connect(t, p.URL, "reader")
	defer c.Close()
	w := c.WalkHistory(room, 30)
	if len(w.Problems) > 0 {
		t.Fatalf("history after retention: %v", w.Problems)
	}
	if w.First.Epoch != epoch || w.First.Head != head || w.First.Oldest != oldest || uint64(len(w.Messages)) != head-oldest+1 {
		t.Fatalf("history after retention: %d messages, newest page %+v; want seqs %d..%d in epoch %s", len(w.Messages), w.First, oldest, head, epoch)
	}
	for i, m := range w.Messages {
		if m.Seq != oldest+uint64(i) || m.Text != fmt.Sprint("text ", m.Seq) {
			t.Fatalf("history after retention: message %d is seq %d %q", i, m.Seq, m.Text)
		}
	}
	// A page asked for below the oldest kept seq is empty and says so.
	if h := c.History(room, oldest, 10); len(h.Messages) != 0 || h.More || h.Oldest != oldest {
		t.Fatalf("history before %d (the oldest kept): %+v, want no messages, more:false, oldest %d", oldest, h, oldest)
	}
	since := uint64(0)
	if oldest > 2 {
		since = oldest - 2 // seq oldest-1 is gone: too old
	}
	j := resumeJoin(t, c, room, epoch, since)
	if j.Epoch != epoch || j.Recovered == nil || *j.Recovered || j.Oldest != oldest || j.Head != head {
		t.Fatalf("resume from seq %d (before the oldest kept, %d) = %+v; want recovered:false in epoch %s, oldest %d, head %d", since, oldest, j, epoch, oldest, head)
	}
	if head >= oldest {
		d := chatdtest.Connect(t, p.URL, "resumer")
		j := resumeJoin(t, d, room, epoch, head-1)
		if j.Recovered == nil || !*j.Recovered {
			t.Fatalf("resume from seq %d (kept) = %+v, want recovered:true", head-1, j)
		}
		if m := d.NextMessage(); m.Seq != head {
			t.Fatalf("replay from %d began at seq %d", head-1, m.Seq)
		}
		d.Close()
	}
	if !send {
		return
	}
	next := fmt.Sprint("after-", p.Addr, "-", head)
	if a := c.Say(room, next, "text after"); a.Seq <= head || a.Duplicate {
		t.Fatalf("first message after retention: ack %+v, want seq > %d", a, head)
	}
}

func resumeJoin(t *testing.T, c *chatdtest.Client, room, epoch string, since uint64) protocol.Joined {
	t.Helper()
	c.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "r-" + room, Room: room, Since: &since, Epoch: epoch})
	var j protocol.Joined
	c.ExpectDecode(protocol.TypeJoined, &j)
	return j
}
