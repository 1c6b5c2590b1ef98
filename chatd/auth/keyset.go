package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/go-jose/go-jose/v4"
)

// MaxKeySetBytes bounds a JWKS file: a key set of a few dozen RSA keys is
// a few tens of KiB.
const MaxKeySetBytes = 1 << 20

// KeySet is a set of verification keys, each named by its key id ("kid"),
// read from a JSON Web Key Set (RFC 7517). It is immutable once parsed and
// safe for concurrent use. A token whose header names a kid is verified
// with that key only, and only with the algorithm that key is for.
type KeySet struct {
	byKID map[string]verifyKey
	// skipped lists keys left out, with why, for the log.
	skipped []string
}

// Len is the number of usable keys.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byKID)
}

// KeyIDs lists the usable keys' ids, sorted.
func (s *KeySet) KeyIDs() []string {
	if s == nil {
		return nil
	}
	ids := make([]string, 0, len(s.byKID))
	for kid := range s.byKID {
		ids = append(ids, kid)
	}
	slices.Sort(ids)
	return ids
}

// Skipped lists the keys of the set that are not used, with the reason
// (a key for encryption, an algorithm chatd does not verify), so that the
// caller can log them.
func (s *KeySet) Skipped() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.skipped)
}

// only returns the set's single key, if it has exactly one.
func (s *KeySet) only() (verifyKey, bool) {
	if s.Len() != 1 {
		return verifyKey{}, false
	}
	for _, k := range s.byKID {
		return k, true
	}
	return verifyKey{}, false
}

// jwkHeader is the part of a JWK read before the key itself, to decide
// whether the key is for chatd at all.
type jwkHeader struct {
	KID string `json:"kid"`
	KTY string `json:"kty"`
	Use string `json:"use"`
	Alg string `json:"alg"`
}

// ParseKeySet reads a JSON Web Key Set: {"keys":[{...},...]}. Every key
// must carry a unique, non-empty "kid". RSA keys (at least 2048 bits) are
// for RS256, EC P-256 keys for ES256, symmetric ("oct") keys of at least
// 32 bytes for HS256; an "alg", when given, must be that algorithm. Keys
// with "use" other than "sig", or an "alg" chatd does not verify, are
// skipped (see Skipped); a private key anywhere is an error, as is a set
// without a usable key.
func ParseKeySet(data []byte) (*KeySet, error) {
	if len(data) > MaxKeySetBytes {
		return nil, fmt.Errorf("key set is %d bytes, more than %d", len(data), MaxKeySetBytes)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`not a JSON Web Key Set: no "keys" array`)
	}
	s := &KeySet{byKID: make(map[string]verifyKey)}
	for i, raw := range doc.Keys {
		var h jwkHeader
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		name := fmt.Sprintf("key %d", i)
		if h.KID != "" {
			name = fmt.Sprintf("key %d (kid %q)", i, h.KID)
		}
		if h.KID == "" {
			return nil, fmt.Errorf("%s has no \"kid\": every key of the set needs one, so that a token names the key it was signed with", name)
		}
		if _, dup := s.byKID[h.KID]; dup {
			return nil, fmt.Errorf("%s: another key has the same kid", name)
		}
		if h.Use != "" && h.Use != "sig" {
			s.skipped = append(s.skipped, fmt.Sprintf("%s: use %q, not sig", name, h.Use))
			continue
		}
		if h.Alg != "" && !slices.Contains([]string{"HS256", "RS256", "ES256"}, h.Alg) {
			s.skipped = append(s.skipped, fmt.Sprintf("%s: alg %q, which chatd does not verify (HS256, RS256, ES256)", name, h.Alg))
			continue
		}
		k, err := parseJWK(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if h.Alg != "" && h.Alg != k.alg {
			return nil, fmt.Errorf("%s: alg %q does not fit the key, which is for %s", name, h.Alg, k.alg)
		}
		s.byKID[h.KID] = k
	}
	if len(s.byKID) == 0 {
		return nil, errors.New("the key set has no key chatd can verify tokens with")
	}
	return s, nil
}

// parseJWK turns one JWK into a verification key bound to its algorithm.
func parseJWK(raw []byte) (verifyKey, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return verifyKey{}, fmt.Errorf("parse: %w", err)
	}
	switch k := jwk.Key.(type) {
	case []byte:
		if len(k) < MinHMACSecretLen {
			return verifyKey{}, fmt.Errorf("symmetric key is %d bytes; HS256 needs at least %d", len(k), MinHMACSecretLen)
		}
		return verifyKey{alg: "HS256", key: slices.Clone(k)}, nil
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return verifyKey{}, errors.New("it is a private key; give chatd the public key only")
	default:
		return verifyKeyFor(jwk.Key)
	}
}
