// Command chatd is ringchat's WebSocket chat server. See docs/configuration.md
// for its flags and docs/protocol.md for what clients speak to it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/ringchat/ringchat/chatd/app"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/version"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.Load(args, os.Getenv, os.Stderr)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		return 2
	}
	if cfg.Version {
		fmt.Println("chatd", version.Version)
		return 0
	}
	log := newLogger(cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("chatd failed", "err", fmt.Errorf("listen on %s: %w", cfg.Listen, err))
		return 1
	}
	if err := app.Serve(ctx, cfg, ln, log); err != nil {
		log.Error("chatd failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
