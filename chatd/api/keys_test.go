package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The key file's rules, and a rewrite that does not parse keeps the keys
// in use (read at every check here: interval 0).
func TestKeysFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for name, bad := range map[string]string{
		"empty":    "",
		"comments": "# only a comment\n\n",
		"short":    "short\n",
		"space":    "key-with a-space-inside\n",
		"control":  "key-with-a-tab\there\n",
	} {
		write(bad)
		if _, err := LoadKeys(path, 0, nil); err == nil {
			t.Errorf("%s: loaded", name)
		} else if strings.Contains(err.Error(), "key-with") {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
	const a, b = "0123456789abcdef", "fedcba9876543210-b"
	write("# keys\n  " + a + "  \n\n" + b + "\n")
	k, err := LoadKeys(path, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for header, want := range map[string]bool{
		"Bearer " + a:        true,
		"bearer " + b:        true,
		"Bearer  " + a + " ": true,
		"Bearer " + a + b:    false,
		"Basic " + a:         false,
		a:                    false,
		"Bearer":             false,
		"Bearer ":            false,
		"":                   false,
	} {
		if got := k.Authorized(header); got != want {
			t.Errorf("Authorized(%q) = %v", header, got)
		}
	}
	write("not-a-valid key\n")
	if !k.Authorized("Bearer " + a) {
		t.Fatal("a rewrite that does not parse took the keys in use away")
	}
	write(b + "\n")
	if k.Authorized("Bearer "+a) || !k.Authorized("Bearer "+b) {
		t.Fatal("the rewrite was not taken")
	}
}
