package owner

import (
	"slices"
	"sync"
	"testing"
)

// forgetLog records the forgets an owner sends.
type forgetLog struct {
	recorder
	fmu     sync.Mutex
	forgets []string
}

func (f *forgetLog) ForgetReplica(node, room string, term uint64) {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	f.forgets = append(f.forgets, node)
}

func (f *forgetLog) forgotten() []string {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	return slices.Clone(f.forgets)
}

// TestFormerReplicaToldToForgetOnceTheNewOneHoldsTheLog: when a room's
// replica set changes, the replica that left keeps its copy until the new
// replica holds the whole log, then is told to drop it (no stale copies
// pile up, and none is dropped while it may be the only other copy).
func TestFormerReplicaToldToForgetOnceTheNewOneHoldsTheLog(t *testing.T) {
	out := &forgetLog{}
	s := startService(t, testConfig([]string{"b"}), out)
	var acks ackLog
	s.Publish("r", "ann", "c1", "one", acks.reply)
	_, syncs := out.take()
	syncs[0](nil) // b: holds nothing yet
	_, chunks := out.take()
	chunks[0](nil) // b stores seq 1
	if a, _ := acks.snapshot(); len(a) != 1 {
		t.Fatalf("acks %+v", a)
	}
	s.cfg.View.(*fakeView).change(func(v *fakeView) { v.replicas = []string{"c"} })
	s.SetReplicas("r", []string{"c"})
	if got := out.forgotten(); len(got) != 0 {
		t.Fatalf("told %v to forget before the new replica holds the log", got)
	}
	_, syncs = out.take()
	syncs[0](nil) // c answers the offer: it holds the whole log (the recorder's answer)
	if got := out.forgotten(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("forgets %v, want b once c holds the log", got)
	}
}

// TestForgetOfAnOlderTermKeepsTheCopy: a forget from an owner of an older
// term than the copy's (it crossed a newer owner's sync) is ignored.
func TestForgetOfAnOlderTermKeepsTheCopy(t *testing.T) {
	s, _ := replicaNode(t, "b", "a")
	l := copyOf(5, "one")
	if err := installCopy(s, "a", l); err != nil {
		t.Fatal(err)
	}
	s.ForgetReplica("r", 4)
	if got := s.ReplicaRooms(); !slices.Equal(got, []string{"r"}) {
		t.Fatalf("replica rooms %v after a term-4 forget of a term-5 copy, want [r]", got)
	}
	s.ForgetReplica("r", 5)
	if got := s.ReplicaRooms(); len(got) != 0 {
		t.Fatalf("replica rooms %v after the owner's forget, want none", got)
	}
}
