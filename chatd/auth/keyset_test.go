package auth_test

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/auth"
)

// jwk renders key as one JWK with kid (and alg, use when not empty).
func jwk(t *testing.T, key any, kid, alg, use string) json.RawMessage {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use}).MarshalJSON()
	if err != nil {
		t.Fatalf("marshal JWK %s: %v", kid, err)
	}
	return b
}

// jwks renders a key set document.
func jwks(t *testing.T, keys ...json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustKeySet(t *testing.T, doc []byte) *auth.KeySet {
	t.Helper()
	s, err := auth.ParseKeySet(doc)
	if err != nil {
		t.Fatalf("ParseKeySet: %v", err)
	}
	return s
}

// signKID signs claims with key under method, naming kid in the header
// (no kid when empty).
func signKID(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseKeySet(t *testing.T) {
	rsaPub, ecPub := &rsaKey().PublicKey, &ecKey().PublicKey
	s := mustKeySet(t, jwks(t,
		jwk(t, rsaPub, "rsa-2030", "RS256", "sig"),
		jwk(t, ecPub, "ec-1", "", ""),
		jwk(t, hmacSecret, "hs-1", "HS256", ""),
		jwk(t, &otherRSAKey().PublicKey, "enc-1", "RSA-OAEP", "enc"),
		jwk(t, &otherRSAKey().PublicKey, "ps-1", "PS256", "sig"),
	))
	if got := strings.Join(s.KeyIDs(), ","); got != "ec-1,hs-1,rsa-2030" || s.Len() != 3 {
		t.Fatalf("kids %q", got)
	}
	if sk := strings.Join(s.Skipped(), "; "); !strings.Contains(sk, `kid "enc-1"`) || !strings.Contains(sk, `use "enc"`) || !strings.Contains(sk, `kid "ps-1"`) || !strings.Contains(sk, `alg "PS256"`) {
		t.Fatalf("skipped: %s", sk)
	}

	weakRSA := mustRSA(1024)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for want, doc := range map[string][]byte{
		"not a JSON Web Key Set":              []byte("-----BEGIN PUBLIC KEY-----"),
		`no "keys" array`:                     []byte(`{"kid":"x"}`),
		`key 0 has no "kid"`:                  jwks(t, jwk(t, rsaPub, "", "", "")),
		`key 1 (kid "a"): another key`:        jwks(t, jwk(t, rsaPub, "a", "", ""), jwk(t, ecPub, "a", "", "")),
		`kid "rsapriv"): it is a private key`: jwks(t, jwk(t, rsaKey(), "rsapriv", "", "")),
		`kid "ecpriv"): it is a private key`:  jwks(t, jwk(t, ecKey(), "ecpriv", "", "")),
		"RSA key has 1024 bits":               jwks(t, jwk(t, &weakRSA.PublicKey, "weak", "", "")),
		"symmetric key is 16 bytes":           jwks(t, jwk(t, hmacSecret[:16], "short", "", "")),
		`alg "ES256" does not fit the key`:    jwks(t, jwk(t, rsaPub, "mix", "ES256", "")),
		"no key chatd can verify tokens":      jwks(t, jwk(t, &otherRSAKey().PublicKey, "enc-1", "", "enc")),
		"unsupported public key type":         jwks(t, jwk(t, edPub, "ed", "", "")),
		"more than":                           append([]byte(`{"keys":[]}`), make([]byte, auth.MaxKeySetBytes)...),
		`kid "junk"): parse`:                  []byte(`{"keys":[{"kid":"junk","kty":"RSA","n":"!!","e":"AQAB"}]}`),
	} {
		_, err := auth.ParseKeySet(doc)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseKeySet: %v, want an error containing %q", err, want)
		}
	}
	// A P-384 key parses but ES256 is P-256 only.
	p384 := mustEC(elliptic.P384())
	if _, err := auth.ParseKeySet(jwks(t, jwk(t, &p384.PublicKey, "p384", "", ""))); err == nil || !strings.Contains(err.Error(), "only P-256") {
		t.Errorf("P-384 key: %v", err)
	}
}

func TestKeySetVerification(t *testing.T) {
	rsaPub, ecPub := &rsaKey().PublicKey, &ecKey().PublicKey
	var current atomic.Pointer[auth.KeySet]
	current.Store(mustKeySet(t, jwks(t,
		jwk(t, rsaPub, "rsa-a", "RS256", "sig"),
		jwk(t, ecPub, "ec-b", "ES256", "sig"),
		jwk(t, hmacSecret, "hs-c", "", ""),
	)))
	set := newAuth(t, auth.Config{KeySet: current.Load})
	var one atomic.Pointer[auth.KeySet]
	one.Store(mustKeySet(t, jwks(t, jwk(t, rsaPub, "only", "", ""))))
	single := newAuth(t, auth.Config{KeySet: one.Load})
	rsaPEM := keyFile(t, pkixPEM(t, rsaPub))
	legacyRS := newAuth(t, auth.Config{PublicKeyPEM: rsaPEM})
	mixed := newAuth(t, auth.Config{HMACSecret: otherHMACSecret, KeySet: current.Load})
	alice := auth.Identity{UserID: "alice", ExpiresAt: now.Add(3600e9)}

	for _, tc := range []struct {
		name     string
		a        *auth.Authenticator
		token    string
		wantCode string
		reason   string
	}{
		{name: "RS256 with its kid", a: set, token: signKID(t, jwt.SigningMethodRS256, rsaKey(), "rsa-a", claims(nil))},
		{name: "ES256 with its kid", a: set, token: signKID(t, jwt.SigningMethodES256, ecKey(), "ec-b", claims(nil))},
		{name: "HS256 with its kid", a: set, token: signKID(t, jwt.SigningMethodHS256, hmacSecret, "hs-c", claims(nil))},
		{name: "unknown kid", a: set, token: signKID(t, jwt.SigningMethodRS256, rsaKey(), "rsa-z", claims(nil)),
			wantCode: auth.CodeTokenUnknownKey, reason: "token key unknown"},
		{name: "unknown kid, an algorithm no key of the set is for", a: single, token: signKID(t, jwt.SigningMethodES256, ecKey(), "gone", claims(nil)),
			wantCode: auth.CodeTokenUnknownKey, reason: "token key unknown"},
		{name: "kid of another key", a: set, token: signKID(t, jwt.SigningMethodES256, otherECKey(), "ec-b", claims(nil)),
			wantCode: auth.CodeTokenBadSignature},
		{name: "RSA kid, ES256 token", a: set, token: signKID(t, jwt.SigningMethodES256, ecKey(), "rsa-a", claims(nil)),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "alg confusion: HS256 keyed with the RSA public key under the RSA kid", a: set,
			token: signKID(t, jwt.SigningMethodHS256, rsaPEM, "rsa-a", claims(nil)), wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "kid not a string", a: set, token: rawToken(t, map[string]any{"alg": "HS256", "kid": 7}, claims(nil), []byte("x")),
			wantCode: auth.CodeTokenMalformed},
		{name: "no kid, several keys", a: set, token: signKID(t, jwt.SigningMethodRS256, rsaKey(), "", claims(nil)),
			wantCode: auth.CodeTokenUnknownKey, reason: "token key id (kid) required"},
		{name: "no kid, one key", a: single, token: signKID(t, jwt.SigningMethodRS256, rsaKey(), "", claims(nil))},
		{name: "no kid, one key, wrong alg", a: single, token: signKID(t, jwt.SigningMethodHS256, hmacSecret, "", claims(nil)),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "a kid without a key set is ignored", a: legacyRS, token: signKID(t, jwt.SigningMethodRS256, rsaKey(), "whatever", claims(nil))},
		{name: "no kid goes to the key without kid", a: mixed, token: signKID(t, jwt.SigningMethodHS256, otherHMACSecret, "", claims(nil))},
		{name: "a kid goes to the key set only", a: mixed, token: signKID(t, jwt.SigningMethodHS256, otherHMACSecret, "hs-c", claims(nil)),
			wantCode: auth.CodeTokenBadSignature},
		{name: "expired, known kid", a: set, token: signKID(t, jwt.SigningMethodRS256, rsaKey(), "rsa-a", claims(map[string]any{"exp": now.Unix() - 60})),
			wantCode: auth.CodeTokenExpired},
		{name: "alg none with a kid", a: set, token: rawToken(t, map[string]any{"alg": "none", "kid": "rsa-a"}, claims(nil), nil),
			wantCode: auth.CodeTokenAlgNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.a.Authenticate(tc.token, "")
			if tc.wantCode == "" {
				if err != nil || !identityEqual(got, alice) {
					t.Fatalf("Authenticate = %+v, %v", got, err)
				}
				return
			}
			ae := checkAuthError(t, err, tc.wantCode)
			if tc.reason != "" && ae.Reason != tc.reason {
				t.Errorf("reason %q, want %q", ae.Reason, tc.reason)
			}
		})
	}

	// Rotation: the key set changes under a running authenticator.
	rsaA := signKID(t, jwt.SigningMethodRS256, rsaKey(), "rsa-a", claims(nil))
	rsaNew := signKID(t, jwt.SigningMethodRS256, otherRSAKey(), "rsa-new", claims(nil))
	checkAuthError(t, func() error { _, err := set.Authenticate(rsaNew, ""); return err }(), auth.CodeTokenUnknownKey)
	current.Store(mustKeySet(t, jwks(t, jwk(t, rsaPub, "rsa-a", "", ""), jwk(t, &otherRSAKey().PublicKey, "rsa-new", "", ""))))
	for _, tok := range []string{rsaA, rsaNew} {
		if _, err := set.Authenticate(tok, ""); err != nil {
			t.Fatalf("both keys in the set: %v", err)
		}
	}
	current.Store(mustKeySet(t, jwks(t, jwk(t, &otherRSAKey().PublicKey, "rsa-new", "", ""))))
	checkAuthError(t, func() error { _, err := set.Authenticate(rsaA, ""); return err }(), auth.CodeTokenUnknownKey)
	if _, err := set.Authenticate(rsaNew, ""); err != nil {
		t.Fatalf("new key after the old one left: %v", err)
	}
	if modes := strings.Join(mixed.Modes(), ","); modes != "hs256,jwks" {
		t.Errorf("modes %q", modes)
	}
}
