package owner

import (
	"slices"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/feed"
)

// presences returns the presence events pushed to node, in order.
func (p *pushLog) presences(node string) []feed.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []feed.Event
	for _, ev := range p.pushes[node] {
		if ev.Kind == feed.KindPresence {
			out = append(out, ev)
		}
	}
	return out
}

// endWindow ends room's presence batch window now, as its timer would.
// The window in these tests is an hour, so the timer never fires on its
// own and the test decides when the window ends.
func endWindow(t *testing.T, s *Service, room string) {
	t.Helper()
	r := s.lockHeld(room)
	if r == nil {
		t.Fatalf("room %s not held", room)
	}
	if r.presenceTimer == nil {
		r.mu.Unlock()
		t.Fatal("no presence window open")
	}
	r.presenceTimer.Stop()
	r.mu.Unlock()
	r.flushPresence()
}

// windowOpen reports whether room has a presence window open.
func windowOpen(s *Service, room string) bool {
	r := s.lockHeld(room)
	if r == nil {
		return false
	}
	defer r.mu.Unlock()
	return r.presenceTimer != nil
}

func batchedService(t *testing.T, out Outbound) *Service {
	cfg := testConfig(nil)
	cfg.PresenceBatch = time.Hour
	return startService(t, cfg, out)
}

func describe(evs []feed.Event) [][3]any {
	var out [][3]any
	for _, ev := range evs {
		out = append(out, [3]any{ev.Count, ev.Joined, ev.Left})
	}
	return out
}

// TestPresenceBatchedWithinWindow: the first arrival after a quiet window
// is pushed at once; the arrivals and departures inside the window go out
// together, sorted, when it ends; a window with no change closes without a
// push.
func TestPresenceBatchedWithinWindow(t *testing.T) {
	out := &recorder{}
	s := batchedService(t, out)
	s.Subscribe("r", "n1", nil, func(feed.State, error) {})
	s.PresenceChange("r", "n1", "ann", true)
	if got := out.presences("n1"); len(got) != 1 || !slices.Equal(got[0].Joined, []string{"ann"}) || got[0].Count != 1 {
		t.Fatalf("after a lone arrival: %v, want one push of ann at once", describe(got))
	}
	for _, u := range []string{"dan", "bob", "cat"} {
		s.PresenceChange("r", "n1", u, true)
	}
	s.PresenceChange("r", "n1", "ann", false)
	if got := out.presences("n1"); len(got) != 1 {
		t.Fatalf("inside the window: %v, want nothing more pushed", describe(got))
	}
	endWindow(t, s, "r")
	got := out.presences("n1")
	if len(got) != 2 || !slices.Equal(got[1].Joined, []string{"bob", "cat", "dan"}) || !slices.Equal(got[1].Left, []string{"ann"}) || got[1].Count != 3 {
		t.Fatalf("after the window: %v, want one push of bob, cat, dan arriving and ann leaving, count 3", describe(got))
	}
	if !windowOpen(s, "r") {
		t.Fatal("a window that announced changes closed; the next one must open behind it")
	}
	endWindow(t, s, "r")
	if got := out.presences("n1"); len(got) != 2 {
		t.Fatalf("a quiet window pushed %v", describe(got[2:]))
	}
	if windowOpen(s, "r") {
		t.Fatal("a quiet window did not close")
	}
	s.PresenceChange("r", "n1", "eve", true)
	if got := out.presences("n1"); len(got) != 3 || !slices.Equal(got[2].Joined, []string{"eve"}) {
		t.Fatalf("the first arrival after a quiet window: %v, want eve pushed at once", describe(got))
	}
}

// TestPresenceChangesCancelInsideWindow: a user who arrives and leaves (or
// leaves and comes back) inside one window is never announced, and the
// other nodes' lists stay right.
func TestPresenceChangesCancelInsideWindow(t *testing.T) {
	out := &recorder{}
	s := batchedService(t, out)
	s.Subscribe("r", "n1", []string{"ann"}, func(feed.State, error) {})
	s.PresenceChange("r", "n1", "bob", true) // inside the window ann's arrival opened
	s.PresenceChange("r", "n1", "bob", false)
	s.PresenceChange("r", "n1", "ann", false)
	s.PresenceChange("r", "n1", "ann", true)
	endWindow(t, s, "r")
	if got := out.presences("n1"); len(got) != 1 {
		t.Fatalf("pushed %v, want only ann's first arrival: bob came and went, ann went and came back", describe(got))
	}
}

// TestPresenceBatchZeroPushesEveryChange: without a window every change is
// pushed on its own, as before batching.
func TestPresenceBatchZeroPushesEveryChange(t *testing.T) {
	out := &recorder{}
	s := startService(t, testConfig(nil), out)
	s.Subscribe("r", "n1", nil, func(feed.State, error) {})
	for _, u := range []string{"ann", "bob", "cat"} {
		s.PresenceChange("r", "n1", u, true)
	}
	if got := out.presences("n1"); len(got) != 3 || windowOpen(s, "r") {
		t.Fatalf("pushed %v, want three pushes and no window", describe(got))
	}
}

// TestPresenceBatchLeavesCountModeWithTheList: a room that grew past
// PresenceListMax reports counts; when it shrinks back inside a window,
// the window's end pushes the whole list, not deltas.
func TestPresenceBatchLeavesCountModeWithTheList(t *testing.T) {
	out := &recorder{}
	s := batchedService(t, out)
	users := []string{"u00", "u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10"} // PresenceListMax is 10
	s.Subscribe("r", "n1", users, func(feed.State, error) {})
	s.PresenceChange("r", "n1", "u10", false)
	endWindow(t, s, "r")
	got := out.presences("n1")
	last := got[len(got)-1]
	if !slices.Equal(last.Present, users[:10]) || last.Joined != nil || last.Left != nil || last.Count != 10 {
		t.Fatalf("back under the limit: last push %+v, want the whole list of 10", last)
	}
}
