// Package bearer is a file of bearer secrets (the admin API's tokens, the
// server API's keys): one secret a line, read again while chatd runs so a
// secret rotates without a restart, kept in memory only as SHA-256
// digests and compared in constant time. Both APIs used to carry their own
// copy of this; the rules are one rule.
package bearer

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/filewatch"
)

// Secret rules: long enough not to be guessed, and only characters that
// travel in an Authorization header unchanged.
const (
	MinLen = 16
	MaxLen = 4096
	// maxFileBytes bounds the file.
	maxFileBytes = 64 << 10
)

// Set is the secrets of one file.
type Set struct {
	file *filewatch.File[digests]
}

// digests holds the digests of the accepted secrets.
type digests [][sha256.Size]byte

// Load reads the file at path; it must hold at least one secret. noun
// names a secret in error messages ("token", "key"); what names the set in
// the file's reload logs ("admin tokens", "API keys"). interval bounds how
// often the file is read again (0: at every request).
func Load(path, noun, what string, interval time.Duration, log *slog.Logger) (*Set, error) {
	f, err := filewatch.New(path, func(data []byte) (digests, error) { return parse(data, noun) }, filewatch.Options{
		What: what, MaxBytes: maxFileBytes, Interval: interval, Log: log,
	})
	if err != nil {
		return nil, err
	}
	return &Set{file: f}, nil
}

// parse reads a secret file: one secret per line; blank lines and lines
// starting with '#' are ignored, surrounding spaces trimmed. A secret is
// MinLen to MaxLen printable ASCII characters without spaces. Errors name
// the line, never its content.
func parse(data []byte, noun string) (digests, error) {
	var set digests
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), maxFileBytes)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if err := check(s, noun); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		set = append(set, sha256.Sum256([]byte(s)))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the %s file: %w", noun, err)
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no %s in the file (one per line; blank lines and lines starting with # are ignored)", noun)
	}
	return set, nil
}

func check(s, noun string) error {
	if len(s) < MinLen || len(s) > MaxLen {
		return fmt.Errorf("a %s must be %d to %d characters long, this one has %d", noun, MinLen, MaxLen, len(s))
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("character %d of the %s is not printable ASCII (spaces are not allowed inside a %s)", i+1, noun, noun)
		}
	}
	return nil
}

// Authorized reports whether an Authorization header carries one of the
// secrets with the Bearer scheme (in any case, as RFC 7235 has it). The
// comparison runs on digests, in constant time, against every secret.
func (s *Set) Authorized(header string) bool {
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
	for _, want := range s.file.Get() {
		match |= subtle.ConstantTimeCompare(digest[:], want[:])
	}
	return match == 1
}
