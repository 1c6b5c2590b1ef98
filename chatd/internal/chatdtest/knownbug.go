package chatdtest

import (
	"os"
	"testing"
)

// KnownBug skips a test (or subtest) that fails today because of a bug
// described by what, unless RINGCHAT_KNOWN_BUGS=1: the failing test is kept,
// ready to prove the fix, without failing every run meanwhile.
func KnownBug(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("RINGCHAT_KNOWN_BUGS") != "1" {
		t.Skip("KNOWN BUG (fails today; RINGCHAT_KNOWN_BUGS=1 runs it): " + what)
	}
}
