package admin

import (
	"log/slog"
	"time"

	"github.com/ringchat/ringchat/chatd/bearer"
)

// Tokens are the bearer tokens the admin API accepts, read from a file
// (one per line) that is read again while chatd runs, so that a token is
// rotated by adding the new one, moving its users over, then removing the
// old one. The file's rules are the server API keys' (chatd/bearer): only
// SHA-256 digests of the tokens are kept in memory.
type Tokens = bearer.Set

// LoadTokens reads the token file; it must hold at least one token.
// interval bounds how often it is read again (0: at every request).
func LoadTokens(path string, interval time.Duration, log *slog.Logger) (*Tokens, error) {
	return bearer.Load(path, "token", "admin tokens", interval, log)
}
