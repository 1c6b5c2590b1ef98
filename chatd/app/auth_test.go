package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// TestEmptyJWTSecretFileRefusedAtStart: a secret file with nothing but
// white space is a start-up error, not a server that refuses every token.
func TestEmptyJWTSecretFileRefusedAtStart(t *testing.T) {
	for _, content := range []string{"", "\n", "  \r\n"} {
		file := filepath.Join(t.TempDir(), "jwt-secret")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := chatdtest.StartErr(t, "--jwt-secret-file", file); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("secret file %q: Serve = %v, want an error saying it is empty", content, err)
		}
	}
}
