package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/app"
	"github.com/ringchat/ringchat/chatd/config"
)

// TestEmptyJWTSecretFileRefusedAtStart: a secret file with nothing but
// white space is a start-up error, not a server that refuses every token.
func TestEmptyJWTSecretFileRefusedAtStart(t *testing.T) {
	for _, content := range []string{"", "\n", "  \r\n"} {
		file := filepath.Join(t.TempDir(), "jwt-secret")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load([]string{"--jwt-secret-file", file}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = app.Serve(context.Background(), cfg, ln, slog.New(slog.NewJSONHandler(io.Discard, nil)))
		ln.Close()
		if err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("secret file %q: Serve = %v, want an error saying it is empty", content, err)
		}
	}
}
