package hooks_test

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/metrics"
)

// TestRetriesAndHalfOpen: a 5xx is retried (and the retry's answer
// counts), a 4xx is not; consecutive failures open the breaker, which then
// refuses without asking the backend; once --hook-breaker-open has passed
// one probe goes through and, answered, closes the breaker again.
func TestRetriesAndHalfOpen(t *testing.T) {
	t.Parallel()
	var status atomic.Int32 // what the backend answers next: 0 allow, else that status
	var once atomic.Int32   // a status answered once only, then allow
	be := startBackend(t, nil, func(string, map[string]any, *http.Request) (int, any) {
		if s := once.Swap(0); s != 0 {
			return int(s), map[string]string{"error": "once"}
		}
		if s := status.Load(); s != 0 {
			return int(s), map[string]string{"error": "failing"}
		}
		return http.StatusOK, map[string]string{"result": "allow"}
	})
	m := metrics.New()
	open := chatdtest.Timeout / 20
	set := hooks.New(hooks.Options{
		Join:            hooks.Endpoint{URL: be.url("join"), Timeout: chatdtest.Timeout, OnFailure: hooks.Deny},
		Retries:         1,
		BreakerFailures: 2,
		BreakerOpen:     open,
	}, m, slog.New(slog.DiscardHandler))
	defer set.Close()
	hm := func(series, reason string) float64 {
		t.Helper()
		if series == "state" {
			return gathered(t, m, "chatd_hook_breaker_state", map[string]string{"hook": "join"})
		}
		return gathered(t, m, "chatd_hook_failures_total", map[string]string{"hook": "join", "reason": reason})
	}
	join := func() hooks.Verdict {
		return set.Join.Join(context.Background(), hooks.JoinRequest{User: "ann", Room: "r"})
	}
	calls := func() int { return len(be.requests(hooks.HookJoin)) }

	once.Store(http.StatusServiceUnavailable)
	if v := join(); !v.Allowed || v.Failed || calls() != 2 {
		t.Fatalf("a 503 then an allow: %+v after %d requests, want allowed after 2", v, calls())
	}
	once.Store(http.StatusBadRequest)
	if v := join(); v.Allowed || !v.Failed || calls() != 3 {
		t.Fatalf("a 400: %+v after %d requests, want failed after 3 (no retry)", v, calls())
	}
	// The 400 was one failure, the success before it reset the count: one
	// more failing attempt opens the breaker.
	status.Store(http.StatusInternalServerError)
	if v := join(); v.Allowed || !v.Failed {
		t.Fatalf("a 500: %+v", v)
	}
	if hm("state", "") != 2 {
		t.Fatalf("breaker state %v after two consecutive failures, want 2 (open)", hm("state", ""))
	}
	asked := calls()
	if v := join(); v.Allowed || !v.Failed || calls() != asked || hm("failures", "breaker_open") != 2 {
		// The 500's retry met the open breaker too: two breaker_open.
		t.Fatalf("with the breaker open: %+v, %d more requests, breaker_open %v", v, calls()-asked, hm("failures", "breaker_open"))
	}
	status.Store(0)
	<-time.After(open) // the breaker's own timer: its open period is over
	if v := join(); !v.Allowed || calls() != asked+1 || hm("state", "") != 0 {
		t.Fatalf("the probe after the open period: %+v, %d more requests, state %v; want allowed, 1, closed", v, calls()-asked, hm("state", ""))
	}
}

// gathered returns the value of the series name{labels} in m's registry
// (0 when absent).
func gathered(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if want, ok := labels[l.GetName()]; ok && want != l.GetValue() {
					continue series
				}
			}
			if g := s.GetGauge(); g != nil {
				return g.GetValue()
			}
			return s.GetCounter().GetValue()
		}
	}
	return 0
}
