//go:build partition

package partition

import (
	"fmt"
	"os"
	"testing"

	"github.com/ringchat/ringchat/chatd/deliverycheck"
)

// TestMain prints, after the run, the table of the container faults run
// under the many-room checker, in the form docs/reliability.md takes (also
// written to $FAULT_TABLE_PARTITION when set).
func TestMain(m *testing.M) {
	code := m.Run()
	results.Lock()
	reps, notes := results.reps, results.notes
	results.Unlock()
	if len(reps) > 0 {
		table := "\n## Container faults (Docker)\n\n" + deliverycheck.MarkdownTable(reps) + "\n"
		for _, n := range notes {
			table += n + "\n"
		}
		fmt.Print(table)
		if path := os.Getenv("FAULT_TABLE_PARTITION"); path != "" {
			if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "write FAULT_TABLE_PARTITION: %v\n", err)
				code = 1
			}
		}
	}
	os.Exit(code)
}
