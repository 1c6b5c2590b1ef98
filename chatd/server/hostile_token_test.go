package server_test

// Hostile tokens against a running node that verifies with a JSON Web Key
// Set (--jwt-jwks-file) and requires an issuer and an audience: every
// forgery an attacker on the internet can send is refused with the close
// reason and the failure code docs/protocol.md §10 documents, and the
// node keeps serving the clients whose tokens are good.

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// jwksKey is one public key of a test key set.
type jwksKey struct {
	kid string
	pub crypto.PublicKey
}

// writeJWKS writes the key set of keys to path, through a rename as a
// Secret volume's update does.
func writeJWKS(t *testing.T, path string, keys ...jwksKey) {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.pub, KeyID: k.kid, Use: "sig"})
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatalf("marshal the key set: %v", err)
	}
	if err := os.WriteFile(path+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// signWithKID signs claims with key under method, naming kid in the header
// when kid is not empty.
func signWithKID(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// rawJWT assembles a token from a header, claims and signature bytes as
// an attacker would, without any library's checks.
func rawJWT(t *testing.T, header map[string]any, claims jwt.MapClaims, sig []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestHostileTokens(t *testing.T) {
	t.Parallel()
	const issuer, audience = "https://idp.example", "chatd"
	rsaKey, rsaOther, ecKey := jwtRSAKey(t), jwtRSAKey(t), jwtECKey(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, jwks, jwksKey{"rsa-1", &rsaKey.PublicKey}, jwksKey{"ec-1", &ecKey.PublicKey})
	_, rsaPEM := jwtWritePublicKey(t, &rsaKey.PublicKey)
	srv := chatdtest.StartWith(t, jwtBase, "--jwt-jwks-file", jwks, "--jwt-issuer", issuer, "--jwt-audience", audience)

	// good returns valid claims for sub, changed by edit.
	good := func(sub string, edit func(jwt.MapClaims)) jwt.MapClaims {
		now := time.Now()
		c := jwt.MapClaims{"sub": sub, "iss": issuer, "aud": audience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	valid := signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", nil))
	parts := strings.Split(valid, ".")
	forgedClaims := rawJWT(t, map[string]any{"alg": "RS256", "kid": "rsa-1"}, good("admin", nil), nil)
	tampered := strings.Join([]string{parts[0], strings.Split(forgedClaims, ".")[1], parts[2]}, ".")

	// Good tokens first: the refusals below are not a node refusing all.
	ann := jwtAccepted(t, srv, signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("ann", nil)), "ann")
	ben := jwtAccepted(t, srv, signWithKID(t, jwt.SigningMethodES256, ecKey, "ec-1", good("ben", nil)), "ben")
	w := limWatch(t, "lobby", ann, ben)

	const (
		algNotAllowed = "token algorithm not allowed"
		badSignature  = "token signature invalid"
		unknownKey    = "token key unknown"
		kidRequired   = "token key id (kid) required"
		malformed     = "token malformed"
	)
	cases := []struct {
		name, token, reason, code string
	}{
		{"alg none", rawJWT(t, map[string]any{"alg": "none", "typ": "JWT"}, good("mallory", nil), nil), algNotAllowed, "token_alg_not_allowed"},
		{"alg none naming a key", rawJWT(t, map[string]any{"alg": "none", "kid": "rsa-1"}, good("mallory", nil), nil), algNotAllowed, "token_alg_not_allowed"},
		{"alg None in another case", rawJWT(t, map[string]any{"alg": "None", "kid": "rsa-1"}, good("mallory", nil), nil), algNotAllowed, "token_alg_not_allowed"},
		{"alg confusion: HS256 keyed with the RSA public key, its kid", signWithKID(t, jwt.SigningMethodHS256, rsaPEM, "rsa-1", good("mallory", nil)), algNotAllowed, "token_alg_not_allowed"},
		{"alg confusion: HS256 keyed with the RSA public key, no kid", signWithKID(t, jwt.SigningMethodHS256, rsaPEM, "", good("mallory", nil)), algNotAllowed, "token_alg_not_allowed"},
		{"alg confusion: ES256 under the RSA key's kid", signWithKID(t, jwt.SigningMethodES256, ecKey, "rsa-1", good("mallory", nil)), algNotAllowed, "token_alg_not_allowed"},
		{"alg confusion: RS256 under the EC key's kid", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "ec-1", good("mallory", nil)), algNotAllowed, "token_alg_not_allowed"},
		{"alg the server does not verify (PS256)", signWithKID(t, jwt.SigningMethodPS256, rsaKey, "rsa-1", good("mallory", nil)), algNotAllowed, "token_alg_not_allowed"},
		{"unknown kid", signWithKID(t, jwt.SigningMethodRS256, rsaOther, "rsa-9", good("mallory", nil)), unknownKey, "token_unknown_key"},
		{"unknown kid, an algorithm no key is for", signWithKID(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), "hs-9", good("mallory", nil)), unknownKey, "token_unknown_key"},
		{"alg none naming an unknown key", rawJWT(t, map[string]any{"alg": "none", "kid": "rsa-9"}, good("mallory", nil), nil), unknownKey, "token_unknown_key"},
		{"no kid while the set has several keys", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "", good("mallory", nil)), kidRequired, "token_unknown_key"},
		{"kid not a string", rawJWT(t, map[string]any{"alg": "RS256", "kid": 1}, good("mallory", nil), []byte("sig")), malformed, "token_malformed"},
		{"expired", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), "token expired", "token_expired"},
		{"nbf in the future", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), "token not valid yet", "token_not_yet_valid"},
		{"iat in the future", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Hour).Unix() })), "token not valid yet", "token_not_yet_valid"},
		{"no expiry", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { delete(c, "exp") })), "token has no expiry", "token_invalid_claims"},
		{"wrong issuer", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), "token issuer not accepted", "token_invalid_claims"},
		{"no issuer", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { delete(c, "iss") })), "token issuer not accepted", "token_invalid_claims"},
		{"wrong audience", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { c["aud"] = []string{"other-service"} })), "token audience not accepted", "token_invalid_claims"},
		{"bad signature: another RSA key under the kid", signWithKID(t, jwt.SigningMethodRS256, rsaOther, "rsa-1", good("mallory", nil)), badSignature, "token_bad_signature"},
		{"bad signature: claims changed after signing", tampered, badSignature, "token_bad_signature"},
		{"bad signature: signature cut off", parts[0] + "." + parts[1] + ".", badSignature, "token_bad_signature"},
		{"oversized", signWithKID(t, jwt.SigningMethodRS256, rsaKey, "rsa-1", good("mallory", func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 20<<10) })), "token too large", "token_malformed"},
		{"garbage", "this is not a token", malformed, "token_malformed"},
		{"garbage in three parts", "a.b.c", malformed, "token_malformed"},
		{"a Bearer prefix", "Bearer " + valid, malformed, "token_malformed"},
		{"base64 padding", valid + "==", malformed, "token_malformed"},
	}
	wantCodes := map[string]float64{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			jwtRefused(t, srv, tc.token, tc.reason)
		})
		wantCodes[tc.code]++
	}
	for code, n := range wantCodes {
		srv.WaitMetric(t, `chatd_auth_failures_total{code="`+code+`"}`, n)
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4001"}`, float64(len(cases)))
	// The good clients were never disturbed, and the valid token the
	// forgeries were made from still works.
	w.check()
	jwtAccepted(t, srv, valid, "mallory")
	c := chatdtest.Dial(t, srv.URL)
	c.Do(protocol.ClientFrame{Type: protocol.TypeHello, Name: "anonymous"})
	limExpectClose(t, c, protocol.CloseAuthFailed, "anonymous access disabled")
}
