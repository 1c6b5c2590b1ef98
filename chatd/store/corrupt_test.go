package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
