package membership

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ParseKeyring reads a gossip keyring file: one key per line, the primary
// first. A line that is standard base64 of 16, 24 or 32 bytes is that key
// (`openssl rand -base64 32` makes one); otherwise a line of exactly 16, 24
// or 32 bytes is a key as it is. Base64 comes first because the base64 of a
// 16-byte key is itself 24 characters long, and read as it is it would be
// another key than the one meant. Surrounding whitespace and empty lines
// are ignored. Errors name the line, never its content.
func ParseKeyring(data []byte) ([][]byte, error) {
	var keys [][]byte
	lineOf := make(map[string]int)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, err := parseKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if first, dup := lineOf[string(key)]; dup {
			return nil, fmt.Errorf("line %d repeats the key of line %d", i+1, first)
		}
		lineOf[string(key)] = i + 1
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key: a keyring holds one key per line, the primary first")
	}
	return keys, nil
}

func parseKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err == nil && checkKey(b) == nil {
		return b, nil
	}
	if checkKey([]byte(s)) == nil {
		return []byte(s), nil
	}
	if err != nil {
		return nil, fmt.Errorf("a %d-character line is neither base64 nor a key of 16, 24 or 32 bytes", len(s))
	}
	return nil, fmt.Errorf("decoded from base64: %w", checkKey(b))
}

func checkKey(k []byte) error {
	switch len(k) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("key is %d bytes: an AES key must be 16, 24 or 32 bytes (AES-128, -192 or -256)", len(k))
}

// checkKeys checks a keyring: at least one key, each of a valid size,
// none twice.
func checkKeys(keys [][]byte) error {
	if len(keys) == 0 {
		return errors.New("keyring is empty")
	}
	for i, k := range keys {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("gossip key %d: %w", i+1, err)
		}
		for j := range i {
			if bytes.Equal(keys[j], k) {
				return fmt.Errorf("gossip key %d repeats key %d", i+1, j+1)
			}
		}
	}
	return nil
}

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// KeyringChange says what SetKeys changed.
type KeyringChange struct {
	// Added and Removed count keys installed and dropped.
	Added, Removed int
	// PrimaryChanged is true when gossip is now encrypted under another
	// key.
	PrimaryChanged bool
}

// Changed reports whether anything changed.
func (c KeyringChange) Changed() bool { return c.Added > 0 || c.Removed > 0 || c.PrimaryChanged }

// SetKeys makes the gossip keyring keys, primary first, while gossip runs.
// Keys are rotated in three steps, each applied on every node before the
// next begins: add the new key (a second line), make it primary (swap
// the lines), remove the old one. At every step each node can read what
// every other sends, so no member is lost.
//
// It fails, changing nothing, if gossip was started without keys (turning
// encryption on in a running cluster would cut this node off) or if keys
// is not a valid keyring.
func (m *Membership) SetKeys(keys [][]byte) (KeyringChange, error) {
	var change KeyringChange
	if m.keyring == nil {
		return change, errors.New("membership: gossip runs without encryption; keys can only be rotated, not added, at run time")
	}
	if err := checkKeys(keys); err != nil {
		return change, fmt.Errorf("membership: %w", err)
	}
	keys = cloneKeys(keys)
	wanted := func(k []byte) bool {
		return slices.ContainsFunc(keys, func(w []byte) bool { return bytes.Equal(w, k) })
	}

	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	ring := m.keyring
	installed := slices.Clone(ring.GetKeys())
	for _, k := range keys {
		if !slices.ContainsFunc(installed, func(i []byte) bool { return bytes.Equal(i, k) }) {
			if err := ring.AddKey(k); err != nil {
				return change, fmt.Errorf("membership: add a gossip key: %w", err)
			}
			change.Added++
		}
	}
	if !bytes.Equal(ring.GetPrimaryKey(), keys[0]) {
		if err := ring.UseKey(keys[0]); err != nil {
			return change, fmt.Errorf("membership: make the new gossip key primary: %w", err)
		}
		change.PrimaryChanged = true
	}

	// memberlist's Keyring.RemoveKey shifts the remaining keys down in
	// the very slice that gossip being decrypted at that moment may be
	// reading (GetKeys hands it out without a copy): a data race, unless
	// the key removed is the last one, which shifts nothing. So keys are
	// only ever removed from the end: down to the first unwanted one,
	// after which the wanted keys that were behind it are added back, in
	// their order (AddKey writes nothing a reader holds). For the few
	// microseconds in between, gossip under those keys is dropped as
	// undecryptable, which gossip's retransmissions absorb; in the usual
	// rotation the key removed is the last one and nothing is dropped.
	installed = slices.Clone(ring.GetKeys())
	first := slices.IndexFunc(installed, func(k []byte) bool { return !wanted(k) })
	if first < 0 {
		return change, nil
	}
	var readd [][]byte
	for i := len(installed) - 1; i >= first; i-- {
		if err := ring.RemoveKey(installed[i]); err != nil {
			return change, fmt.Errorf("membership: remove a gossip key: %w", err)
		}
		if wanted(installed[i]) {
			readd = append(readd, installed[i])
		} else {
			change.Removed++
		}
	}
	for i := len(readd) - 1; i >= 0; i-- {
		if err := ring.AddKey(readd[i]); err != nil {
			return change, fmt.Errorf("membership: add a gossip key back: %w", err)
		}
	}
	return change, nil
}

// KeyCount returns how many gossip keys are installed (0: gossip is not
// encrypted).
func (m *Membership) KeyCount() int {
	if m.keyring == nil {
		return 0
	}
	m.keyMu.Lock()
	defer m.keyMu.Unlock()
	return len(m.keyring.GetKeys())
}
