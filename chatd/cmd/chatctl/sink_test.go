package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/reqsign"
)

// sink receives a real node's event stream and prints each event as sent;
// a batch with a bad signature is refused 401; the signature check agrees
// with chatd's signer.
func TestSink(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("sink-test-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"sink", "--json", "--listen", "127.0.0.1:0", "--secret-file", secret}, strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	}()
	var addr string
	chatdtest.Eventually(t, chatdtest.Timeout, "chatctl sink listening", func() (bool, string) {
		m := regexp.MustCompile(`"addr":"([^"]+)"`).FindStringSubmatch(out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil, out.String() + errOut.String()
	})

	srv := chatdtest.Start(t, "--allow-anonymous", "--event-stream-url", "http://"+addr+"/events", "--hook-secret-file", secret)
	ann := chatdtest.Connect(t, srv.URL, "ann")
	ann.Join("lobby")
	a1 := ann.Say("lobby", "c1", "first")
	a2 := ann.Say("lobby", "c2", "second")
	chatdtest.Eventually(t, chatdtest.Timeout, "both messages printed by the sink", func() (bool, string) {
		s := out.String()
		return strings.Contains(s, `"id":"`+a1.MID+`"`) && strings.Contains(s, `"id":"`+a2.MID+`"`), s
	})
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("sink printed a line that is not JSON: %q", line)
		}
	}

	body := []byte(`{"node":"x","events":[]}`)
	post := func(ts, sig string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/events", bytes.NewReader(body))
		req.Header.Set("X-Ringchat-Timestamp", ts)
		req.Header.Set("X-Ringchat-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ts, sig := reqsign.Sign([]byte("sink-test-secret"), time.Now(), body)
	if code := post(ts, sig); code != http.StatusOK {
		t.Fatalf("a batch signed as chatd signs: %d", code)
	}
	bad := sig[:len(sig)-1] + "0"
	if strings.HasSuffix(sig, "0") {
		bad = sig[:len(sig)-1] + "1"
	}
	if code := post(ts, bad); code != http.StatusUnauthorized {
		t.Fatalf("a batch with a bad signature: %d, want 401", code)
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("sink exited %d; stderr %q", code, errOut.String())
	}
}
