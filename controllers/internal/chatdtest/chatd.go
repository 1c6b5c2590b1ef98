// Package chatdtest runs real chatd processes for the operator's tests: the
// binary built from this module, listening on a loopback port, reading its
// cluster size from a file as it does in a pod (--expected-nodes-file), so
// that the operator's observation of the size each pod applies is tested
// against the real thing.
package chatdtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startTimeout bounds how long a chatd process takes to listen; generous
// for a loaded 2-core machine.
const startTimeout = time.Minute

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary compiles chatd once per test binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "operator-chatd-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "chatd")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/ringchat/ringchat/chatd/cmd/chatd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build chatd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// Process is one chatd process.
type Process struct {
	// Name is its --node-name.
	Name string
	// Addr is the host:port of its client listener (WebSocket, probes).
	Addr string
	// AdminAddr is the host:port of its admin listener (/metrics), on
	// loopback, without a token.
	AdminAddr string
	// File is its --expected-nodes-file.
	File string
	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{}
}

// Start runs a single chatd named name on a free loopback port, reading
// its cluster size from a file that holds expectedNodes, with extra
// arguments (TLS files, say). It waits until the process listens, and
// kills it when the test ends. Call it from the test's goroutine.
func Start(t testing.TB, name string, expectedNodes int32, extra ...string) *Process {
	t.Helper()
	p, err := Run(Binary(t), t.TempDir(), name, expectedNodes, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- chatd %s output ---\n%s", name, p.Output())
		}
	})
	return p
}

// Run is Start for callers that manage the process themselves (from any
// goroutine): bin is the chatd binary (Binary), dir a directory for its
// file. The caller stops it.
func Run(bin, dir, name string, expectedNodes int32, extra ...string) (*Process, error) {
	p := &Process{Name: name, File: filepath.Join(dir, name+".expected-nodes"), logs: &logBuffer{wrote: make(chan struct{}, 1)}, done: make(chan struct{})}
	if err := p.SetExpectedNodes(expectedNodes); err != nil {
		return nil, err
	}
	// A port of its own for the admin listener: chatd refuses an
	// --admin-listen equal to --listen, "127.0.0.1:0" included.
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"--listen", "127.0.0.1:0", "--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort), "--node-name", name, "--allow-anonymous",
		"--expected-nodes-file", p.File, "--log-level", "info"}, extra...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting chatd %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	addr, err := p.waitListening(startTimeout)
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("chatd %s: %w\n%s", name, err, p.logs.String())
	}
	p.Addr = addr
	p.AdminAddr = p.logs.listening().Admin
	return p, nil
}

// freePort is a loopback TCP port nobody listens on (a moment ago).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Output is what the process wrote so far.
func (p *Process) Output() string { return p.logs.String() }

// Port is the port of Addr.
func (p *Process) Port() int32 { return portOf(p.Addr) }

// AdminPort is the port of AdminAddr.
func (p *Process) AdminPort() int32 { return portOf(p.AdminAddr) }

func portOf(addr string) int32 {
	_, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return int32(n)
}

// SetExpectedNodes writes n to the process's --expected-nodes-file as the
// kubelet updates a projected ConfigMap: a new file renamed over the old
// one, so chatd never reads half of it. chatd applies it at its next poll
// (every 2 s).
func (p *Process) SetExpectedNodes(n int32) error {
	tmp := p.File + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(int(n))+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.File)
}

// Stop kills the process and waits for it.
func (p *Process) Stop() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// waitListening waits for chatd's "chatd listening" log line and returns
// the address it names.
func (p *Process) waitListening(timeout time.Duration) (string, error) {
	deadline := time.After(timeout)
	for {
		if addr := p.logs.listeningAddr(); addr != "" {
			return addr, nil
		}
		select {
		case <-p.logs.wrote:
		case <-p.done:
			if addr := p.logs.listeningAddr(); addr != "" {
				return addr, nil
			}
			return "", fmt.Errorf("exited before listening")
		case <-deadline:
			return "", fmt.Errorf("not listening after %v", timeout)
		}
	}
}

// logBuffer collects a process's output and signals every write.
type logBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	n, err := l.b.Write(b)
	l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return n, err
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// listeningLine is what the "chatd listening" log line says.
type listeningLine struct {
	Msg   string `json:"msg"`
	Addr  string `json:"addr"`
	Admin string `json:"admin"`
}

// listening is the "chatd listening" JSON log line (zero before it).
func (l *logBuffer) listening() listeningLine {
	for _, line := range strings.Split(l.String(), "\n") {
		var m listeningLine
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "chatd listening" {
			return m
		}
	}
	return listeningLine{}
}

// listeningAddr is the client address of the "chatd listening" line, or "".
func (l *logBuffer) listeningAddr() string { return l.listening().Addr }
