package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// chatdProcess is a single chatd process on a free loopback port: SIGTERM
// tests need a real process, since what a client loses when chatd exits
// before writing its close frame cannot be seen in-process.
type chatdProcess struct {
	Addr string
	URL  string
	cmd  *exec.Cmd
	logs *chatdtest.LogBuffer
	done chan struct{}
	err  error // the exit status, once done is closed
}

// startChatdProcess runs the chatd binary anonymously on 127.0.0.1:0 with
// args, and returns once it listens. The process is killed when the test
// ends if it is still running.
func startChatdProcess(t *testing.T, args ...string) *chatdProcess {
	t.Helper()
	bin := chatdtest.BuildChatd(t)
	flags := append([]string{"--listen", "127.0.0.1:0", "--allow-anonymous", "--node-name", "proc", "--log-level", "info"}, args...)
	p := &chatdProcess{cmd: exec.Command(bin, flags...), logs: chatdtest.NewLogBuffer(), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start chatd: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("--- chatd logs ---\n%s", p.logs.String())
		}
	})
	deadline := time.After(chatdtest.Timeout)
	for {
		if m := p.logs.Line("chatd listening"); m != nil {
			p.Addr, _ = m["addr"].(string)
			p.URL = "ws://" + p.Addr + "/ws"
			return p
		}
		select {
		case <-p.logs.Wrote():
		case <-p.done:
			t.Fatalf("chatd exited before listening: %v\n%s", p.err, p.logs.String())
		case <-deadline:
			t.Fatalf("chatd not listening after %v\n%s", chatdtest.Timeout, p.logs.String())
		}
	}
}

// On SIGTERM every client gets a 1012 close frame, however many the
// drain rate leaves for the end of the shutdown timeout; the paced part
// respects the rate even below 50 per second; and while the node drains it
// answers /readyz and new WebSocket connections with 503.
func TestShutdownDrainEveryClientGets1012(t *testing.T) {
	t.Parallel()
	const (
		clients = 300
		rate    = 20 // connections per second: a 50 ms step
	)
	// The shutdown timeout is scaled: every client must get its 1012
	// within it, on a loaded machine too.
	timeout := testtime.Bound(3 * time.Second)
	// More than the paced part of the shutdown (at most the timeout) can
	// close at rate: chatd must say so at start-up.
	maxConns := max(1000, rate*(int(timeout/time.Second)+1)+1)
	p := startChatdProcess(t, "--drain-rate", fmt.Sprint(rate), "--shutdown-timeout", timeout.String(),
		"--max-connections", fmt.Sprint(maxConns), "--max-connections-per-ip", "0")
	type end struct {
		code int
		err  error
		at   time.Time
	}
	ends := make(chan end, clients)
	for i := range clients {
		c := chatdtest.Connect(t, p.URL, fmt.Sprint("user", i))
		if i%3 == 0 {
			c.Join(fmt.Sprint("room", i%7)) // some traffic to flush before the close
		}
		_ = c.SetReadDeadline(time.Now().Add(timeout + chatdtest.Timeout))
		go func() {
			for {
				if _, err := c.Read(); err != nil {
					code, _, _ := client.CloseCode(err)
					ends <- end{code, err, time.Now()}
					return
				}
			}
		}()
	}

	sigterm := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Draining: /readyz says so, and a new client is refused with 503. Each
	// probe opens a new connection, as a kubelet's does.
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: chatdtest.Timeout}
	for {
		resp, err := probe.Get("http://" + p.Addr + "/readyz")
		if err != nil {
			t.Errorf("GET /readyz while draining: %v", err)
			break
		}
		body := readAll(t, resp)
		if resp.StatusCode == http.StatusServiceUnavailable {
			if !strings.Contains(body, "draining") {
				t.Errorf("/readyz while draining = %q", body)
			}
			break
		}
		if time.Since(sigterm) > chatdtest.Timeout {
			t.Fatalf("/readyz still %d %q %v after SIGTERM", resp.StatusCode, body, chatdtest.Timeout)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	c, resp, err := client.Dial(ctx, p.URL, client.Options{})
	cancel()
	switch {
	case err == nil:
		c.Close()
		t.Errorf("a new connection was accepted while draining")
	case resp == nil:
		t.Errorf("a new connection while draining: %v, want HTTP 503", err)
	default:
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" || !strings.Contains(string(b), "connection refused: draining") {
			t.Errorf("a new connection while draining: HTTP %d, Retry-After %q, %q", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	codes := make(map[int]int)
	var early int
	// The i-th paced close is decided no sooner than i/rate after the
	// signal: within window, at most window×rate+1 clients can have their
	// 1012 (a load that delays closes only lowers the count). The paced
	// part of a shutdown lasts at least half the timeout (the final phase,
	// which closes the rest at once, is at most half), so an unpaced
	// shutdown would close nobody within it.
	window := timeout / 2
	for range clients {
		e := <-ends
		codes[e.code]++
		if e.code != protocol.CloseServiceRestart && codes[e.code] == 1 {
			t.Errorf("a client ended with %v, want close 1012", e.err)
		}
		if e.at.Sub(sigterm) < window {
			early++
		}
	}
	t.Logf("close codes %v; %d within %v of SIGTERM", codes, early, window)
	if codes[protocol.CloseServiceRestart] != clients {
		t.Errorf("%d of %d clients got 1012 (codes %v; 0 is not a close frame, 1006 an abnormal end)", codes[protocol.CloseServiceRestart], clients, codes)
	}
	if most := int(window*rate/time.Second) + 1; early > most {
		t.Errorf("%d clients closed within %v at --drain-rate %d, want at most %d", early, window, rate, most)
	}
	if early < 5 {
		t.Errorf("only %d clients closed within %v at --drain-rate %d: the closes were not paced", early, window, rate)
	}

	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("chatd exited with %v", p.err)
		}
		t.Logf("chatd exited %v after SIGTERM", time.Since(sigterm))
	case <-time.After(timeout + chatdtest.Timeout):
		t.Fatalf("chatd still running %v after SIGTERM", timeout+chatdtest.Timeout)
	}
	// rate/s for the paced part (at most the timeout) cannot drain maxConns.
	if p.logs.Line("--drain-rate × --shutdown-timeout is below --max-connections: at shutdown, connections beyond the paced ones are closed all at once") == nil {
		t.Errorf("no start-up warning that %d/s over %v cannot drain --max-connections %d", rate, timeout, maxConns)
	}
}
