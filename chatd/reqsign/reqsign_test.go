package reqsign_test

import (
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/reqsign"
)

// TestVerify: Verify accepts what Sign made, and refuses another body,
// another secret, and a timestamp older than maxAge (a replay).
func TestVerify(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(`{"hook":"join"}`)
	now := time.Now()
	maxAge := time.Minute
	ts, sig := reqsign.Sign(secret, now, body)
	if !reqsign.Verify(secret, now, maxAge, ts, sig, body) {
		t.Fatal("a fresh signature does not verify")
	}
	if reqsign.Verify(secret, now, maxAge, ts, sig, []byte(`{"hook":"send"}`)) || reqsign.Verify([]byte("other"), now, maxAge, ts, sig, body) {
		t.Fatal("a signature verifies another body or secret")
	}
	if reqsign.Verify(secret, now.Add(2*maxAge), maxAge, ts, sig, body) {
		t.Fatal("a signature older than maxAge verifies")
	}
}
