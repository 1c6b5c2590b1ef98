package filewatch

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// parseNumber accepts a file holding one non-negative number.
func parseNumber(b []byte) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return 0, errors.New("want a non-negative number")
	}
	return n, nil
}

func write(t *testing.T, path, content string) {
	t.Helper()
	// Through a rename, as a Secret volume's update is.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n")
	write(t, path, "1\n")
	var logs bytes.Buffer
	f, err := New(path, parseNumber, Options{What: "number", Interval: 0, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Get(); got != 1 {
		t.Fatalf("Get = %d, want 1", got)
	}
	write(t, path, "2\n")
	if got := f.Get(); got != 2 {
		t.Fatalf("after a change Get = %d, want 2", got)
	}
	if !strings.Contains(logs.String(), `"msg":"number reloaded"`) {
		t.Fatalf("no reload logged: %s", logs.String())
	}

	// Bad content keeps the value in use; the error is logged once.
	write(t, path, "two")
	for range 3 {
		if got := f.Get(); got != 2 {
			t.Fatalf("after a bad edit Get = %d, want 2", got)
		}
	}
	if n := strings.Count(logs.String(), `"msg":"keeping the current number"`); n != 1 {
		t.Fatalf("%d keeping lines, want 1: %s", n, logs.String())
	}
	if strings.Contains(logs.String(), "two") {
		t.Fatalf("the log repeats the file's content: %s", logs.String())
	}
	// A missing file too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := f.Get(); got != 2 {
		t.Fatalf("with the file gone Get = %d, want 2", got)
	}
	write(t, path, "3")
	if got := f.Get(); got != 3 {
		t.Fatalf("after the file came back Get = %d, want 3", got)
	}
	// The same size, at once: the content is compared, not the stamp.
	write(t, path, "4")
	if got := f.Get(); got != 4 {
		t.Fatalf("a same-size rewrite: Get = %d, want 4", got)
	}
}

func TestIntervalBoundsTheReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n")
	write(t, path, "1")
	f, err := New(path, parseNumber, Options{What: "number", Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, "2")
	if got := f.Get(); got != 1 {
		t.Fatalf("Get = %d within the interval, want the value loaded first", got)
	}
	// Once the interval has passed (pretend it has), the next Get reads.
	f.checkedAt.Store(time.Now().Add(-2 * time.Hour).UnixNano())
	if got := f.Get(); got != 2 {
		t.Fatalf("Get = %d after the interval, want 2", got)
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	write(t, bad, "x")
	big := filepath.Join(dir, "big")
	write(t, big, strings.Repeat("1", 100))
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"): "read the number: open",
		bad:                           "number in " + bad + ": want a non-negative number",
		big:                           "file too large (more than 10 bytes)",
	} {
		_, err := New(path, parseNumber, Options{What: "number", MaxBytes: 10})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%s) = %v, want %q", path, err, want)
		}
	}
}

// Concurrent Gets while the file changes: run with -race.
func TestConcurrentGets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n")
	write(t, path, "0")
	f, err := New(path, parseNumber, Options{What: "number"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for range 200 {
				v := f.Get()
				if v < last {
					t.Errorf("value went back from %d to %d", last, v)
					return
				}
				last = v
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		write(t, path, strconv.Itoa(i))
	}
	wg.Wait()
	if got := f.Get(); got != 20 {
		t.Fatalf("final Get = %d, want 20", got)
	}
}
