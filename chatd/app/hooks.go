package app

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"

	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/eventstream"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/metrics"
)

// hookSecret reads --hook-secret-file (nil without one).
func hookSecret(cfg config.HookConfig) ([]byte, error) {
	if cfg.SecretFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("read --hook-secret-file: %w", err)
	}
	// A trailing newline is an editor's, not the secret's.
	secret := bytes.TrimSpace(b)
	if len(secret) == 0 {
		return nil, errors.New("--hook-secret-file is empty")
	}
	return secret, nil
}

// newStreamer builds the event stream of the configuration (nil without
// --event-stream-url).
func newStreamer(cfg config.Config, m *metrics.Metrics, log *slog.Logger) (*eventstream.Streamer, error) {
	if cfg.Hooks.StreamURL == "" {
		return nil, nil
	}
	secret, err := hookSecret(cfg.Hooks)
	if err != nil {
		return nil, err
	}
	log.Info("event stream configured", "url_host", hostOf(cfg.Hooks.StreamURL), "batch", cfg.Hooks.StreamBatch, "timeout", cfg.Hooks.StreamTimeout.String(), "signed", secret != nil)
	return eventstream.New(eventstream.Config{
		URL:      cfg.Hooks.StreamURL,
		Node:     cfg.NodeName,
		Timeout:  cfg.Hooks.StreamTimeout,
		MaxBatch: cfg.Hooks.StreamBatch,
		Secret:   secret,
		Metrics:  metrics.NewEventStream(m),
		Log:      log.With("component", "eventstream"),
	}), nil
}

// hostOf is a URL's host, for logs (a URL may carry credentials).
func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// newHooks builds the backend hooks of the configuration; nil when none is
// configured, so a node without hooks pays nothing for them.
func newHooks(cfg config.HookConfig, m *metrics.Metrics, log *slog.Logger) (*hooks.Set, error) {
	if !cfg.Any() {
		return nil, nil
	}
	secret, err := hookSecret(cfg)
	if err != nil {
		return nil, err
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
