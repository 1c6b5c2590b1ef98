package store

import "testing"

// A cursor is kept across a reopen, never goes back within an epoch, moves
// to a new epoch, and goes with its room's deletion.
func TestCursorKeptAndDropped(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(dir))
	newRoom(t, s, "lobby")
	appendN(t, s, "lobby", 1, 10, 1)
	if _, ok := s.Cursor("lobby"); ok {
		t.Fatal("a cursor before any was set")
	}
	for _, c := range []Cursor{{"e-lobby", 4}, {"e-lobby", 2}} {
		if err := s.SetCursor("lobby", c); err != nil {
			t.Fatal(err)
		}
	}
	if c, ok := s.Cursor("lobby"); !ok || c != (Cursor{"e-lobby", 4}) {
		t.Fatalf("cursor %+v %v, want e-lobby 4 (it never goes back)", c, ok)
	}
	// A cursor is durable with the next group commit: make one.
	durable(t, func(done func(error)) error { return s.Append("lobby", entries(11, 1, 1), done) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, testOptions(dir))
	if c, ok := s.Cursor("lobby"); !ok || c != (Cursor{"e-lobby", 4}) {
		t.Fatalf("cursor after a reopen %+v %v", c, ok)
	}
	if err := s.SetCursor("lobby", Cursor{"e-new", 1}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Cursor("lobby"); c != (Cursor{"e-new", 1}) {
		t.Fatalf("cursor of a new epoch %+v", c)
	}
	durable(t, func(done func(error)) error { return s.Delete("lobby", done) })
	if c, ok := s.Cursor("lobby"); ok {
		t.Fatalf("cursor %+v outlived its room", c)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c, ok := mustOpen(t, testOptions(dir)).Cursor("lobby"); ok {
		t.Fatalf("cursor %+v outlived its room across a reopen", c)
	}
}
