package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestProbeFsync(t *testing.T) {
	if os.Getenv("STORE_PROBE") == "" {
		t.Skip()
	}
	dir := t.TempDir()
	f, _ := os.Create(filepath.Join(dir, "x"))
	buf := make([]byte, 32)
	f.Write(make([]byte, 1024))
	f.Sync()
	var tot time.Duration
	for range 200 {
		t0 := time.Now()
		f.WriteAt(buf, 0)
		fdatasync(f)
		tot += time.Since(t0)
	}
	t.Logf("overwrite+fdatasync: %v avg", tot/200)
	s := mustOpen(t, testOptions(filepath.Join(dir, "s")))
	tot = 0
	for range 200 {
		t0 := time.Now()
		s.syncWAL()
		tot += time.Since(t0)
	}
	t.Logf("pebble WAL sync (empty): %v avg", tot/200)
	newRoom(t, s, "r")
	tot = 0
	for i := range 200 {
		t0 := time.Now()
		s.Append("r", entries(uint64(i+1), 1, 1), nil)
		tot += time.Since(t0)
	}
	t.Logf("Append nosync: %v avg", tot/200)
	tot = 0
	for range 200 {
		t0 := time.Now()
		durable(t, s.Sync)
		tot += time.Since(t0)
	}
	t.Logf("full group-commit cycle via Sync: %v avg", tot/200)
}
