package hooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/metrics"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines decodes the JSON log lines written so far.
func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// find returns the log lines with message msg.
func find(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// TestHookLogs: a deny is logged at info with the hook, user and reason; a
// failure at warn with the error; the breaker's opening at warn, once;
// calls the open breaker refuses at debug only (no flood while the backend
// is down); and the cookies the connect hook carries never reach the log.
func TestHookLogs(t *testing.T) {
	t.Parallel()
	const cookie = "session=do-not-log-me"
	be := startBackend(t, nil, func(hook string, _ map[string]any, _ *http.Request) (int, any) {
		return http.StatusOK, deny("members only")
	})
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	timeout := chatdtest.Timeout / 20
	set := hooks.New(hooks.Options{
		Connect:         hooks.Endpoint{URL: be.url("connect"), Timeout: timeout, OnFailure: hooks.Deny},
		Join:            hooks.Endpoint{URL: be.url("join"), Timeout: timeout, OnFailure: hooks.Deny},
		BreakerFailures: 1,
		BreakerOpen:     chatdtest.Timeout * 10,
	}, metrics.New(), log)
	defer set.Close()
	ctx := context.Background()
	if v := set.Connect.Connect(ctx, hooks.ConnectRequest{Transport: hooks.TransportWS, RemoteAddr: "127.0.0.1:1", Cookie: cookie}); v.Allowed || v.Reason != "members only" {
		t.Fatalf("connect verdict %+v", v)
	}
	if v := set.Join.Join(ctx, hooks.JoinRequest{User: "ann", Room: "staff"}); v.Allowed {
		t.Fatalf("join verdict %+v", v)
	}
	be.srv.Close()
	for range 3 {
		if v := set.Join.Join(ctx, hooks.JoinRequest{User: "ann", Room: "staff"}); v.Allowed || !v.Failed {
			t.Fatalf("join verdict with the backend down %+v", v)
		}
	}
	lines := buf.lines(t)
	denied := find(lines, "hook denied")
	if len(denied) != 2 || denied[1]["hook"] != "join" || denied[1]["user"] != "ann" || denied[1]["reason"] != "members only" || denied[1]["level"] != "INFO" {
		t.Fatalf("deny lines %v", denied)
	}
	failed := find(lines, "hook failed; failure policy applied")
	if len(failed) != 3 || failed[0]["level"] != "WARN" || failed[0]["err"] == nil || failed[1]["level"] != "DEBUG" || failed[2]["level"] != "DEBUG" {
		t.Fatalf("failure lines %v", failed)
	}
	opened := find(lines, "hook circuit breaker changed state")
	if len(opened) != 1 || opened[0]["to"] != "open" || opened[0]["level"] != "WARN" {
		t.Fatalf("breaker lines %v", opened)
	}
	buf.mu.Lock()
	leaked := strings.Contains(buf.b.String(), "do-not-log-me")
	buf.mu.Unlock()
	if leaked {
		t.Fatal("a cookie reached the log")
	}
}
