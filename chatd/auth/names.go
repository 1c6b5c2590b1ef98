package auth

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Limits on identifiers. User IDs come from a trusted issuer and are only
// bounded so that they fit in logs and messages; anonymous names are typed
// by users and shown to others, hence the tighter, character-based limit.
const (
	// MaxUserIDLen is the longest accepted JWT "sub", in bytes.
	MaxUserIDLen = 64
	// MaxNameLen is the longest accepted anonymous name, in characters
	// (Unicode code points).
	MaxNameLen = 32
)

// validateUserID checks a token subject. Control and other non-printable
// characters are refused because user IDs end up in logs and in other
// clients' terminals, where they could forge log lines or escape sequences.
func validateUserID(id string) error {
	if id == "" {
		return errors.New("user id is empty")
	}
	if len(id) > MaxUserIDLen {
		return fmt.Errorf("user id is %d bytes, limit is %d", len(id), MaxUserIDLen)
	}
	if !utf8.ValidString(id) {
		return errors.New("user id is not valid UTF-8")
	}
	for i, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("user id has non-printable character %U at byte %d", r, i)
		}
	}
	return nil
}

// validateName checks an anonymous name. The alphabet is deliberately
// small, without spaces or punctuation beyond '_', '-' and '.', so that
// names cannot imitate system messages or other users through lookalike
// spacing, while still allowing letters of any script.
func validateName(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("name is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(name); n == 0 || n > MaxNameLen {
		return fmt.Errorf("name has %d characters, want 1 to %d", n, MaxNameLen)
	}
	for i, r := range name {
		if !nameRune(r) {
			return fmt.Errorf("name has disallowed character %U at byte %d", r, i)
		}
	}
	return nil
}

// nameRune reports whether r may appear in an anonymous name.
func nameRune(r rune) bool {
	switch r {
	case '_', '-', '.':
		return true
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}
