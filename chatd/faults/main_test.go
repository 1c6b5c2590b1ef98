//go:build faults

// Package faults is ringchat's fault schedule, in the manner of Jepsen:
// real chatd processes on loopback (built from the working tree), steady
// traffic in many rooms through clients on every node that behave as
// docs/protocol.md §12 asks, and faults injected under them — SIGKILL and
// restart, SIGTERM (drain) and restart, a node added, SIGSTOP/SIGCONT
// shorter and longer than failure detection with clients staying connected
// to the frozen node, two SIGKILLs inside and outside the detection window,
// a rolling restart, and a random schedule of them drawn from a seed.
// deliverycheck.MultiRoom records every ack and delivery and fails a
// scenario on any acknowledged message lost, duplicated or out of order, a
// sequence number carrying two messages, an ack before the sender's own
// message, a subscriber left silent, or a room restarted (new epoch) when
// not every copy of it was lost.
//
// Run it with `make test-faults` (build tag faults). The seed is printed
// first; FAULT_SEED=<seed> replays it. Each scenario is a subtest with a
// stable name (go test -tags faults -run 'TestFaults/owner-kill$'), and
// the run ends with a Markdown table, one row per scenario, for
// docs/reliability.md (also written to $FAULT_TABLE when set).
package faults

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/deliverycheck"
)

// seed is the run's seed: FAULT_SEED, or drawn from the clock.
var seed uint64

// results collects every scenario's report for the table.
var results struct {
	sync.Mutex
	reps  []deliverycheck.Report
	notes []string
}

func TestMain(m *testing.M) {
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAULT_SEED=%q is not an unsigned integer: %v\n", s, err)
			os.Exit(2)
		}
		seed = v
	}
	fmt.Printf("fault seed %d (replay: FAULT_SEED=%d make test-faults)\n", seed, seed)
	code := m.Run()
	table := tableText()
	fmt.Print(table)
	if path := os.Getenv("FAULT_TABLE"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "write FAULT_TABLE: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// rngFor is the scenario's own random source: the seed and the scenario's
// name, so that a scenario run alone draws what it draws in a full run.
func rngFor(name string) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// record keeps a scenario's report, and a note on how it ran, for the
// table.
func record(rep deliverycheck.Report, note string) {
	results.Lock()
	defer results.Unlock()
	results.reps = append(results.reps, rep)
	results.notes = append(results.notes, fmt.Sprintf("- **%s**: %s", rep.Scenario, note))
}

func tableText() string {
	results.Lock()
	defer results.Unlock()
	if len(results.reps) == 0 {
		return ""
	}
	out := fmt.Sprintf("\n## Fault schedule, seed %d\n\n", seed)
	out += deliverycheck.MarkdownTable(results.reps)
	out += "\nLongest stall: the longest a subscriber heard nothing from a room that had acknowledged newer messages, not counting the time its own node was frozen or cut off. Recovery: from the fault to the first ack in the slowest of the rooms it touched.\n\n"
	for _, n := range results.notes {
		out += n + "\n"
	}
	return out
}
