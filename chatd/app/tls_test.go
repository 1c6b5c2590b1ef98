package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/app"
	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/internal/testcert"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// TestServesTLS: with --tls-cert-file and --tls-key-file, chatd serves its
// HTTP endpoints over HTTPS and the chat over wss://, and a plain-text
// client gets nowhere.
func TestServesTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM := testcert.Write(t, dir, 1, time.Now())
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("bad test certificate")
	}
	cfg, err := config.Load([]string{"--allow-anonymous",
		"--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-key-file", filepath.Join(dir, "tls.key"),
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, cfg, ln, slog.New(slog.NewJSONHandler(io.Discard, nil))) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("chatd: %v", err)
		}
	})
	addr := ln.Addr().String()
	tlsCfg := &tls.Config{RootCAs: pool}

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}, Timeout: 10 * time.Second}
	resp, err := https.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("GET https /healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET https /healthz: %s", resp.Status)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	c, err := client.Connect(dctx, "wss://"+addr+"/ws", protocol.ClientFrame{Name: "ann"}, client.Options{TLSConfig: tlsCfg})
	if err != nil {
		t.Fatalf("wss connect: %v", err)
	}
	defer c.Close()
	if c.Welcome.User == "" {
		t.Fatalf("welcome %+v", c.Welcome)
	}

	if _, _, err := client.Dial(dctx, "ws://"+addr+"/ws", client.Options{}); err == nil {
		t.Fatal("a plain ws:// client got through a TLS listener")
	}
	if _, err := client.Connect(dctx, "wss://"+addr+"/ws", protocol.ClientFrame{Name: "bob"}, client.Options{}); err == nil {
		t.Fatal("a client that does not trust the certificate connected")
	}
}
