// Package app assembles a chatd node from its configuration: the
// authenticator, the hub, the metrics and the HTTP server. cmd/chatd and the
// tests both start nodes through it, so the tests run exactly what ships.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/cluster"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/server"
	"github.com/ringchat/ringchat/chatd/session"
	"github.com/ringchat/ringchat/chatd/version"
)

// Serve runs one chatd node with cfg on ln until ctx is cancelled, then shuts
// it down gracefully. The listener is passed in so tests (and a future
// supervisor) can pick the address.
func Serve(ctx context.Context, cfg config.Config, ln net.Listener, log *slog.Logger) error {
	authn, err := newAuthenticator(cfg)
	if err != nil {
		return err
	}
	m := metrics.New()
	h := hub.New(hub.Config{
		HistorySize:     cfg.HistorySize,
		DedupeWindow:    cfg.DedupeWindow,
		PresenceListMax: cfg.PresenceListMax,
		TypingInterval:  time.Second,
		RoomIdleTTL:     cfg.RoomIdleTTL,
	}, m, log)
	node := cluster.New(cluster.Config{
		Self:              cfg.NodeName,
		ReplicationFactor: 2,
		RouteTimeout:      10 * time.Second,
		CallTimeout:       5 * time.Second,
		HandoffGrace:      10 * time.Second,
	}, h, owner.Config{
		HistorySize:      cfg.HistorySize,
		DedupeWindow:     cfg.DedupeWindow,
		PresenceListMax:  cfg.PresenceListMax,
		RoomIdleTTL:      cfg.RoomIdleTTL,
		TypingCoalesce:   250 * time.Millisecond,
		PresenceCoalesce: time.Second,
	}, log)
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan struct{})
	go func() {
		defer close(nodeDone)
		node.Run(nodeCtx, nil)
	}()
	defer func() {
		stopNode()
		<-nodeDone
		node.Close()
	}()

	srv := server.New(ServerConfig(cfg), h, authn, m, log)
	log.Info("chatd listening", "addr", ln.Addr().String(), "node", cfg.NodeName,
		"version", version.Version, "auth", strings.Join(authn.Modes(), ","))
	return srv.Serve(ctx, ln)
}

func newAuthenticator(cfg config.Config) (*auth.Authenticator, error) {
	ac := auth.Config{
		Issuer:         cfg.JWTIssuer,
		Audience:       cfg.JWTAudience,
		AllowAnonymous: cfg.AllowAnonymous,
		Leeway:         cfg.JWTLeeway,
		RoomsClaim:     cfg.JWTRoomsClaim,
	}
	switch {
	case cfg.JWTSecret != "":
		ac.HMACSecret = []byte(cfg.JWTSecret)
	case cfg.JWTSecretFile != "":
		b, err := os.ReadFile(cfg.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read --jwt-secret-file: %w", err)
		}
		ac.HMACSecret = []byte(strings.TrimSpace(string(b)))
	}
	if cfg.JWTPublicKeyFile != "" {
		pem, err := auth.ReadPublicKeyFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, err
		}
		ac.PublicKeyPEM = pem
	}
	a, err := auth.New(ac)
	if err != nil {
		return nil, fmt.Errorf("configure authentication: %w", err)
	}
	return a, nil
}

// ServerConfig maps the flat configuration onto the server's settings.
func ServerConfig(cfg config.Config) server.Config {
	var origins []string
	for _, o := range strings.Split(cfg.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	return server.Config{
		MaxConnections:      cfg.MaxConnections,
		MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		RetryAfter:          5 * time.Second,
		AllowedOrigins:      origins,
		HandshakeTimeout:    cfg.HandshakeTimeout,
		ReadHeaderTimeout:   cfg.HandshakeTimeout,
		ShutdownTimeout:     cfg.ShutdownTimeout,
		Session: session.Config{
			ServerID:        cfg.NodeName,
			MaxFrameBytes:   cfg.MaxFrameBytes,
			MaxTextBytes:    cfg.MaxTextBytes,
			MaxRooms:        cfg.MaxRooms,
			RatePerSecond:   cfg.RatePerSecond,
			RateBurst:       cfg.RateBurst,
			RateAbuseLimit:  cfg.RateAbuseLimit,
			RateAbuseWindow: 10 * time.Second,
			QueueFrames:     cfg.SendQueue,
			HelloTimeout:    cfg.HelloTimeout,
			TokenLeeway:     cfg.JWTLeeway,
			PingInterval:    cfg.PingInterval,
			WriteTimeout:    cfg.WriteTimeout,
			BatchBytes:      32 << 10,
			HistoryLimit:    50,
			Limits: protocol.Limits{
				MaxFrameBytes:  cfg.MaxFrameBytes,
				MaxTextBytes:   cfg.MaxTextBytes,
				MaxRooms:       cfg.MaxRooms,
				RatePerSecond:  cfg.RatePerSecond,
				RateBurst:      cfg.RateBurst,
				HistoryKept:    cfg.HistorySize,
				PresenceListAt: cfg.PresenceListMax,
			},
		},
	}
}
