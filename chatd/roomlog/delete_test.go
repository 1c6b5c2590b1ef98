package roomlog

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestDeleteOnOwnerAndReplicas: an owner's deletion takes the next seq
// and removes its target's text from the owner's copy (memory and disk),
// from a replica that applies it live, from one that catches up in chunks
// and from what each serves after a restart; deleting again, a deletion,
// or what is not kept is refused.
func TestDeleteOnOwnerAndReplicas(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	var owned durableWatch
	owned.ch = make(chan struct{}, 1)
	// A ring of 4: seq 2 is deleted from the disk, seq 8 in memory too.
	owner := New("r", Config{HistorySize: 4, DedupeWindow: 10, Backing: st, OnDurable: owned.on})
	_ = owner.SetTerm(1, nil)
	live := New("r", Config{HistorySize: 100})
	if err := live.Reset(owner.Meta(), nil); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		m, _, err := owner.Append("ann", fmt.Sprint("c", i), fmt.Sprint("m", i+1))
		if err != nil {
			t.Fatal(err)
		}
		if err := live.Apply(1, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range []uint64{2, 8} {
		d, err := owner.Delete("mod", target)
		if err != nil {
			t.Fatalf("Delete(%d): %v", target, err)
		}
		if d.Type != protocol.TypeDeleted || d.Target != target || d.From != "mod" || d.Seq != owner.Head() {
			t.Fatalf("deletion = %+v", d)
		}
		if err := live.Apply(1, d, nil); err != nil {
			t.Fatalf("replica applies the deletion of %d: %v", target, err)
		}
	}
	owned.wait(t, 10)
	for _, tc := range []struct {
		target uint64
		why    string
	}{{2, "already deleted"}, {9, "a deletion"}, {11, "not written"}, {0, "not kept"}} {
		if _, err := owner.Delete("mod", tc.target); !errors.Is(err, ErrNotDeletable) {
			t.Fatalf("Delete(%d) (%s) = %v, want ErrNotDeletable", tc.target, tc.why, err)
		}
	}
	if owner.Head() != 10 {
		t.Fatalf("refused deletions moved the head to %d", owner.Head())
	}
	// A resend of a deleted message's client id is still answered with
	// its original ack: the deletion does not make it new again.
	if m, dup, err := owner.Append("ann", "c1", "m2 again"); err != nil || !dup || m.Seq != 2 {
		t.Fatalf("resend of a deleted message: %+v dup %v err %v", m, dup, err)
	}

	want := []string{"1:m1", "2:-", "3:m3", "4:m4", "5:m5", "6:m6", "7:m7", "8:-", "9:del 2", "10:del 8"}
	caughtUp := New("r", Config{HistorySize: 100})
	follow(t, caughtUp, owner, 3)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	reloaded, ok, err := Load("r", Config{HistorySize: 4, Backing: openStore(t, dir)})
	if err != nil || !ok {
		t.Fatalf("Load: %v %v", ok, err)
	}
	for name, l := range map[string]*Log{"live replica": live, "caught-up replica": caughtUp, "owner after a restart": reloaded} {
		if got := render(t, l); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s holds %v, want %v", name, got, want)
		}
	}
	page, _, err := reloaded.Before(0, 10)
	if err != nil || len(page) != 10 || !page[1].Deleted || page[1].Text != "" || page[1].From != "ann" || page[8].Type != protocol.TypeDeleted {
		t.Fatalf("history page after a restart: %+v %v", page, err)
	}
}

// render lists a copy's log, a deleted message as "-", a deletion as
// "del N".
func render(t *testing.T, l *Log) []string {
	t.Helper()
	entries, err := l.Read(l.Oldest(), int(l.Head()-l.Oldest()+1))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		m := e.Msg
		switch {
		case m.Type == protocol.TypeDeleted:
			out = append(out, fmt.Sprintf("%d:del %d", m.Seq, m.Target))
		case m.Deleted:
			if m.Text != "" {
				t.Errorf("deleted seq %d kept its text %q", m.Seq, m.Text)
			}
			out = append(out, fmt.Sprintf("%d:-", m.Seq))
		default:
			out = append(out, fmt.Sprintf("%d:%s", m.Seq, m.Text))
		}
	}
	return out
}
