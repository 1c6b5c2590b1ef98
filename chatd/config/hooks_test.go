package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestHookFlags: the --hook-* flags and their CHATD_ twins, the per-hook
// timeout falling back to --hook-timeout, the connect hook counting as a
// way to authenticate, and the values Validate refuses.
func TestHookFlags(t *testing.T) {
	c, err := Load([]string{"--hook-connect-url", "http://backend/hooks/connect", "--hook-join-timeout", "300ms"}, env(map[string]string{
		"CHATD_HOOK_SEND_URL":         "https://backend/hooks/send",
		"CHATD_HOOK_SEND_ON_FAILURE":  "allow",
		"CHATD_HOOK_TIMEOUT":          "1s",
		"CHATD_HOOK_BREAKER_FAILURES": "9",
		"CHATD_HOOK_SECRET_FILE":      "/run/secrets/hook",
	}), io.Discard)
	if err != nil {
		t.Fatalf("a connect hook alone is a way to authenticate: %v", err)
	}
	h := c.Hooks
	if h.ConnectURL != "http://backend/hooks/connect" || h.SendURL != "https://backend/hooks/send" || h.SendOnFailure != "allow" ||
		h.JoinOnFailure != "deny" || h.BreakerFailures != 9 || h.SecretFile != "/run/secrets/hook" || !h.Any() {
		t.Fatalf("hooks %+v", h)
	}
	if h.TimeoutOf(h.JoinTimeout) != 300*time.Millisecond || h.TimeoutOf(h.SendTimeout) != time.Second {
		t.Fatalf("timeouts: join %v send %v", h.TimeoutOf(h.JoinTimeout), h.TimeoutOf(h.SendTimeout))
	}
	for args, want := range map[string]string{
		"--hook-join-url ftp://x/":     "--hook-join-url must be an http",
		"--hook-send-on-failure maybe": "--hook-send-on-failure must be deny or allow",
		"--hook-timeout 0s":            "--hook-timeout must be positive",
		"--hook-retries -1":            "--hook-retries must not be negative",
		"--hook-breaker-failures 0":    "--hook-breaker-failures must be positive",
		"--hook-connect-timeout -1s":   "--hook-connect-timeout must not be negative",
	} {
		_, err := Load(append([]string{"--allow-anonymous"}, strings.Fields(args)...), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}
