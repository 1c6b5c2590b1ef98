package app

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestExpectedNodesWatcher(t *testing.T) {
	file := filepath.Join(t.TempDir(), "expected-nodes")
	var logs bytes.Buffer
	var got []int
	w := &expectedNodesWatcher{
		path: file,
		set:  func(v int) { got = append(got, v) },
		log:  slog.New(slog.NewJSONHandler(&logs, nil)),
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	w.poll() // missing file: nothing applied
	write(" 5\n")
	w.poll()
	write("three")
	w.poll()
	w.poll()
	write("-1")
	w.poll()
	write("3")
	w.poll()

	if want := []int{5, 3}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v (unreadable and invalid content must change nothing)", got, want)
	}
	for _, want := range []string{"no such file", `got \"three\"`, `got \"-1\"`} {
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("log mentions %q %d times, want once:\n%s", want, n, logs.String())
		}
	}
}

func TestReadExpectedNodesAtStart(t *testing.T) {
	if _, err := readExpectedNodes(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "--expected-nodes-file") {
		t.Fatalf("missing file: err = %v, want one naming --expected-nodes-file", err)
	}
}
