package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/record"
)

// buildFlushed makes a store whose messages sit in tables (two flushes,
// so the MANIFEST has several edits), closes it and returns its directory
// and each room's head.
func buildFlushed(t *testing.T) (string, map[string]uint64) {
	t.Helper()
	dir := t.TempDir()
	s := mustOpen(t, testOptions(dir))
	heads := map[string]uint64{}
	for round := range 2 {
		for i := range 20 {
			r := crashRoom(i)
			if round == 0 {
				if err := s.Reset(r, RoomMeta{Epoch: "e", Term: 1}, nil); err != nil {
					t.Fatal(err)
				}
			}
			es := make([]Entry, 100)
			for j := range es {
				es[j] = crashEntry(r, heads[r]+1+uint64(j))
			}
			durable(t, func(done func(error)) error { return s.Append(r, es, done) })
			heads[r] += 100
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, heads
}

// openAndReadAll opens dir and reads every room whole. It returns the
// error that refused the damage (from Open or a read), or nil when the
// store served everything: then it checks that nothing is missing.
func openAndReadAll(t *testing.T, dir string, heads map[string]uint64) error {
	t.Helper()
	s, err := Open(testOptions(dir))
	if err != nil {
		return err
	}
	defer s.Close()
	for r, head := range heads {
		m, ok := s.Meta(r)
		if !ok || m.Head != head || m.Oldest != 1 {
			t.Fatalf("room %s: meta %+v (held %v), want head %d: a shorter history served silently", r, m, ok, head)
		}
		p, err := s.Read(r, 1, int(head))
		if err != nil {
			return err
		}
		if uint64(len(p.Entries)) != head {
			t.Fatalf("room %s: %d messages served, want %d", r, len(p.Entries), head)
		}
		for _, e := range p.Entries {
			if e != crashEntry(r, e.Seq) {
				t.Fatalf("room %s: damaged entry served: %+v", r, e)
			}
		}
	}
	return nil
}

func TestDamagedFiles(t *testing.T) {
	dir, heads := buildFlushed(t)
	if err := openAndReadAll(t, copyDir(t, dir), heads); err != nil {
		t.Fatalf("undamaged store: %v", err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(ssts) == 0 || len(manifests) == 0 {
		t.Fatalf("no tables (%v) or MANIFEST (%v)", ssts, manifests)
	}
	manifest := filepath.Base(manifests[len(manifests)-1])
	biggest := ""
	var bigSize int64
	for _, p := range ssts {
		if st, _ := os.Stat(p); st.Size() > bigSize {
			biggest, bigSize = filepath.Base(p), st.Size()
		}
	}
	mst, _ := os.Stat(filepath.Join(dir, manifest))
	t.Logf("table %s %d bytes, %s %d bytes", biggest, bigSize, manifest, mst.Size())

	type damage struct {
		name string
		file string
		do   func(path string, size int64) error
	}
	truncate := func(cut int64) func(string, int64) error {
		return func(p string, size int64) error { return os.Truncate(p, size-cut) }
	}
	flip := func(frac float64) func(string, int64) error {
		return func(p string, size int64) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			off := int64(float64(size) * frac)
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, off); err != nil {
				return err
			}
			b[0] ^= 0x40
			_, err = f.WriteAt(b, off)
			return err
		}
	}
	var cases []damage
	for _, cut := range []int64{1, 100, bigSize / 2} {
		cases = append(cases, damage{fmt.Sprintf("table cut by %d", cut), biggest, truncate(cut)})
	}
	for _, frac := range []float64{0.1, 0.5, 0.9, 0.999} {
		cases = append(cases, damage{fmt.Sprintf("table byte flipped at %.1f%%", frac*100), biggest, flip(frac)})
	}
	for _, cut := range []int64{1, 10, mst.Size() / 2} {
		cases = append(cases, damage{fmt.Sprintf("MANIFEST cut by %d", cut), manifest, truncate(cut)})
	}
	for _, frac := range []float64{0.3, 0.7, 0.95} {
		cases = append(cases, damage{fmt.Sprintf("MANIFEST byte flipped at %.0f%%", frac*100), manifest, flip(frac)})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := copyDir(t, dir)
			p := filepath.Join(cp, c.file)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.do(p, st.Size()); err != nil {
				t.Fatal(err)
			}
			err = openAndReadAll(t, cp, heads)
			if err == nil {
				t.Logf("damage did not touch what is read: full history served")
				return
			}
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFailed) {
				t.Fatalf("refused with %v, want ErrCorrupt (or ErrFailed)", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestManifestLostEdits drops the MANIFEST's last edits at a record
// boundary, which Pebble reads as a clean end: each copy must either be
// refused or serve every room whole.
func TestManifestLostEdits(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir)
	opts.noAutoCompactions = true
	s := mustOpen(t, opts)
	heads := map[string]uint64{"a": 100, "b": 200, "c": 10}
	for _, r := range []string{"a", "b"} {
		newRoom(t, s, r)
		appendN(t, s, r, 1, 100, 1)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "b", 101, 100, 1)
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	newRoom(t, s, "c") // the WAL holds this, and the newest write mark
	appendN(t, s, "c", 1, 10, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	name := filepath.Base(manifests[len(manifests)-1])
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	rr := record.NewReader(f, 0)
	var offsets []int64
	for {
		off := rr.Offset()
		r, err := rr.Next()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			break
		}
		offsets = append(offsets, off)
	}
	_ = f.Close()
	for k := 1; k < len(offsets); k++ {
		cp := copyDir(t, dir)
		if err := os.Truncate(filepath.Join(cp, name), offsets[len(offsets)-k]); err != nil {
			t.Fatal(err)
		}
		err := openAndReadAllEntries(t, cp, heads)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("drop last %d edits: refused with %v, want ErrCorrupt", k, err)
		}
		t.Logf("drop last %d of %d edits: %v", k, len(offsets), err)
	}
}

// openAndReadAllEntries is openAndReadAll for stores written by appendN.
func openAndReadAllEntries(t *testing.T, dir string, heads map[string]uint64) error {
	t.Helper()
	s, err := Open(testOptions(dir))
	if err != nil {
		return err
	}
	defer s.Close()
	for r, head := range heads {
		p, err := s.Read(r, 1, int(head)+1)
		if err != nil {
			return err
		}
		checkRange(t, p, 1, head, 1)
	}
	return nil
}

// rawPebble opens a closed store's Pebble database directly, to damage it
// in ways files cannot be damaged on purpose.
func rawPebble(t *testing.T, dir string) *pebble.DB {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{&Store{log: testLogger()}}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestGuards makes the damage each Open guard exists for, through the
// engine, and checks Open refuses it.
func TestGuards(t *testing.T) {
	build := func(t *testing.T) string {
		dir := t.TempDir()
		s := mustOpen(t, testOptions(dir))
		for _, r := range []string{"a", "b"} {
			newRoom(t, s, r)
			appendN(t, s, r, 1, 50, 1)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	tests := []struct {
		name   string
		damage func(db *pebble.DB) error
	}{
		{"a room reverts, metadata and messages (a lost flush)", func(db *pebble.DB) error {
			old := RoomMeta{Epoch: "e-b", Term: 1, Promised: 1, Head: 40, Oldest: 1, Terms: []TermStart{{1, 1}}}
			b := db.NewBatch()
			_ = b.Set(metaKey("b"), encodeMeta(nil, &old), nil)
			_ = b.DeleteRange(msgKey("b", 41), msgRoomUpper("b"), nil)
			return b.Commit(pebble.Sync)
		}},
		{"the write mark reverts (a lost WAL tail)", func(db *pebble.DB) error {
			v, closer, err := db.Get(keyWriteMark)
			if err != nil {
				return err
			}
			num, digest, err := decodeWriteMark(v)
			closer.Close()
			if err != nil {
				return err
			}
			return db.Set(keyWriteMark, encodeWriteMark(nil, num-1, digest), pebble.Sync)
		}},
		{"the last message is missing", func(db *pebble.DB) error {
			return db.Delete(msgKey("a", 50), pebble.Sync)
		}},
		{"the first message is missing", func(db *pebble.DB) error {
			return db.Delete(msgKey("a", 1), pebble.Sync)
		}},
		{"a message after head", func(db *pebble.DB) error {
			return db.Set(msgKey("a", 51), encodeEntry(nil, &Entry{Seq: 51}), pebble.Sync)
		}},
		{"the format key is gone", func(db *pebble.DB) error {
			return db.Delete(keyFormat, pebble.Sync)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := build(t)
			db := rawPebble(t, dir)
			if err := tc.damage(db); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			_, err := Open(testOptions(dir))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}
