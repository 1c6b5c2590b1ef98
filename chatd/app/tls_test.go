package app_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
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
	srv := chatdtest.StartWith(t, []string{"--allow-anonymous",
		"--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-key-file", filepath.Join(dir, "tls.key"),
	})
	addr := srv.Addr // srv.URL says ws://, wrong here
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
