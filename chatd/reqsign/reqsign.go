// Package reqsign signs the HTTP requests chatd makes to an application's
// backend — the hooks' calls and the event stream's batches — and checks
// such a signature, for backends written in Go, chatctl sink and tests
// (docs/api.md, "Authenticating chatd"). It imports nothing of chatd, so a
// small binary (chatctl) can verify without the hooks' dependencies.
package reqsign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Headers of a signed request.
const (
	// HeaderTimestamp is the signing time, in Unix seconds.
	HeaderTimestamp = "X-Ringchat-Timestamp"
	// HeaderSignature is "v1=" and the hex HMAC-SHA256, keyed with the
	// secret, of the timestamp, a ".", and the body.
	HeaderSignature = "X-Ringchat-Signature"
)

// Sign returns the timestamp and signature headers of a request body.
// The timestamp is signed with the body so a backend that refuses old
// timestamps refuses replays too.
func Sign(secret []byte, now time.Time, body []byte) (timestamp, signature string) {
	timestamp = strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return timestamp, "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request's signature headers against its body; maxAge
// bounds how far the timestamp may be from now (0: any age).
func Verify(secret []byte, now time.Time, maxAge time.Duration, timestamp, signature string, body []byte) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if maxAge > 0 {
		if age := now.Sub(time.Unix(ts, 0)); age > maxAge || age < -maxAge {
			return false
		}
	}
	_, want := Sign(secret, time.Unix(ts, 0), body)
	return hmac.Equal([]byte(want), []byte(signature))
}
