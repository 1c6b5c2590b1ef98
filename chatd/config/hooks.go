package config

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"
)

// HookConfig configures the backend hooks (chatd/hooks; docs/api.md,
// "Hooks").
type HookConfig struct {
	// ConnectURL, JoinURL and SendURL turn the hooks on (empty: off).
	ConnectURL, JoinURL, SendURL string
	// Timeout bounds one attempt of a hook without a timeout of its own
	// (ConnectTimeout, JoinTimeout, SendTimeout; 0: Timeout).
	Timeout                                  time.Duration
	ConnectTimeout, JoinTimeout, SendTimeout time.Duration
	// The failure policies: "deny" or "allow".
	ConnectOnFailure, JoinOnFailure, SendOnFailure string
	// Retries are extra attempts of a failed call.
	Retries int
	// BreakerFailures consecutive failures open a hook's breaker for
	// BreakerOpen.
	BreakerFailures int
	BreakerOpen     time.Duration
	// SecretFile holds the secret that signs hook requests (and the event
	// stream's).
	SecretFile string
	// StreamURL turns the event stream on: every committed room log entry
	// is POSTed there in batches (chatd/eventstream; empty: off).
	StreamURL string
	// StreamTimeout bounds one event stream POST; StreamBatch the entries
	// of one.
	StreamTimeout time.Duration
	StreamBatch   int
}

// Any reports whether a hook is configured.
func (h *HookConfig) Any() bool {
	return h.ConnectURL != "" || h.JoinURL != "" || h.SendURL != ""
}

// TimeoutOf returns a hook's timeout: its own, or --hook-timeout.
func (h *HookConfig) TimeoutOf(own time.Duration) time.Duration {
	if own > 0 {
		return own
	}
	return h.Timeout
}

// addHookFlags declares the --hook-* flags.
func addHookFlags(fs *flag.FlagSet, h *HookConfig) {
	fs.StringVar(&h.ConnectURL, "hook-connect-url", "", "backend URL that decides the identity of hellos without a JWT (e.g. from the session cookie); empty: no connect hook")
	fs.StringVar(&h.JoinURL, "hook-join-url", "", "backend URL that allows or refuses every join and resume; empty: no join hook")
	fs.StringVar(&h.SendURL, "hook-send-url", "", "backend URL that allows, refuses or rewrites every room message before it is stored; empty: no send hook")
	fs.DurationVar(&h.Timeout, "hook-timeout", 2*time.Second, "deadline of one hook request, for the hooks without a timeout of their own")
	fs.DurationVar(&h.ConnectTimeout, "hook-connect-timeout", 0, "deadline of one connect hook request (0: --hook-timeout)")
	fs.DurationVar(&h.JoinTimeout, "hook-join-timeout", 0, "deadline of one join hook request (0: --hook-timeout)")
	fs.DurationVar(&h.SendTimeout, "hook-send-timeout", 0, "deadline of one send hook request (0: --hook-timeout)")
	fs.StringVar(&h.ConnectOnFailure, "hook-connect-on-failure", "deny", "when the connect hook's backend fails: deny (close 1013) or allow (authenticate as without the hook)")
	fs.StringVar(&h.JoinOnFailure, "hook-join-on-failure", "deny", "when the join hook's backend fails: deny (error unavailable) or allow")
	fs.StringVar(&h.SendOnFailure, "hook-send-on-failure", "deny", "when the send hook's backend fails: deny (error unavailable) or allow (the text unchanged)")
	fs.IntVar(&h.Retries, "hook-retries", 1, "extra attempts of a failed connect or join hook call, and of a send hook call carrying a cid (5xx, timeouts, unreachable)")
	fs.IntVar(&h.BreakerFailures, "hook-breaker-failures", 5, "consecutive failed attempts of a hook that open its circuit breaker (calls then fail at once)")
	fs.DurationVar(&h.BreakerOpen, "hook-breaker-open", 5*time.Second, "how long an open hook circuit breaker fails calls before it lets one through to probe the backend")
	fs.StringVar(&h.SecretFile, "hook-secret-file", "", "file holding a secret that signs every hook request and event stream batch (X-Ringchat-Signature, HMAC-SHA256); empty: unsigned")
	fs.StringVar(&h.StreamURL, "event-stream-url", "", "backend URL that receives every committed message and deletion of the rooms this node owns, in batches, at least once and in each room's order (docs/api.md, \"Event stream\"); empty: no event stream")
	fs.DurationVar(&h.StreamTimeout, "event-stream-timeout", 5*time.Second, "deadline of one event stream POST; a batch not accepted in time is sent again")
	fs.IntVar(&h.StreamBatch, "event-stream-batch", 500, "most entries in one event stream POST")
}

// validate checks the hook settings.
func (h *HookConfig) validate() []error {
	var errs []error
	for _, u := range []struct{ flag, v string }{{"hook-connect-url", h.ConnectURL}, {"hook-join-url", h.JoinURL}, {"hook-send-url", h.SendURL}, {"event-stream-url", h.StreamURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("--%s must be an http:// or https:// URL, got %q", u.flag, u.v))
		}
	}
	for _, p := range []struct{ flag, v string }{{"hook-connect-on-failure", h.ConnectOnFailure}, {"hook-join-on-failure", h.JoinOnFailure}, {"hook-send-on-failure", h.SendOnFailure}} {
		if p.v != "deny" && p.v != "allow" {
			errs = append(errs, fmt.Errorf("--%s must be deny or allow, got %q", p.flag, p.v))
		}
	}
	if h.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--hook-timeout must be positive, got %s", h.Timeout))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"hook-connect-timeout", h.ConnectTimeout}, {"hook-join-timeout", h.JoinTimeout}, {"hook-send-timeout", h.SendTimeout}, {"hook-breaker-open", h.BreakerOpen}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("--%s must not be negative, got %s", d.flag, d.v))
		}
	}
	if h.BreakerOpen == 0 {
		errs = append(errs, errors.New("--hook-breaker-open must be positive"))
	}
	if h.Retries < 0 {
		errs = append(errs, fmt.Errorf("--hook-retries must not be negative, got %d", h.Retries))
	}
	if h.StreamTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--event-stream-timeout must be positive, got %s", h.StreamTimeout))
	}
	if h.StreamBatch < 1 || h.StreamBatch > 10000 {
		errs = append(errs, fmt.Errorf("--event-stream-batch must be between 1 and 10000, got %d", h.StreamBatch))
	}
	if h.BreakerFailures <= 0 {
		errs = append(errs, fmt.Errorf("--hook-breaker-failures must be positive, got %d", h.BreakerFailures))
	}
	return errs
}
