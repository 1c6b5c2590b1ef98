package main

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestReconnectPolicy covers the client package's reconnect building blocks
// that tail relies on.
func TestReconnectPolicy(t *testing.T) {
	// Full jitter: the delay is uniform below a ceiling doubling from the
	// base up to the cap; Reset starts over.
	var got []int64
	bo := client.Backoff{Base: 100 * time.Millisecond, Max: time.Second, Rand: func(n int64) int64 { got = append(got, n); return n - 1 }}
	for i := 0; i < 6; i++ {
		if d := bo.Next(); d >= time.Second || d < 0 {
			t.Fatalf("delay %v outside [0, 1s)", d)
		}
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, n := range got {
		if time.Duration(n) != want[i]*time.Millisecond {
			t.Fatalf("ceilings %v, want %v ms", got, want)
		}
	}
	if bo.Attempt() != 6 {
		t.Fatalf("attempt %d", bo.Attempt())
	}
	bo.Reset()
	if bo.Ceiling() != 100*time.Millisecond {
		t.Fatalf("ceiling after reset %v", bo.Ceiling())
	}

	closeErr := func(code int) error { return &websocket.CloseError{Code: code} }
	for code, want := range map[int]client.Disposition{
		1000: client.Reconnect, 1006: client.Reconnect, protocol.CloseServiceRestart: client.Reconnect,
		protocol.CloseSlowConsumer: client.Reconnect, protocol.CloseHelloTimeout: client.Reconnect,
		protocol.CloseAuthFailed: client.AuthFailed, protocol.CloseUnsupportedVersion: client.AuthFailed,
		protocol.CloseTokenExpired: client.AuthFailed, protocol.ClosePolicyViolation: client.GiveUp,
		protocol.CloseMessageTooBig: client.GiveUp,
	} {
		if got := client.Classify(closeErr(code)); got != want {
			t.Errorf("Classify(close %d) = %v, want %v", code, got, want)
		}
	}
	if client.Classify(errors.New("connection refused")) != client.Reconnect {
		t.Error("a network error should be retried")
	}

	resp := &http.Response{Header: http.Header{"Retry-After": []string{"5"}}}
	if client.RetryAfter(resp) != 5*time.Second || client.RetryAfter(nil) != 0 {
		t.Errorf("RetryAfter = %v", client.RetryAfter(resp))
	}

	yes, no := true, false
	cur := client.Cursor{Epoch: "e1", Seq: 7}
	if f := cur.JoinFrame("j", "lobby"); f.Since == nil || *f.Since != 7 || f.Epoch != "e1" {
		t.Fatalf("resume frame %+v", f)
	}
	if f := (client.Cursor{}).JoinFrame("j", "lobby"); f.Since != nil || f.Epoch != "" {
		t.Fatalf("fresh join %+v", f)
	}
	for _, c := range []struct {
		j    protocol.Joined
		want client.ResumeOutcome
	}{
		{protocol.Joined{Epoch: "e1", Recovered: &yes}, client.Recovered},
		{protocol.Joined{Epoch: "e1", Recovered: &no}, client.Gap},
		{protocol.Joined{Epoch: "e2", Recovered: &no}, client.NewEpoch},
		{protocol.Joined{Epoch: "e1"}, client.Fresh},
	} {
		if got := cur.Outcome(c.j); got != c.want {
			t.Errorf("Outcome(%+v) = %v, want %v", c.j, got, c.want)
		}
	}
}
