package app

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// expectedNodesPoll is how often --expected-nodes-file is re-read. The
// kubelet rewrites a mounted ConfigMap within its sync period (about a
// minute), so a faster poll would buy nothing; a file read every 2 s costs
// nothing either.
const expectedNodesPoll = 2 * time.Second

// readExpectedNodes reads a cluster size from path: a non-negative integer,
// surrounding white space allowed.
func readExpectedNodes(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading --expected-nodes-file: %w", err)
	}
	v, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || v < 0 {
		return 0, fmt.Errorf("--expected-nodes-file %s: want a non-negative integer, got %q", path, bytes.TrimSpace(b))
	}
	return v, nil
}

// expectedNodesWatcher applies the cluster size written in a file, so that
// the operator resizes a cluster by rewriting a ConfigMap instead of rolling
// every pod. A file that cannot be read or parsed leaves the size as it was
// (an error is logged once per distinct error), since guessing a size could
// let two sides of a partition both accept messages.
type expectedNodesWatcher struct {
	path    string
	set     func(int)
	log     *slog.Logger
	lastErr string
}

// poll reads the file once and applies what it holds.
func (w *expectedNodesWatcher) poll() {
	v, err := readExpectedNodes(w.path)
	if err != nil {
		if msg := err.Error(); msg != w.lastErr {
			w.log.Error("keeping the expected nodes as they are", "err", err)
			w.lastErr = msg
		}
		return
	}
	w.lastErr = ""
	w.set(v)
}

// run polls every interval until ctx is done.
func (w *expectedNodesWatcher) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll()
		}
	}
}
