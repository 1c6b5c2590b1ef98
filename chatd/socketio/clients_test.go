package socketio_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// nodeModules finds the pinned packages hack/ensure-node.sh installed:
// RINGCHAT_NODE_MODULES, or the cache directory named after the lockfile's
// hash, as the script names it.
func nodeModules(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("RINGCHAT_NODE_MODULES"); dir != "" {
		return dir
	}
	lock, err := os.ReadFile("testdata/node/package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	cache := os.Getenv("RINGCHAT_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "ringchat")
	}
	dir := filepath.Join(cache, "node", hex.EncodeToString(sum[:])[:16], "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "socket.io-client")); err != nil {
		t.Fatalf("the pinned socket.io-client is not installed (%v): run hack/ensure-node.sh (make test-deps does)", err)
	}
	return dir
}

// runNode runs node's test runner on a file under testdata/node against a
// chatd binary built from this tree.
func runNode(t *testing.T, file string) {
	modules := nodeModules(t)
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: run hack/ensure-node.sh (make test-deps does)")
	}
	bin := chatdtest.BuildChatd(t)
	// One file per run: its tests run one after the other (node's default
	// within a file), on every Node.js from 18 (Debian 12's) on.
	cmd := exec.Command("node", "--test", file)
	cmd.Dir = "testdata/node"
	// Clustered nodes need what a production node needs: a certificate
	// of their own name and the gossip keyring (helpers.cjs names them
	// sio-0 … sio-3).
	pki := chatdtest.NewPKI(t)
	for i := 0; i < 4; i++ {
		pki.Node(fmt.Sprint("sio-", i))
	}
	cmd.Env = append(os.Environ(), "CHATD_BIN="+bin, "NODE_PATH="+modules, "CHATD_TEST_PKI="+pki.Dir,
		fmt.Sprintf("%s=%g", testtime.ScaleEnv, testtime.Scale()))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "not ok ") || strings.HasPrefix(line, "# recovery") {
			t.Log(line)
		}
	}
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", file, err, out.String())
	}
}

// TestSocketIOClientBasics runs the real socket.io-client against one
// chatd: the three transports, acknowledgements, errors, namespaces, JWT,
// the rate limit, binary packets, and a native client in the same room.
func TestSocketIOClientBasics(t *testing.T) { runNode(t, "basics.test.cjs") }

// TestSocketIOClientCluster runs the real socket.io-client against three
// chatd processes: chat across nodes, long-polling through a round-robin
// proxy, and recovery through a drain and a SIGKILL.
func TestSocketIOClientCluster(t *testing.T) { runNode(t, "cluster.test.cjs") }

// TestPythonSocketIOClient runs python-socketio's AsyncClient (Debian's
// python3-socketio), a second client library, for join, send and acks.
func TestPythonSocketIOClient(t *testing.T) {
	python := "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import socketio, aiohttp").Run(); err != nil {
		t.Fatalf("python3-socketio is not installed for %s (%v): run hack/ensure-node.sh (make test-deps does)", python, err)
	}
	srv := chatdtest.Start(t)
	cmd := exec.Command(python, "testdata/python/basics.py", "http://"+srv.Addr, fmt.Sprint(testtime.Timeout.Seconds()))
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("python client: %v", err)
	}
}
