package chatdtest

import (
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

// Process is one chatd process on its own (no gossip, not a cluster), for
// tests of what survives the process: a restart on the same --data-dir, a
// SIGKILL, a refusal to start.
type Process struct {
	// Addr is host:port; URL is the WebSocket endpoint; AdminAddr is the
	// admin listener (the admin API, /metrics, the probes). A restart
	// keeps all three.
	Addr      string
	URL       string
	AdminAddr string
	t         testing.TB
	args      []string
	// adminListen is --admin-listen as given, kept for a restart.
	adminListen string
	cmd         *exec.Cmd
	logs        *LogBuffer
	// stderr is the process's stderr alone (logs has both streams).
	stderr *LogBuffer
	done   chan struct{}
}

// StartProcess starts chatd with anonymous clients on a free loopback port
// and args, and waits until it listens; a process that exits first (or
// does not listen within a bound) fails the test with its output. The
// process is killed when the test ends.
func StartProcess(t testing.TB, args ...string) *Process {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	p := launchProcess(t, addr, freeAdminAddr(t, args), args)
	p.mustListen()
	return p
}

// freeAdminAddr is the admin listener of a new process: the one args set
// with --admin-listen (used as it is: a test of the admin listener's
// rules), else a free loopback port.
func freeAdminAddr(t testing.TB, args []string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--admin-listen="); ok {
			return v
		}
		if a == "--admin-listen" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
}

func launchProcess(t testing.TB, addr, admin string, args []string) *Process {
	t.Helper()
	flags := append([]string{"--listen", addr, "--admin-listen", admin, "--allow-anonymous", "--node-name", "solo",
		"--rate", "100000", "--rate-burst", "100000", "--max-connections-per-ip", "0", "--log-level", "info"}, args...)
	cmd := exec.Command(BuildChatd(t), flags...)
	logs, stderr := NewLogBuffer(), NewLogBuffer()
	cmd.Stdout, cmd.Stderr = logs, io.MultiWriter(logs, stderr)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chatd: %v", err)
	}
	p := &Process{Addr: addr, URL: "ws://" + addr + "/ws", AdminAddr: reachable(admin), adminListen: admin, t: t, args: args, cmd: cmd, logs: logs, stderr: stderr, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			t.Logf("--- chatd on %s, logs ---\n%s", addr, lastLines(logs.String(), 40))
		}
	})
	return p
}

func (p *Process) mustListen() {
	p.t.Helper()
	n := &ProcessNode{logs: p.logs, done: p.done}
	if !n.waitListening(testtime.Bound(30 * time.Second)) {
		p.t.Fatalf("chatd on %s did not start listening; its output:\n%s", p.Addr, lastLines(p.logs.String(), 40))
	}
}

// Server returns the process's HTTP side as a Server, for the metric
// helpers. Its Stop is nil: stop the process with Kill or Terminate.
func (p *Process) Server() *Server { return &Server{Addr: p.Addr, URL: p.URL, AdminAddr: p.AdminAddr} }

// AdminURL is the URL of path on the process's admin listener.
func (p *Process) AdminURL(path string) string { return "http://" + p.AdminAddr + path }

// Logs returns the process's output so far.
func (p *Process) Logs() *LogBuffer { return p.logs }

// Kill sends SIGKILL and waits for the process to die: nothing is flushed,
// closed or handed over.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Terminate sends SIGTERM and waits for the graceful shutdown.
func (p *Process) Terminate() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * stopTimeout):
		p.t.Errorf("chatd on %s did not exit within %v of SIGTERM", p.Addr, 2*stopTimeout)
	}
}

// Restart starts the process again, stopped or not yet (it is killed
// first), on the same address with the same flags, and waits until it
// listens. Listening is retried while the old socket is being released.
func (p *Process) Restart() *Process {
	p.t.Helper()
	p.Kill()
	deadline := time.Now().Add(testtime.Bound(5 * time.Second))
	for {
		q := launchProcess(p.t, p.Addr, p.adminListen, p.args)
		n := &ProcessNode{logs: q.logs, done: q.done}
		if n.waitListening(testtime.Bound(30*time.Second)) || !q.logs.Contains("address already in use") || time.Now().After(deadline) {
			q.mustListen()
			return q
		}
		q.Kill()
		time.Sleep(50 * time.Millisecond) // the old socket is still being released
	}
}

// ExitResult is how a chatd process that did not start ended.
type ExitResult struct {
	// Code is the exit status (-1 when it did not exit within the bound and
	// was killed).
	Code int
	// Stderr is what it wrote to stderr (chatd's log).
	Stderr string
}

// TryStartProcess is StartProcess for a configuration chatd may refuse:
// it returns the process once it listens, or, when it exits first, how it
// exited. A process that does neither within a bound fails the test.
func TryStartProcess(t testing.TB, args ...string) (*Process, *ExitResult) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	p := launchProcess(t, addr, freeAdminAddr(t, args), args)
	n := &ProcessNode{logs: p.logs, done: p.done}
	if n.waitListening(testtime.Bound(30 * time.Second)) {
		return p, nil
	}
	select {
	case <-p.done:
	default:
		t.Fatalf("chatd on %s neither listened nor exited within the bound; its output:\n%s", addr, lastLines(p.logs.String(), 40))
	}
	res := &ExitResult{Code: p.cmd.ProcessState.ExitCode(), Stderr: p.stderr.String()}
	return p, res
}

// DirSize is the total size of the regular files under dir, for tests of
// what a store keeps on disk.
func DirSize(t testing.TB, dir string) int64 {
	t.Helper()
	var total int64
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read %s: %v", dir, err)
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
	}
	return total
}
