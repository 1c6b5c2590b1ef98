package hooks_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// backend is the application's backend as the tests run it: a real HTTP
// server on loopback that records every hook request, checks its
// signature, and answers what the test's decide says.
type backend struct {
	t      testing.TB
	srv    *httptest.Server
	secret []byte

	mu     sync.Mutex
	calls  map[string][]map[string]any // by hook
	bodies map[string][][]byte
	decide func(hook string, req map[string]any, r *http.Request) (status int, reply any)
}

// startBackend starts a backend answering with decide (allow when nil).
func startBackend(t testing.TB, secret []byte, decide func(hook string, req map[string]any, r *http.Request) (int, any)) *backend {
	t.Helper()
	b := &backend{t: t, secret: secret, calls: map[string][]map[string]any{}, bodies: map[string][][]byte{}, decide: decide}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hook := r.Header.Get("X-Ringchat-Hook")
	if b.secret != nil && !signedBy(b.secret, r.Header.Get("X-Ringchat-Timestamp"), r.Header.Get("X-Ringchat-Signature"), body) {
		b.t.Errorf("%s hook request with a bad signature: %q", hook, r.Header.Get("X-Ringchat-Signature"))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		b.t.Errorf("%s hook request with Content-Type %q", hook, ct)
	}
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		b.t.Errorf("%s hook request is not JSON: %v", hook, err)
	}
	if req["hook"] != hook {
		b.t.Errorf("hook %q in the body, %q in X-Ringchat-Hook", req["hook"], hook)
	}
	b.mu.Lock()
	b.calls[hook] = append(b.calls[hook], req)
	b.bodies[hook] = append(b.bodies[hook], body)
	decide := b.decide
	b.mu.Unlock()
	status, reply := http.StatusOK, any(map[string]string{"result": "allow"})
	if decide != nil {
		status, reply = decide(hook, req, r)
	}
	if status == 0 {
		return // the decider answered (or hung up) itself
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(reply)
}

// signedBy checks a request's signature as docs/api.md tells a backend
// to, independently of chatd's code: "v1=" and the hex HMAC-SHA256 of the
// timestamp, ".", and the body; a timestamp within a minute of now.
func signedBy(secret []byte, timestamp, signature string, body []byte) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp + "."))
	mac.Write(body)
	return hmac.Equal([]byte(signature), []byte("v1="+hex.EncodeToString(mac.Sum(nil))))
}

// url is where a hook is configured to post.
func (b *backend) url(hook string) string { return b.srv.URL + "/hooks/" + hook }

// requests returns the requests a hook received.
func (b *backend) requests(hook string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]map[string]any(nil), b.calls[hook]...)
}

// rawBodies returns the request bodies a hook received, as sent.
func (b *backend) rawBodies() map[string][][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string][][]byte, len(b.bodies))
	for k, v := range b.bodies {
		out[k] = append([][]byte(nil), v...)
	}
	return out
}

// allowUser is a connect reply naming user.
func allowUser(user string) map[string]string {
	return map[string]string{"result": "allow", "user": user}
}

// deny is a deny reply.
func deny(reason string) map[string]string {
	return map[string]string{"result": "deny", "reason": reason}
}

// hang holds a request until chatd gives up on it (its timeout closes the
// connection), as a backend that stopped answering does.
func hang(r *http.Request) (int, any) {
	<-r.Context().Done()
	return 0, nil
}
