package resources

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// randomBase64 is n random bytes in standard base64: what chatd's gossip
// keyring takes as a key, and a bearer token that survives any header.
func randomBase64(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a random secret: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
