package api

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ringchat/ringchat/chatd/bearer"
)

// Keys are the API keys the server API accepts, read from a file (one per
// line) that is read again while chatd runs, so that a key is rotated by
// adding the new one, moving the callers over, then removing the old one.
// The file's rules are the admin tokens' (chatd/bearer): MinLen to MaxLen
// printable ASCII characters; only SHA-256 digests are kept in memory.
type Keys = bearer.Set

// LoadKeys reads the key file; it must hold at least one key. interval
// bounds how often it is read again (0: at every request). The file's
// reloads are logged as "API keys reloaded", a rewrite that does not parse
// as "keeping the current API keys" (naming the line, never a key).
func LoadKeys(path string, interval time.Duration, log *slog.Logger) (*Keys, error) {
	k, err := bearer.Load(path, "key", "API keys", interval, log)
	if err != nil {
		return nil, fmt.Errorf("load the API keys: %w", err)
	}
	return k, nil
}
