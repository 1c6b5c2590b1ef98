package membership

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// keyring returns keys as a Config.Keys (nil for none).
func keyring(keys ...[]byte) [][]byte {
	var out [][]byte
	for _, k := range keys {
		if k != nil {
			out = append(out, k)
		}
	}
	return out
}

func TestParseKeyring(t *testing.T) {
	k32 := bytes.Repeat([]byte{0xa5}, 32)
	k16 := bytes.Repeat([]byte{0x5a}, 16)
	b64 := base64.StdEncoding.EncodeToString
	cases := []struct {
		name string
		in   string
		want [][]byte
		err  string
	}{
		{name: "one base64 key", in: b64(k32) + "\n", want: [][]byte{k32}},
		{name: "primary first, CRLF, blank lines, spaces", in: "\r\n  " + b64(k32) + " \r\n\n" + b64(k16) + "\r\n", want: [][]byte{k32, k16}},
		{name: "raw keys of 16, 24 and 32 bytes", in: "0123456789abcdef\n0123456789abcdef0123456!\n0123456789abcdef0123456789abcde!",
			want: [][]byte{[]byte("0123456789abcdef"), []byte("0123456789abcdef0123456!"), []byte("0123456789abcdef0123456789abcde!")}},
		// 32 characters of valid base64 decode to a 24-byte key, which
		// wins over reading them as a 32-byte key.
		{name: "base64 first", in: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", want: [][]byte{[]byte("0123456789abcdef01234567")}},
		{name: "empty", in: "\n \n", err: "no key"},
		{name: "not base64", in: b64(k32) + "\nnot a key at all!", err: "line 2: a 17-character line is neither base64 nor a key of 16, 24 or 32 bytes"},
		{name: "wrong size", in: b64(make([]byte, 20)), err: "line 1: decoded from base64: key is 20 bytes"},
		{name: "repeated", in: b64(k32) + "\n" + b64(k16) + "\n\n" + b64(k32), err: "line 4 repeats the key of line 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKeyring([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				// An error never shows key material.
				if strings.Contains(err.Error(), b64(k32)) {
					t.Fatalf("error %q shows a key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tc.want[i]) {
					t.Fatalf("key %d differs", i)
				}
			}
		})
	}
}

// canExchange reports whether a and b can each push/pull with the other:
// a full state exchange over TCP, encrypted with the sender's primary key
// and decrypted with the receiver's keyring.
func canExchange(a, b *testNode) error {
	for _, p := range [][2]*testNode{{a, b}, {b, a}} {
		if _, err := p[0].list.Join([]string{p[1].GossipAddr()}); err != nil {
			return fmt.Errorf("%s → %s: %w", p[0].name, p[1].name, err)
		}
	}
	return nil
}

