package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// answer returns c's next ack or error frame, skipping the messages,
// presence and typing frames in between.
func answer(t *testing.T, c *chatdtest.Client) client.Frame {
	t.Helper()
	for {
		f := c.Next()
		switch f.Type {
		case protocol.TypeMessage, protocol.TypePresence, protocol.TypeTyping:
		default:
			return f
		}
	}
}

// TestDiskFullNode: a single node whose --data-dir is on a small tmpfs
// that the test fills (a ballast file beside the store) until free space is
// below --storage-reserve-bytes. Sends are then refused with storage_full
// (docs/protocol.md §7), nothing refused is acknowledged, while history,
// joins and resumes keep working; once the ballast is deleted the same cid
// is accepted at the next seq without a restart; and after a SIGKILL and a
// restart every acknowledged message is still there.
func TestDiskFullNode(t *testing.T) {
	t.Parallel()
	mnt := chatdtest.MountTmpfs(t, "64m")
	const reserve = 16 << 20
	data := filepath.Join(mnt, "data")
	p := chatdtest.StartProcess(t, "--data-dir", data, "--storage-reserve-bytes", fmt.Sprint(reserve))
	ann := chatdtest.Connect(t, p.URL, "ann")
	epoch := ann.Join("r").Epoch
	sendN(t, ann, "r", "m", 1, 10)
	acked := uint64(10)

	ballast := filepath.Join(mnt, "ballast")
	size := chatdtest.FillTo(t, ballast, reserve/2)
	t.Logf("ballast of %d MiB: %d KiB free, reserve %d KiB", size>>20, chatdtest.FreeBytes(t, mnt)>>10, reserve>>10)

	// The store looks at the free space at most every 10 ms or 256 KiB:
	// a send or two may still pass; past a bound, none may.
	var refused *protocol.Error
	var refusedCID string
	deadline := time.Now().Add(testtime.Timeout)
	for refused == nil {
		if time.Now().After(deadline) {
			t.Fatalf("sends still acknowledged %v after the disk filled (acked through seq %d)", testtime.Timeout, acked)
		}
		cid := fmt.Sprintf("m-%d", acked+1)
		ann.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s-" + cid, Room: "r", CID: cid, Text: "text of " + cid})
		f := answer(t, ann)
		switch f.Type {
		case protocol.TypeAck:
			var a protocol.Ack
			_ = f.Decode(&a)
			if a.Seq != acked+1 {
				t.Fatalf("ack %+v, want seq %d", a, acked+1)
			}
			acked++
		case protocol.TypeError:
			refused = new(protocol.Error)
			_ = f.Decode(refused)
			refusedCID = cid
		default:
			t.Fatalf("answer to a send: %s", f.Raw)
		}
	}
	if refused.Code != protocol.CodeStorageFull || refused.ID != "s-"+refusedCID || refused.Room != "r" {
		t.Fatalf("a send on a full disk was answered %+v, want code %s for request s-%s in room r", refused, protocol.CodeStorageFull, refusedCID)
	}
	t.Logf("refused after seq %d: %s (%s)", acked, refused.Code, refused.Message)
	if n := p.Server().Metric(t, `chatd_store_writes_refused_total{reason="full"}`); n < 1 {
		t.Errorf("chatd_store_writes_refused_total{reason=\"full\"} = %v after a refusal", n)
	}
	// Still refused, and nothing was stored meanwhile.
	for i := range 3 {
		ann.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: fmt.Sprint("again-", i), Room: "r", CID: refusedCID, Text: "text of " + refusedCID})
		ann.ExpectError(protocol.CodeStorageFull)
	}

	// Reads, joins and resumes work on a full disk.
	bob := chatdtest.Connect(t, p.URL, "bob")
	j := bob.Join("r")
	if j.Epoch != epoch || j.Head != acked {
		t.Fatalf("join on a full disk = %+v, want epoch %s head %d", j, epoch, acked)
	}
	w := bob.WalkHistory("r", 3)
	if len(w.Problems) > 0 || uint64(len(w.Messages)) != acked || w.First.Head != acked {
		t.Fatalf("history on a full disk: %d messages, head %d, problems %v; want %d", len(w.Messages), w.First.Head, w.Problems, acked)
	}
	carl := chatdtest.Connect(t, p.URL, "carl")
	if r := resume(t, carl, "r", epoch, acked-2); r.Recovered == nil || !*r.Recovered || r.Head != acked {
		t.Fatalf("resume on a full disk = %+v", r)
	}
	if m := carl.NextMessage(); m.Seq != acked-1 {
		t.Fatalf("replay on a full disk began at seq %d, want %d", m.Seq, acked-1)
	}
	if m := carl.NextMessage(); m.Seq != acked {
		t.Fatalf("replay on a full disk: seq %d, want %d", m.Seq, acked)
	}

	// Space comes back: the refused cid is accepted, at the next seq, as
	// a new message (it was never stored), without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	var ack protocol.Ack
	for {
		ann.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "after", Room: "r", CID: refusedCID, Text: "text of " + refusedCID})
		f := answer(t, ann)
		if f.Type == protocol.TypeAck {
			_ = f.Decode(&ack)
			break
		}
		if !strings.Contains(string(f.Raw), protocol.CodeStorageFull) || time.Since(freed) > testtime.Timeout {
			t.Fatalf("send after freeing space: %s", f.Raw)
		}
		time.Sleep(50 * time.Millisecond) // a client's backoff before it retries
	}
	if ack.Duplicate || ack.Seq != acked+1 {
		t.Fatalf("the refused cid, sent again once space came back: ack %+v, want seq %d, not a duplicate", ack, acked+1)
	}
	acked++
	t.Logf("accepted again %v after the ballast was deleted", time.Since(freed).Round(time.Millisecond))
	if m := bob.NextMessage(); m.Seq != acked || m.CID != refusedCID {
		t.Fatalf("bob got %+v live, want seq %d cid %s", m, acked, refusedCID)
	}

	p.Kill()
	p = p.Restart()
	dana := chatdtest.Connect(t, p.URL, "dana")
	w = dana.WalkHistory("r", 0)
	if len(w.Problems) > 0 || w.First.Epoch != epoch || w.First.Head != acked || uint64(len(w.Messages)) != acked {
		t.Fatalf("after a restart: %d messages, page %+v, problems %v; want %d in epoch %s", len(w.Messages), w.First, w.Problems, acked, epoch)
	}
	for i, m := range w.Messages {
		if m.CID != fmt.Sprintf("m-%d", i+1) {
			t.Fatalf("after a restart: seq %d is %s, want m-%d", m.Seq, m.CID, i+1)
		}
	}
}
