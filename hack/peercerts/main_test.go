package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/certs"
	"github.com/ringchat/ringchat/chatd/membership"
)

// TestOutputIsWhatChatdTakes: the files peercerts writes load as chatd's
// peer credentials and gossip keyring; a second run reuses the CA (so a
// node added later trusts the same one) and the keyring.
func TestOutputIsWhatChatdTakes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := run([]string{"-dir", dir, "-days", "2", "node-0", "node-1"}); err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	keyring, _ := os.ReadFile(filepath.Join(dir, "gossip.keyring"))
	if err := run([]string{"-dir", dir, "node-2"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "gossip.keyring"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if want := map[string][]byte{"ca.crt": ca, "gossip.keyring": keyring}[f]; !bytes.Equal(b, want) {
			t.Fatalf("%s changed on the second run", f)
		}
	}
	for _, n := range []string{"node-0", "node-1", "node-2"} {
		p, err := certs.NewPeer(certs.PeerFiles{Cert: filepath.Join(dir, n+".crt"), Key: filepath.Join(dir, n+".key"), CA: filepath.Join(dir, "ca.crt")}, n, time.Hour, slog.Default())
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if n == "node-0" && p.Leaf().NotAfter.After(time.Now().Add(49*time.Hour)) {
			t.Fatalf("-days 2 made a certificate valid until %s", p.Leaf().NotAfter)
		}
	}
	keys, err := membership.ParseKeyring(keyring)
	if err != nil || len(keys) != 1 || len(keys[0]) != 32 {
		t.Fatalf("keyring: %d keys, %v", len(keys), err)
	}
	for _, f := range []string{"ca.key", "node-0.key", "gossip.keyring"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, %v; want 0600", f, fi.Mode(), err)
		}
	}
}

func TestRefusesBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"node-0"}, "-dir is required"},
		{[]string{"-dir", dir}, "name at least one node"},
		{[]string{"-dir", dir, "-days", "0", "n"}, "-days must be at least 1"},
		{[]string{"-dir", dir, "../escape"}, "cannot be a node name"},
		{[]string{"-dir", dir, "ca"}, "cannot be a node name"},
	} {
		if err := run(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-dir", dir, "n"}); err == nil || !strings.Contains(err.Error(), "half a CA") {
		t.Errorf("half a CA: %v", err)
	}
}
