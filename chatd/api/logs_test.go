package api_test

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// chatd's output never holds an API key, at the most verbose log level:
// requests with right, wrong and nearly right keys, the key file rotated
// (the reload is logged), then broken in a way whose error could quote a
// key (kept, logged once).
func TestNoKeyInLogs(t *testing.T) {
	const interval = 50 * time.Millisecond
	keys := keyFile(t, keyA)
	p := chatdtest.StartProcess(t, "--api-key-file", keys, "--auth-reload-interval", interval.String(), "--log-level", "debug")
	base := "http://" + p.AdminAddr
	status := func(key string) int {
		return call(t, http.MethodPost, base, messagesPath("r"), key, []byte(`{"text":"hi","idempotency_key":"k"}`)).status
	}
	for key, want := range map[string]int{keyA: 200, keyA + "x": 401, keyB: 401} {
		if got := status(key); got != want {
			t.Fatalf("key %q: %d, want %d", key[:8], got, want)
		}
	}
	writeKeys(t, keys, keyA+"\n"+keyB+"\n")
	chatdtest.Eventually(t, chatdtest.Timeout+20*interval, "key B accepted", func() (bool, string) {
		return status(keyB) == 200, "not yet"
	})
	writeKeys(t, keys, keyB+" "+keyA+"\n")
	chatdtest.Eventually(t, chatdtest.Timeout+20*interval, "the broken file noticed", func() (bool, string) {
		status(keyB) // a request makes the node look at the file
		return p.Logs().Contains(`"msg":"keeping the current API keys"`), "not yet"
	})
	if status(keyA) != 200 || status(keyB) != 200 {
		t.Fatal("a broken rewrite took the keys in use away")
	}
	logs := p.Logs().String()
	if !strings.Contains(logs, `"msg":"API keys reloaded"`) || !strings.Contains(logs, `"api":true`) {
		t.Fatalf("the log lacks the reload or the start line's api:true:\n%s", logs)
	}
	for _, key := range []string{keyA, keyB} {
		for _, form := range []string{key, base64.StdEncoding.EncodeToString([]byte(key)), base64.RawURLEncoding.EncodeToString([]byte(key))} {
			if strings.Contains(logs, form) {
				t.Fatalf("the log holds a key (%q):\n%s", form, logs)
			}
		}
	}
}
