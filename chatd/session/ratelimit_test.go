package session_test

import (
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestRateAbuseCountsOnlyWithinTheWindow: the 1008 close comes after more
// than RateAbuseLimit refused frames within RateAbuseWindow of the first
// refusal; refusals spread wider apart only earn rate_limited errors.
// (chatd/server's tests cover the close itself, its reason and what the
// bystanders see; the window is fixed at 10 s there, too long for them.)
// The bucket never refills (rate 0), so every frame after the first is
// refused whatever the bubble's clock says.
func TestRateAbuseCountsOnlyWithinTheWindow(t *testing.T) {
	const window = 10 * time.Second
	for _, tc := range []struct {
		name  string
		pause time.Duration // between the second and the third refusal
		// refusals answered with rate_limited before the close
		refusals int
	}{
		{"spread wider than the window", window + time.Millisecond, 4},
		{"within the window", window - time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig()
				cfg.MaxFrameBytes = 1 << 16
				cfg.HelloTimeout = time.Hour
				cfg.PingInterval = time.Hour
				cfg.RatePerSecond, cfg.RateBurst = 0, 1
				cfg.RateAbuseLimit, cfg.RateAbuseWindow = 2, window
				s, c, m := newPipeSession(t, cfg)
				done := make(chan struct{})
				go func() {
					defer close(done)
					s.Run()
				}()

				// ask sends a ping and returns the code of the error it
				// earns, or the close code.
				ask := func() (code string, closed int) {
					t.Helper()
					if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","id":"p"}`)); err != nil {
						t.Fatalf("write: %v", err)
					}
					_, data, err := c.ReadMessage()
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						if ce.Text != "rate limit exceeded repeatedly" {
							t.Fatalf("closed with %d %q", ce.Code, ce.Text)
						}
						return "", ce.Code
					}
					if err != nil {
						t.Fatalf("read: %v", err)
					}
					var e protocol.Error
					if err := json.Unmarshal(data, &e); err != nil {
						t.Fatalf("reply %q: %v", data, err)
					}
					return e.Code, 0
				}
				if code, _ := ask(); code != protocol.CodeHelloRequired {
					t.Fatalf("first frame answered %q, want %s (the burst's one token)", code, protocol.CodeHelloRequired)
				}
				refused := 0
				for i := 1; ; i++ {
					if i == 3 {
						time.Sleep(tc.pause)
					}
					code, closed := ask()
					if closed != 0 {
						if closed != protocol.ClosePolicyViolation {
							t.Fatalf("closed with %d, want 1008", closed)
						}
						break
					}
					if code != protocol.CodeRateLimited {
						t.Fatalf("refusal %d answered %q, want %s", i, code, protocol.CodeRateLimited)
					}
					refused++
					if refused > tc.refusals {
						t.Fatalf("%d rate_limited errors and no close, want %d then 1008", refused, tc.refusals)
					}
				}
				if refused != tc.refusals {
					t.Fatalf("closed after %d rate_limited errors, want %d", refused, tc.refusals)
				}
				_ = c.Close()
				<-done
				if n := testutil.ToFloat64(m.RateLimited); n != float64(tc.refusals+1) {
					t.Fatalf("chatd_rate_limited_total %v, want %d", n, tc.refusals+1)
				}
			})
		})
	}
}
