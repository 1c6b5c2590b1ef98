package chatdtest

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds, and fails the test once within has
// passed, with what and the reason cond gave last. It is for state that
// gives no event to wait on: another node's or another process's, read over
// HTTP.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", within, what, why)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
