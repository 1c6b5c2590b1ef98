package app

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/metrics"
)

// newHooks builds the backend hooks of the configuration; nil when none is
// configured, so a node without hooks pays nothing for them.
func newHooks(cfg config.HookConfig, m *metrics.Metrics, log *slog.Logger) (*hooks.Set, error) {
	if !cfg.Any() {
		return nil, nil
	}
	var secret []byte
	if cfg.SecretFile != "" {
		b, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("read --hook-secret-file: %w", err)
		}
		// A trailing newline is an editor's, not the secret's.
		if secret = bytes.TrimSpace(b); len(secret) == 0 {
			return nil, errors.New("--hook-secret-file is empty")
		}
	}
	ep := func(url, policy string) hooks.Endpoint {
		return hooks.Endpoint{URL: url, OnFailure: hooks.Policy(policy)}
	}
	o := hooks.Options{
		Connect:         ep(cfg.ConnectURL, cfg.ConnectOnFailure),
		Join:            ep(cfg.JoinURL, cfg.JoinOnFailure),
		Send:            ep(cfg.SendURL, cfg.SendOnFailure),
		Retries:         cfg.Retries,
		BreakerFailures: cfg.BreakerFailures,
		BreakerOpen:     cfg.BreakerOpen,
		Secret:          secret,
	}
	o.Connect.Timeout = cfg.TimeoutOf(cfg.ConnectTimeout)
	o.Join.Timeout = cfg.TimeoutOf(cfg.JoinTimeout)
	o.Send.Timeout = cfg.TimeoutOf(cfg.SendTimeout)
	log.Info("backend hooks configured", "connect", cfg.ConnectURL != "", "join", cfg.JoinURL != "", "send", cfg.SendURL != "",
		"signed", secret != nil, "retries", cfg.Retries, "breaker_failures", cfg.BreakerFailures, "breaker_open", cfg.BreakerOpen.String())
	return hooks.New(o, m, log.With("component", "hooks")), nil
}
