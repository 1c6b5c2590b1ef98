package api

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

// Key rules, as for the admin tokens: long enough not to be guessed, and
// only characters that travel in an Authorization header unchanged.
const (
	MinKeyLen = 16
	MaxKeyLen = 4096
	// maxKeyFileBytes bounds the key file.
	maxKeyFileBytes = 64 << 10
)

// Keys are the API keys the server API accepts, read from a file (one per
// line) that is read again while chatd runs, so that a key is rotated by
// adding the new one, moving the callers over, then removing the old one.
// Only SHA-256 digests of the keys are kept in memory.
type Keys struct {
	file *filewatch.File[keySet]
}

// keySet holds the digests of the accepted keys.
type keySet [][sha256.Size]byte

// LoadKeys reads the key file; it must hold at least one key. interval
// bounds how often it is read again (0: at every request). The file's
// reloads are logged as "API keys reloaded", a rewrite that does not parse
// as "keeping the current API keys" (naming the line, never a key).
func LoadKeys(path string, interval time.Duration, log *slog.Logger) (*Keys, error) {
	f, err := filewatch.New(path, parseKeys, filewatch.Options{
		What: "API keys", MaxBytes: maxKeyFileBytes, Interval: interval, Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("load the API keys: %w", err)
	}
	return &Keys{file: f}, nil
}

// parseKeys reads a key file: one key per line; blank lines and lines
// starting with '#' are ignored, surrounding spaces trimmed. A key is
// MinKeyLen to MaxKeyLen printable ASCII characters without spaces. Errors
// name the line, never its content.
func parseKeys(data []byte) (keySet, error) {
	var set keySet
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 1024), maxKeyFileBytes)
	for line := 1; sc.Scan(); line++ {
		key := strings.TrimSpace(sc.Text())
		if key == "" || strings.HasPrefix(key, "#") {
			continue
		}
		if err := checkKey(key); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		set = append(set, sha256.Sum256([]byte(key)))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the key file: %w", err)
	}
	if len(set) == 0 {
		return nil, errors.New("no key in the file (one per line; blank lines and lines starting with # are ignored)")
	}
	return set, nil
}

func checkKey(key string) error {
	if len(key) < MinKeyLen || len(key) > MaxKeyLen {
		return fmt.Errorf("a key must be %d to %d characters long, this one has %d", MinKeyLen, MaxKeyLen, len(key))
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("character %d of the key is not printable ASCII (spaces are not allowed inside a key)", i+1)
		}
	}
	return nil
}

// Authorized reports whether an Authorization header carries one of the
// keys with the Bearer scheme (in any case, as RFC 7235 has it). The
// comparison runs on digests, in constant time, against every key.
func (k *Keys) Authorized(header string) bool {
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
	for _, want := range k.file.Get() {
		match |= subtle.ConstantTimeCompare(digest[:], want[:])
	}
	return match == 1
}
