package store

import (
	"testing"
)

// TestDeletionRedactsTarget: appending a deletion marks its target deleted
// and removes its text in the same write, whether the target was stored
// before or arrives in the same batch; both survive a reopen, and a
// deletion of a deletion changes nothing.
func TestDeletionRedactsTarget(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, testOptions(dir))
	newRoom(t, s, "lobby")
	appendN(t, s, "lobby", 1, 10, 1)
	durable(t, func(done func(error)) error {
		return s.Append("lobby", []Entry{{Seq: 11, Term: 1, From: "mod", TS: 5, Target: 4}}, done)
	})
	// A replica's chunk: message 12 and its deletion 13 arrive together.
	chunk := append(entries(12, 1, 1), Entry{Seq: 13, Term: 1, From: "mod", TS: 6, Target: 12}, Entry{Seq: 14, Term: 1, From: "mod", TS: 7, Target: 11})
	durable(t, func(done func(error)) error { return s.Append("lobby", chunk, done) })

	check := func(t *testing.T, s *Store) {
		t.Helper()
		p, err := s.Read("lobby", 1, 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) != 14 {
			t.Fatalf("got %d entries, want 14", len(p.Entries))
		}
		for _, e := range p.Entries {
			orig := entries(e.Seq, 1, 1)[0]
			switch e.Seq {
			case 4, 12:
				if !e.Deleted || e.Text != "" || e.From != orig.From || e.CID != orig.CID || e.TS != orig.TS {
					t.Fatalf("seq %d = %+v, want it deleted with its sender, id and time kept", e.Seq, e)
				}
			case 11, 13, 14:
				if e.Target == 0 || e.Deleted {
					t.Fatalf("deletion %d = %+v", e.Seq, e)
				}
			default:
				if e != orig {
					t.Fatalf("seq %d = %+v, want %+v untouched", e.Seq, e, orig)
				}
			}
		}
	}
	check(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(t, mustOpen(t, testOptions(dir)))
}

// TestDeletionRefusedBeyondBatch: a deletion may not target a seq after
// itself.
func TestDeletionRefusedBeyondBatch(t *testing.T) {
	s := mustOpen(t, testOptions(t.TempDir()))
	newRoom(t, s, "lobby")
	appendN(t, s, "lobby", 1, 3, 1)
	err := s.Append("lobby", []Entry{{Seq: 4, Term: 1, From: "mod", Target: 9}}, nil)
	if !isErr(err, ErrInvalid) {
		t.Fatalf("Append = %v, want ErrInvalid", err)
	}
	if m, _ := s.Meta("lobby"); m.Head != 3 {
		t.Fatalf("head %d after a refused append, want 3", m.Head)
	}
}

func TestEntryFormats(t *testing.T) {
	for _, e := range []Entry{
		{Seq: 7, Term: 2, From: "ann", CID: "c", Text: "hi", TS: 9},
		{Seq: 7, Term: 2, From: "ann", CID: "c", TS: 9, Deleted: true},
		{Seq: 7, Term: 2, From: "mod", TS: 9, Target: 3},
	} {
		v := encodeEntry(nil, &e)
		if want := byte(entryFormatV1); (e.Deleted || e.Target != 0) == (v[0] == want) {
			t.Fatalf("%+v encoded with format %d", e, v[0])
		}
		got, err := decodeEntry(7, v)
		if err != nil || got != e {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", e, got, err)
		}
	}
	bad := encodeEntry(nil, &Entry{Seq: 7, Term: 2, From: "mod", Target: 3})
	if _, err := decodeEntry(3, bad); !isErr(err, ErrCorrupt) {
		t.Fatalf("a deletion of a later seq decoded: %v", err)
	}
	bad[1] = 0x7f
	if _, err := decodeEntry(7, bad); !isErr(err, ErrCorrupt) {
		t.Fatalf("unknown flags decoded: %v", err)
	}
}