// TestKeyRotation rotates the gossip key of a running three-node cluster
// in the three documented steps, one node at a time, while every node
// keeps exchanging state with the others. After every single node's
// change, every pair of nodes must still be able to exchange state both
// ways, and no member may come or go. At the end a node holding only the
// new key joins, and one holding only the old key cannot.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey := []byte("old-gossip-key-0123456789abcdef!")
	newKey := []byte("new-gossip-key-0123456789abcdef!")
	nodes := startCluster(t, 3, func(c *Config) { c.Keys = keyring(oldKey) })
	for _, n := range nodes {
		waitView(t, n, testtime.Timeout, "all three", hasNames("node-0", "node-1", "node-2"))
	}
	versions := make([]uint64, len(nodes))
	for i, n := range nodes {
		versions[i] = n.View().Version
	}

	// Traffic: every node pulls from the others in a loop until the end,
	// so gossip is decrypted while keys change (the race detector watches
	// the keyring).
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures sync.Map
	for _, n := range nodes {
		wg.Go(func() {
			for ctx.Err() == nil {
				for _, o := range nodes {
					if o != n {
						if _, err := n.list.Join([]string{o.GossipAddr()}); err != nil {
							failures.Store(n.name+"→"+o.name, err)
						}
					}
				}
			}
		})
	}

	steps := []struct {
		name string
		keys [][]byte
		want KeyringChange
	}{
		{"add the new key", keyring(oldKey, newKey), KeyringChange{Added: 1}},
		{"make it primary", keyring(newKey, oldKey), KeyringChange{PrimaryChanged: true}},
		{"remove the old key", keyring(newKey), KeyringChange{Removed: 1}},
	}
	for _, step := range steps {
		for _, n := range nodes {
			change, err := n.SetKeys(step.keys)
			if err != nil {
				t.Fatalf("%s on %s: %v", step.name, n.name, err)
			}
			if change != step.want {
				t.Fatalf("%s on %s: changed %+v, want %+v", step.name, n.name, change, step.want)
			}
			for i, a := range nodes {
				for _, b := range nodes[i+1:] {
					if err := canExchange(a, b); err != nil {
						t.Fatalf("%s, applied up to %s: %v", step.name, n.name, err)
					}
				}
			}
		}
		// Applying the same keyring again changes nothing.
		if change, err := nodes[0].SetKeys(step.keys); err != nil || change.Changed() {
			t.Fatalf("%s again: %+v, %v", step.name, change, err)
		}
	}
	stop()
	wg.Wait()
	failures.Range(func(k, v any) bool {
		t.Errorf("state exchange %s failed during the rotation: %v", k, v)
		return true
	})
	for i, n := range nodes {
		if v := n.View(); v.Version != versions[i] || len(v.Members) != 3 {
			t.Errorf("%s: view went from v%d to v%d %v during the rotation", n.name, versions[i], v.Version, v.Names())
		}
		if n.KeyCount() != 1 {
			t.Errorf("%s holds %d keys, want 1", n.name, n.KeyCount())
		}
		if n.logs.contains("no installed keys") {
			t.Errorf("%s could not decrypt some gossip during the rotation", n.name)
		}
	}

	// The cluster now speaks only the new key.
	cfg := testConfig("node-new")
	cfg.Keys, cfg.Seeds = keyring(newKey), []string{nodes[0].GossipAddr()}
	startNode(t, cfg)
	waitView(t, nodes[0], testtime.Timeout, "node-new", hasNames("node-0", "node-1", "node-2", "node-new"))
	cfg = testConfig("node-old")
	cfg.Keys, cfg.Seeds = keyring(oldKey), []string{nodes[0].GossipAddr()}
	stale := newNode(t, cfg)
	jctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := stale.Start(jctx); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("a node with only the old key: Start = %v, want ErrNotJoined", err)
	}
}

// TestSetKeysRemovesAnyKey removes a key from the middle of the ring and
// the end, under traffic (run with -race: memberlist's own RemoveKey would
// shift the slice being read), and refuses what is not a keyring.
func TestSetKeysRemovesAnyKey(t *testing.T) {
	t.Parallel()
	a, b, c := []byte("key-a-0123456789"), []byte("key-b-0123456789"), []byte("key-c-0123456789")
	nodes := startCluster(t, 2, func(cfg *Config) { cfg.Keys = keyring(a, b, c) })
	waitView(t, nodes[1], testtime.Timeout, "both", hasNames("node-0", "node-1"))
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			_, _ = nodes[1].list.Join([]string{nodes[0].GossipAddr()})
		}
	})
	change, err := nodes[0].SetKeys(keyring(a, c))
	if err != nil || change != (KeyringChange{Removed: 1}) {
		t.Fatalf("remove the middle key: %+v, %v", change, err)
	}
	change, err = nodes[0].SetKeys(keyring(a))
	if err != nil || change != (KeyringChange{Removed: 1}) {
		t.Fatalf("remove the last key: %+v, %v", change, err)
	}
	stop()
	wg.Wait()
	if got := nodes[0].keyring.GetKeys(); len(got) != 1 || !bytes.Equal(got[0], a) {
		t.Fatalf("keys left: %q", got)
	}
	if err := canExchange(nodes[0], nodes[1]); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []struct {
		keys [][]byte
		want string
	}{
		{nil, "keyring is empty"},
		{keyring([]byte("short")), "key is 5 bytes"},
		{keyring(a, a), "repeats"},
	} {
		if _, err := nodes[0].SetKeys(bad.keys); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("SetKeys(%d keys) = %v, want %q", len(bad.keys), err, bad.want)
		}
	}
	if nodes[0].KeyCount() != 1 {
		t.Fatal("a refused keyring changed the keys")
	}

	plain := startNode(t, testConfig("plain"))
	if _, err := plain.SetKeys(keyring(a)); err == nil || !strings.Contains(err.Error(), "without encryption") {
		t.Fatalf("keys on an unencrypted node: %v", err)
	}
}
