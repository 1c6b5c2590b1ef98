package admin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/filewatch"
)

// Token rules: long enough not to be guessed, and only characters that
// travel in an Authorization header unchanged.
const (
	MinTokenLen = 16
	MaxTokenLen = 4096
	// maxTokenFileBytes bounds the token file.
	maxTokenFileBytes = 64 << 10
)

// Tokens are the bearer tokens the admin API accepts, read from a file
// (one per line) that is read again while chatd runs, so that a token is
// rotated by adding the new one, moving its users over, then removing the
// old one. Only SHA-256 digests of the tokens are kept in memory.
type Tokens struct {
	file *filewatch.File[tokenSet]
}

// tokenSet holds the digests of the accepted tokens.
type tokenSet [][sha256.Size]byte

// LoadTokens reads the token file; it must hold at least one token.
// interval bounds how often it is read again (0: at every request).
func LoadTokens(path string, interval time.Duration, log *slog.Logger) (*Tokens, error) {
	f, err := filewatch.New(path, parseTokens, filewatch.Options{
		What: "admin tokens", MaxBytes: maxTokenFileBytes, Interval: interval, Log: log,
	})
	if err != nil {
		return nil, err
	}
	return &Tokens{file: f}, nil
}

// parseTokens reads a token file: one token per line; blank lines and
// lines starting with '#' are ignored, surrounding spaces trimmed. A token
// is MinTokenLen to MaxTokenLen printable ASCII characters without spaces.
// Errors name the line, never its content.
func parseTokens(data []byte) (tokenSet, error) {
	var set tokenSet
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), maxTokenFileBytes)
	for line := 1; sc.Scan(); line++ {
		tok := strings.TrimSpace(sc.Text())
		if tok == "" || strings.HasPrefix(tok, "#") {
			continue
		}
		if err := checkToken(tok); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		set = append(set, sha256.Sum256([]byte(tok)))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(set) == 0 {
		return nil, errors.New("no token in the file (one per line; blank lines and lines starting with # are ignored)")
	}
	return set, nil
}

func checkToken(tok string) error {
	if len(tok) < MinTokenLen || len(tok) > MaxTokenLen {
		return fmt.Errorf("a token must be %d to %d characters long, this one has %d", MinTokenLen, MaxTokenLen, len(tok))
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("character %d of the token is not printable ASCII (spaces are not allowed inside a token)", i+1)
		}
	}
	return nil
}

// Authorized reports whether an Authorization header carries one of the
// tokens with the Bearer scheme (in any case, as RFC 7235 has it). The
// comparison runs on digests, in constant time, against every token.
func (t *Tokens) Authorized(header string) bool {
	scheme, got, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got = strings.TrimSpace(got)
	if got == "" {
		return false
	}
	digest := sha256.Sum256([]byte(got))
	match := 0
	for _, want := range t.file.Get() {
		match |= subtle.ConstantTimeCompare(digest[:], want[:])
	}
	return match == 1
}
