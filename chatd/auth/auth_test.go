package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/auth"
)

// now is the fixed clock every Authenticator in these tests runs on.
var now = time.Date(2030, time.March, 4, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return now }

// hmacSecret and otherHMACSecret are exactly MinHMACSecretLen bytes long.
var (
	hmacSecret      = []byte("0123456789abcdef0123456789abcdef")
	otherHMACSecret = []byte("fedcba9876543210fedcba9876543210")
)

// RSA key generation is slow, especially under -race, so each key is made
// once per test binary.
var (
	rsaKey      = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	otherRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	ecKey       = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	otherECKey  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// pkixPEM encodes pub as a "PUBLIC KEY" PEM block.
func pkixPEM(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// keyFile writes a PEM to a temporary file and reads it back through
// ReadPublicKeyFile, the way a server would load it.
func keyFile(t *testing.T, pemBytes []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatalf("write key file: %v", err)
	}
	data, err := auth.ReadPublicKeyFile(path)
	if err != nil {
		t.Fatalf("ReadPublicKeyFile: %v", err)
	}
	return data
}

func newAuth(t *testing.T, cfg auth.Config) *auth.Authenticator {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	a, err := auth.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// claims returns a valid claim set for "alice", with overrides applied; an
// override with a nil value deletes the claim.
func claims(overrides map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "alice",
		"iat": now.Add(-time.Minute).Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

func sign(t *testing.T, method jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// rawToken assembles a token from a literal header and claims with the
// given signature bytes, for the tokens jwt refuses to produce.
func rawToken(t *testing.T, header map[string]any, c jwt.MapClaims, sig []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString(h) + "." + enc.EncodeToString(p) + "." + enc.EncodeToString(sig)
}

// checkAuthError asserts that err is an *auth.Error with the wanted code
// and a reason that fits a WebSocket close frame.
func checkAuthError(t *testing.T, err error, wantCode string) *auth.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", wantCode)
	}
	var ae *auth.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *auth.Error", err, err)
	}
	if ae.Code != wantCode {
		t.Fatalf("code = %q (%v), want %q", ae.Code, err, wantCode)
	}
	if ae.Reason == "" || len(ae.Reason) > auth.MaxReasonLen {
		t.Fatalf("reason %q has %d bytes, want 1..%d", ae.Reason, len(ae.Reason), auth.MaxReasonLen)
	}
	if !strings.Contains(err.Error(), ae.Code) {
		t.Errorf("Error() = %q does not mention code %q", err.Error(), ae.Code)
	}
	return ae
}

func TestAuthenticateToken(t *testing.T) {
	rsaPEM := keyFile(t, pkixPEM(t, &rsaKey().PublicKey))
	ecPEM := keyFile(t, pkixPEM(t, &ecKey().PublicKey))

	hs := newAuth(t, auth.Config{HMACSecret: hmacSecret})
	rs := newAuth(t, auth.Config{PublicKeyPEM: rsaPEM})
	es := newAuth(t, auth.Config{PublicKeyPEM: ecPEM})
	both := newAuth(t, auth.Config{HMACSecret: hmacSecret, PublicKeyPEM: rsaPEM})
	lenient := newAuth(t, auth.Config{HMACSecret: hmacSecret, Leeway: 2 * time.Minute})
	strict := newAuth(t, auth.Config{HMACSecret: hmacSecret, Issuer: "https://idp.example", Audience: "chatd"})
	customRooms := newAuth(t, auth.Config{HMACSecret: hmacSecret, RoomsClaim: "chat_rooms"})
	noKeys := newAuth(t, auth.Config{AllowAnonymous: true})

	hsToken := func(over map[string]any) string {
		return sign(t, jwt.SigningMethodHS256, hmacSecret, claims(over))
	}
	exp := now.Add(time.Hour)
	alice := auth.Identity{UserID: "alice", ExpiresAt: exp}
	noneHeader := map[string]any{"alg": "none", "typ": "JWT"}
	validStrict := map[string]any{"iss": "https://idp.example", "aud": "chatd"}
	// tampered keeps a valid HS256 header and signature but swaps the
	// payload for one naming another user.
	tampered := func() string {
		parts := strings.Split(hsToken(nil), ".")
		forged := strings.Split(hsToken(map[string]any{"sub": "mallory"}), ".")
		return parts[0] + "." + forged[1] + "." + parts[2]
	}()

	tests := []struct {
		name     string
		a        *auth.Authenticator
		token    string
		wantCode string // empty: success expected
		want     auth.Identity
		reason   string // checked when not empty
	}{
		{name: "valid HS256", a: hs, token: hsToken(nil), want: alice},
		{name: "valid RS256", a: rs, token: sign(t, jwt.SigningMethodRS256, rsaKey(), claims(nil)), want: alice},
		{name: "valid ES256", a: es, token: sign(t, jwt.SigningMethodES256, ecKey(), claims(nil)), want: alice},
		{name: "HS256 with both keys", a: both, token: hsToken(nil), want: alice},
		{name: "RS256 with both keys", a: both, token: sign(t, jwt.SigningMethodRS256, rsaKey(), claims(nil)), want: alice},
		{name: "name ignored when token given", a: hs, token: hsToken(nil), want: alice},

		{name: "alg none to HMAC server", a: hs, token: rawToken(t, noneHeader, claims(nil), nil),
			wantCode: auth.CodeTokenAlgNotAllowed, reason: "token algorithm not allowed"},
		{name: "alg none to RSA server", a: rs, token: rawToken(t, noneHeader, claims(nil), nil),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "alg none to ECDSA server", a: es, token: rawToken(t, noneHeader, claims(nil), nil),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "alg None mixed case", a: hs, token: rawToken(t, map[string]any{"alg": "None"}, claims(nil), nil),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "unknown alg", a: hs, token: rawToken(t, map[string]any{"alg": "HS999"}, claims(nil), []byte("x")),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "HS256 to RSA-only server", a: rs, token: hsToken(nil), wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "HS256 keyed with the RSA public key", a: rs,
			token:    sign(t, jwt.SigningMethodHS256, rsaPEM, claims(nil)),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "RS256 to HMAC-only server", a: hs, token: sign(t, jwt.SigningMethodRS256, rsaKey(), claims(nil)),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "ES256 to RSA server", a: rs, token: sign(t, jwt.SigningMethodES256, ecKey(), claims(nil)),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "RS512 to RSA server", a: rs, token: sign(t, jwt.SigningMethodRS512, rsaKey(), claims(nil)),
			wantCode: auth.CodeTokenAlgNotAllowed},
		{name: "alg header missing", a: hs, token: rawToken(t, map[string]any{"typ": "JWT"}, claims(nil), []byte("x")),
			wantCode: auth.CodeTokenMalformed},

		{name: "RS256 signed by another key", a: rs, token: sign(t, jwt.SigningMethodRS256, otherRSAKey(), claims(nil)),
			wantCode: auth.CodeTokenBadSignature, reason: "token signature invalid"},
		{name: "ES256 signed by another key", a: es, token: sign(t, jwt.SigningMethodES256, otherECKey(), claims(nil)),
			wantCode: auth.CodeTokenBadSignature},
		{name: "HS256 wrong secret", a: hs, token: sign(t, jwt.SigningMethodHS256, otherHMACSecret, claims(nil)),
			wantCode: auth.CodeTokenBadSignature},
		{name: "tampered payload", a: hs, token: tampered, wantCode: auth.CodeTokenBadSignature},
		{name: "empty signature", a: hs, token: rawToken(t, map[string]any{"alg": "HS256"}, claims(nil), nil),
			wantCode: auth.CodeTokenBadSignature},
		{name: "no key configured", a: noKeys, token: hsToken(nil), wantCode: auth.CodeTokenBadSignature},

		{name: "expired", a: hs, token: hsToken(map[string]any{"exp": now.Add(-time.Second).Unix()}),
			wantCode: auth.CodeTokenExpired, reason: "token expired"},
		{name: "expires exactly now", a: hs, token: hsToken(map[string]any{"exp": now.Unix()}),
			wantCode: auth.CodeTokenExpired},
		{name: "expired within leeway", a: lenient,
			token: hsToken(map[string]any{"exp": now.Add(-time.Minute).Unix()}),
			want:  auth.Identity{UserID: "alice", ExpiresAt: now.Add(-time.Minute)}},
		{name: "expired beyond leeway", a: lenient, token: hsToken(map[string]any{"exp": now.Add(-3 * time.Minute).Unix()}),
			wantCode: auth.CodeTokenExpired},
		{name: "not yet valid", a: hs, token: hsToken(map[string]any{"nbf": now.Add(time.Minute).Unix()}),
			wantCode: auth.CodeTokenNotYetValid, reason: "token not valid yet"},
		{name: "nbf within leeway", a: lenient, token: hsToken(map[string]any{"nbf": now.Add(time.Minute).Unix()}),
			want: alice},
		{name: "nbf beyond leeway", a: lenient, token: hsToken(map[string]any{"nbf": now.Add(3 * time.Minute).Unix()}),
			wantCode: auth.CodeTokenNotYetValid},
		{name: "issued in the future", a: hs, token: hsToken(map[string]any{"iat": now.Add(time.Minute).Unix()}),
			wantCode: auth.CodeTokenNotYetValid},
		{name: "iat within leeway", a: lenient, token: hsToken(map[string]any{"iat": now.Add(time.Minute).Unix()}),
			want: alice},
		{name: "expired and not yet valid", a: hs,
			token:    hsToken(map[string]any{"exp": now.Add(-time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()}),
			wantCode: auth.CodeTokenExpired},

		{name: "missing exp", a: hs, token: hsToken(map[string]any{"exp": nil}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token has no expiry"},
		{name: "exp zero", a: hs, token: hsToken(map[string]any{"exp": 0}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token has no expiry"},
		{name: "exp null", a: hs, token: rawHS(t, `{"sub":"alice","exp":null}`),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token has no expiry"},
		{name: "exp null and iat set", a: hs, token: rawHS(t, `{"sub":"alice","iat":`+unix(now.Add(-time.Minute))+`,"exp":null}`),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token has no expiry"},
		{name: "exp null with nbf in the future", a: hs, token: rawHS(t, `{"sub":"alice","nbf":`+unix(now.Add(time.Hour))+`,"exp":null}`),
			wantCode: auth.CodeTokenNotYetValid, reason: "token not valid yet"},
		{name: "exp not a number", a: hs, token: hsToken(map[string]any{"exp": "tomorrow"}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token claims invalid"},
		{name: "exp a numeric string", a: hs, token: hsToken(map[string]any{"exp": unix(exp)}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token claims invalid"},
		{name: "exp a boolean", a: hs, token: hsToken(map[string]any{"exp": true}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token claims invalid"},
		{name: "missing sub", a: hs, token: hsToken(map[string]any{"sub": nil}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token has no subject"},
		{name: "empty sub", a: hs, token: hsToken(map[string]any{"sub": ""}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token has no subject"},
		{name: "numeric sub", a: hs, token: hsToken(map[string]any{"sub": 42}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token subject invalid"},
		{name: "sub too long", a: hs, token: hsToken(map[string]any{"sub": strings.Repeat("a", 65)}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token subject invalid"},
		{name: "sub at length limit", a: hs, token: hsToken(map[string]any{"sub": strings.Repeat("a", 64)}),
			want: auth.Identity{UserID: strings.Repeat("a", 64), ExpiresAt: exp}},
		{name: "sub with newline", a: hs, token: hsToken(map[string]any{"sub": "alice\nINFO admin logged in"}),
			wantCode: auth.CodeTokenInvalidClaims},
		{name: "sub with escape", a: hs, token: hsToken(map[string]any{"sub": "alice\x1b[31m"}),
			wantCode: auth.CodeTokenInvalidClaims},
		{name: "sub unicode", a: hs, token: hsToken(map[string]any{"sub": "user|Zoë 42"}),
			want: auth.Identity{UserID: "user|Zoë 42", ExpiresAt: exp}},

		{name: "garbage", a: hs, token: "not a jwt", wantCode: auth.CodeTokenMalformed, reason: "token malformed"},
		{name: "too many segments", a: hs, token: hsToken(nil) + ".x", wantCode: auth.CodeTokenMalformed},
		{name: "bad base64", a: hs, token: "a!.b!.c!", wantCode: auth.CodeTokenMalformed},
		{name: "header not JSON", a: hs, token: "bm90anNvbg.e30.", wantCode: auth.CodeTokenMalformed},
		{name: "too large", a: hs, token: strings.Repeat("a", 20000), wantCode: auth.CodeTokenMalformed,
			reason: "token too large"},
		{name: "surrounding space", a: hs, token: " " + hsToken(nil), wantCode: auth.CodeTokenMalformed},

		{name: "issuer and audience ok", a: strict, token: hsToken(validStrict), want: alice},
		{name: "audience in array", a: strict, token: hsToken(with(validStrict, "aud", []string{"other", "chatd"})),
			want: alice},
		{name: "issuer mismatch", a: strict, token: hsToken(with(validStrict, "iss", "https://evil.example")),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token issuer not accepted"},
		{name: "issuer missing", a: strict, token: hsToken(map[string]any{"aud": "chatd"}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token issuer not accepted"},
		{name: "issuer empty", a: strict, token: hsToken(with(validStrict, "iss", "")),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token issuer not accepted"},
		{name: "issuer not a string", a: strict, token: hsToken(with(validStrict, "iss", 7)),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token issuer not accepted"},
		{name: "audience mismatch", a: strict, token: hsToken(with(validStrict, "aud", "billing")),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token audience not accepted"},
		{name: "audience not a string", a: strict, token: hsToken(with(validStrict, "aud", []any{"chatd", 1})),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token audience not accepted"},
		{name: "audience missing", a: strict, token: hsToken(map[string]any{"iss": "https://idp.example"}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token audience not accepted"},
		{name: "issuer ignored when not configured", a: hs, token: hsToken(map[string]any{"iss": "anyone"}), want: alice},

		{name: "rooms parsed", a: hs, token: hsToken(map[string]any{"rooms": []string{"general", "team-*"}}),
			want: auth.Identity{UserID: "alice", Rooms: []string{"general", "team-*"}, ExpiresAt: exp}},
		{name: "rooms empty list", a: hs, token: hsToken(map[string]any{"rooms": []string{}}),
			want: auth.Identity{UserID: "alice", Rooms: []string{}, ExpiresAt: exp}},
		{name: "rooms not an array", a: hs, token: hsToken(map[string]any{"rooms": "general"}),
			wantCode: auth.CodeTokenInvalidClaims, reason: "token rooms claim invalid"},
		{name: "rooms null", a: hs, token: rawHS(t, `{"sub":"alice","exp":`+unix(exp)+`,"rooms":null}`),
			wantCode: auth.CodeTokenInvalidClaims},
		{name: "rooms with number", a: hs, token: hsToken(map[string]any{"rooms": []any{"general", 7}}),
			wantCode: auth.CodeTokenInvalidClaims},
		{name: "rooms with empty pattern", a: hs, token: hsToken(map[string]any{"rooms": []string{"general", ""}}),
			wantCode: auth.CodeTokenInvalidClaims},
		{name: "rooms with inner star", a: hs, token: hsToken(map[string]any{"rooms": []string{"team-*-admins"}}),
			wantCode: auth.CodeTokenInvalidClaims},
		{name: "custom rooms claim", a: customRooms,
			token: hsToken(map[string]any{"chat_rooms": []string{"*"}, "rooms": "ignored"}),
			want:  auth.Identity{UserID: "alice", Rooms: []string{"*"}, ExpiresAt: exp}},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.a.Authenticate(tc.token, "bob")
			if tc.wantCode != "" {
				ae := checkAuthError(t, err, tc.wantCode)
				if tc.reason != "" && ae.Reason != tc.reason {
					t.Errorf("reason = %q, want %q", ae.Reason, tc.reason)
				}
				if got.UserID != "" || got.Rooms != nil {
					t.Errorf("identity = %+v alongside an error, want zero", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if !identityEqual(got, tc.want) {
				t.Errorf("identity = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// rawHS signs a literal JSON payload with HS256, for payloads that
// jwt.MapClaims cannot express (such as an explicit null).
func rawHS(t *testing.T, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payload))
	sig, err := jwt.SigningMethodHS256.Sign(signing, hmacSecret)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

func unix(ts time.Time) string {
	return strconv.FormatInt(ts.Unix(), 10)
}

// identityEqual compares identities, keeping the nil versus empty Rooms
// distinction that matters to CanJoin.
func identityEqual(a, b auth.Identity) bool {
	return a.UserID == b.UserID &&
		a.Anonymous == b.Anonymous &&
		(a.Rooms == nil) == (b.Rooms == nil) &&
		slices.Equal(a.Rooms, b.Rooms) &&
		a.ExpiresAt.Equal(b.ExpiresAt)
}

func TestErrorUnwrap(t *testing.T) {
	a := newAuth(t, auth.Config{HMACSecret: hmacSecret})
	_, err := a.Authenticate(sign(t, jwt.SigningMethodHS256, hmacSecret, claims(map[string]any{"exp": now.Add(-time.Hour).Unix()})), "")
	checkAuthError(t, err, auth.CodeTokenExpired)
	if !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("errors.Is(%v, jwt.ErrTokenExpired) = false, want the cause to be reachable", err)
	}

	e := &auth.Error{Code: auth.CodeTokenMissing, Reason: "token required"}
	if e.Unwrap() != nil {
		t.Errorf("Unwrap of an error without cause = %v, want nil", e.Unwrap())
	}
	if got, want := e.Error(), "auth: token_missing: token required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestAnonymous(t *testing.T) {
	on := newAuth(t, auth.Config{AllowAnonymous: true, HMACSecret: hmacSecret})
	off := newAuth(t, auth.Config{HMACSecret: hmacSecret})

	tests := []struct {
		name     string
		a        *auth.Authenticator
		input    string
		wantCode string
		reason   string
	}{
		{name: "simple", a: on, input: "alice"},
		{name: "punctuation", a: on, input: "a.b_c-d"},
		{name: "digits", a: on, input: "42"},
		{name: "unicode letters", a: on, input: "Zoë_日本"},
		{name: "32 characters", a: on, input: strings.Repeat("é", 32)},
		{name: "empty when enabled", a: on, input: "", wantCode: auth.CodeInvalidName, reason: "name required"},
		{name: "33 characters", a: on, input: strings.Repeat("a", 33), wantCode: auth.CodeInvalidName},
		{name: "inner space", a: on, input: "al ice", wantCode: auth.CodeInvalidName},
		{name: "leading space", a: on, input: " alice", wantCode: auth.CodeInvalidName},
		{name: "trailing space", a: on, input: "alice ", wantCode: auth.CodeInvalidName},
		{name: "control character", a: on, input: "ali\tce", wantCode: auth.CodeInvalidName},
		{name: "colon", a: on, input: "anon:alice", wantCode: auth.CodeInvalidName},
		{name: "emoji", a: on, input: "alice😀", wantCode: auth.CodeInvalidName},
		{name: "invalid UTF-8", a: on, input: "al\xffice", wantCode: auth.CodeInvalidName},
		{name: "zero width space", a: on, input: "ali\u200bce", wantCode: auth.CodeInvalidName},
		{name: "disabled", a: off, input: "alice", wantCode: auth.CodeAnonymousDisabled, reason: "anonymous access disabled"},
		{name: "nothing when disabled", a: off, input: "", wantCode: auth.CodeTokenMissing, reason: "token required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.a.Authenticate("", tc.input)
			if tc.wantCode != "" {
				ae := checkAuthError(t, err, tc.wantCode)
				if tc.reason != "" && ae.Reason != tc.reason {
					t.Errorf("reason = %q, want %q", ae.Reason, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			want := auth.Identity{UserID: tc.input, Anonymous: true}
			if !identityEqual(got, want) {
				t.Errorf("identity = %+v, want %+v", got, want)
			}
			if !got.CanJoin("general") {
				t.Errorf("anonymous identity cannot join a room; want any room allowed")
			}
		})
	}
}

func TestCanJoin(t *testing.T) {
	tests := []struct {
		name  string
		rooms []string
		room  string
		want  bool
	}{
		{name: "nil allows any", rooms: nil, room: "anything", want: true},
		{name: "nil still refuses empty room", rooms: nil, room: "", want: false},
		{name: "empty list allows none", rooms: []string{}, room: "general", want: false},
		{name: "exact match", rooms: []string{"general"}, room: "general", want: true},
		{name: "exact mismatch", rooms: []string{"general"}, room: "general2", want: false},
		{name: "exact is case sensitive", rooms: []string{"general"}, room: "General", want: false},
		{name: "prefix match", rooms: []string{"team-*"}, room: "team-red", want: true},
		{name: "prefix matches bare prefix", rooms: []string{"team-*"}, room: "team-", want: true},
		{name: "prefix mismatch", rooms: []string{"team-*"}, room: "teams", want: false},
		{name: "star matches all", rooms: []string{"*"}, room: "secret", want: true},
		{name: "star refuses empty room", rooms: []string{"*"}, room: "", want: false},
		{name: "second pattern matches", rooms: []string{"general", "dm-*"}, room: "dm-alice-bob", want: true},
		{name: "no pattern matches", rooms: []string{"general", "dm-*"}, room: "random", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := auth.Identity{UserID: "alice", Rooms: tc.rooms}
			if got := id.CanJoin(tc.room); got != tc.want {
				t.Errorf("CanJoin(%q) with rooms %q = %v, want %v", tc.room, tc.rooms, got, tc.want)
			}
		})
	}
}

// TestEveryCodeReasonFits triggers each code once and checks that its
// reason fits a close frame, so that a new code cannot be added with an
// oversized reason unnoticed.
func TestEveryCodeReasonFits(t *testing.T) {
	a := newAuth(t, auth.Config{HMACSecret: hmacSecret, Audience: "chatd"})
	anon := newAuth(t, auth.Config{AllowAnonymous: true})
	hs := func(over map[string]any) string {
		return sign(t, jwt.SigningMethodHS256, hmacSecret, claims(with(over, "aud", "chatd")))
	}
	cases := map[string]struct {
		a           *auth.Authenticator
		token, name string
	}{
		auth.CodeTokenMissing:       {a: a},
		auth.CodeTokenMalformed:     {a: a, token: "x"},
		auth.CodeTokenAlgNotAllowed: {a: a, token: rawToken(t, map[string]any{"alg": "none"}, claims(nil), nil)},
		auth.CodeTokenExpired:       {a: a, token: hs(map[string]any{"exp": now.Unix() - 1})},
		auth.CodeTokenNotYetValid:   {a: a, token: hs(map[string]any{"nbf": now.Unix() + 60})},
		auth.CodeTokenBadSignature:  {a: anon, token: hs(nil)},
		auth.CodeTokenInvalidClaims: {a: a, token: hs(map[string]any{"sub": nil})},
		auth.CodeAnonymousDisabled:  {a: a, name: "alice"},
		auth.CodeInvalidName:        {a: anon, name: "a b"},
	}
	for code, tc := range cases {
		t.Run(code, func(t *testing.T) {
			_, err := tc.a.Authenticate(tc.token, tc.name)
			checkAuthError(t, err, code)
		})
	}
}

func with(m map[string]any, k string, v any) map[string]any {
	out := map[string]any{k: v}
	for mk, mv := range m {
		if mk != k {
			out[mk] = mv
		}
	}
	return out
}

func TestNew(t *testing.T) {
	rsaPub := &rsaKey().PublicKey
	ecPub := &ecKey().PublicKey
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaPub)})
	ecPrivDER, err := x509.MarshalECPrivateKey(ecKey())
	if err != nil {
		t.Fatal(err)
	}
	ecPriv := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecPrivDER})

	tests := []struct {
		name      string
		cfg       auth.Config
		wantErr   string // substring; empty means New must succeed
		wantModes []string
	}{
		{name: "nothing configured", cfg: auth.Config{}, wantModes: []string{}},
		{name: "anonymous only", cfg: auth.Config{AllowAnonymous: true}, wantModes: []string{"anonymous"}},
		{name: "HMAC", cfg: auth.Config{HMACSecret: hmacSecret}, wantModes: []string{"hs256"}},
		{name: "RSA PKIX", cfg: auth.Config{PublicKeyPEM: pkixPEM(t, rsaPub)}, wantModes: []string{"rs256"}},
		{name: "RSA PKCS1", cfg: auth.Config{PublicKeyPEM: pkcs1}, wantModes: []string{"rs256"}},
		{name: "ECDSA P-256", cfg: auth.Config{PublicKeyPEM: pkixPEM(t, ecPub)}, wantModes: []string{"es256"}},
		{name: "certificate", cfg: auth.Config{PublicKeyPEM: selfSignedCert(t, ecKey())}, wantModes: []string{"es256"}},
		{name: "leading unrelated block", cfg: auth.Config{
			PublicKeyPEM: append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8}}), pkixPEM(t, ecPub)...),
		}, wantModes: []string{"es256"}},
		{name: "everything", cfg: auth.Config{HMACSecret: hmacSecret, PublicKeyPEM: pkixPEM(t, rsaPub), AllowAnonymous: true},
			wantModes: []string{"hs256", "rs256", "anonymous"}},

		{name: "short HMAC secret", cfg: auth.Config{HMACSecret: []byte("too-short")}, wantErr: "at least 32"},
		{name: "not PEM", cfg: auth.Config{PublicKeyPEM: []byte("hello")}, wantErr: "no PEM"},
		{name: "corrupt PEM body", cfg: auth.Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})},
			wantErr: "parse PEM"},
		{name: "private key", cfg: auth.Config{PublicKeyPEM: ecPriv}, wantErr: "private key"},
		{name: "small RSA key", cfg: auth.Config{PublicKeyPEM: pkixPEM(t, &mustRSA(1024).PublicKey)}, wantErr: "2048"},
		{name: "P-384 key", cfg: auth.Config{PublicKeyPEM: pkixPEM(t, &mustEC(elliptic.P384()).PublicKey)}, wantErr: "P-256"},
		{name: "Ed25519 key", cfg: auth.Config{PublicKeyPEM: pkixPEM(t, edPub)}, wantErr: "unsupported"},
		{name: "negative leeway", cfg: auth.Config{HMACSecret: hmacSecret, Leeway: -time.Second}, wantErr: "negative"},
		{name: "registered rooms claim", cfg: auth.Config{HMACSecret: hmacSecret, RoomsClaim: "aud"}, wantErr: "registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := auth.New(tc.cfg)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("New succeeded, want error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New error = %q, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := a.Modes(); !slices.Equal(got, tc.wantModes) {
				t.Errorf("Modes() = %q, want %q", got, tc.wantModes)
			}
		})
	}
}

// TestHMACSecretCopied checks that New keeps its own copy of the secret, so
// a caller wiping its buffer does not break or change verification.
func TestHMACSecretCopied(t *testing.T) {
	secret := slices.Clone(hmacSecret)
	a := newAuth(t, auth.Config{HMACSecret: secret})
	clear(secret)
	if _, err := a.Authenticate(sign(t, jwt.SigningMethodHS256, hmacSecret, claims(nil)), ""); err != nil {
		t.Fatalf("Authenticate after caller cleared its secret: %v", err)
	}
}

func TestDefaultClock(t *testing.T) {
	a, err := auth.New(auth.Config{HMACSecret: hmacSecret})
	if err != nil {
		t.Fatal(err)
	}
	real := time.Now()
	tok := sign(t, jwt.SigningMethodHS256, hmacSecret, jwt.MapClaims{"sub": "alice", "exp": real.Add(time.Hour).Unix()})
	if _, err := a.Authenticate(tok, ""); err != nil {
		t.Fatalf("Authenticate with the real clock: %v", err)
	}
	old := sign(t, jwt.SigningMethodHS256, hmacSecret, jwt.MapClaims{"sub": "alice", "exp": real.Add(-time.Hour).Unix()})
	_, err = a.Authenticate(old, "")
	checkAuthError(t, err, auth.CodeTokenExpired)
}

func TestReadPublicKeyFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	want := pkixPEM(t, &ecKey().PublicKey)
	if err := os.WriteFile(good, want, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := auth.ReadPublicKeyFile(good)
	if err != nil {
		t.Fatalf("ReadPublicKeyFile: %v", err)
	}
	if string(got) != string(want) {
		t.Errorf("ReadPublicKeyFile returned different bytes than the file holds")
	}

	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.ReadPublicKeyFile(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("ReadPublicKeyFile(bad) error = %v, want one naming %s", err, bad)
	}

	missing := filepath.Join(dir, "missing.pem")
	if _, err := auth.ReadPublicKeyFile(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadPublicKeyFile(missing) error = %v, want os.ErrNotExist", err)
	}

	huge := filepath.Join(dir, "huge.pem")
	if err := os.WriteFile(huge, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.ReadPublicKeyFile(huge); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("ReadPublicKeyFile(huge) error = %v, want a size error", err)
	}
}

// TestConcurrentAuthenticate exercises one Authenticator from many
// goroutines; run with -race it backs the concurrency claim in the docs.
func TestConcurrentAuthenticate(t *testing.T) {
	a := newAuth(t, auth.Config{HMACSecret: hmacSecret, AllowAnonymous: true})
	good := sign(t, jwt.SigningMethodHS256, hmacSecret, claims(nil))
	bad := sign(t, jwt.SigningMethodHS256, otherHMACSecret, claims(nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := a.Authenticate(good, ""); err != nil {
					t.Errorf("goroutine %d: valid token rejected: %v", i, err)
					return
				}
				if _, err := a.Authenticate(bad, ""); err == nil {
					t.Errorf("goroutine %d: bad token accepted", i)
					return
				}
				if _, err := a.Authenticate("", "guest"); err != nil {
					t.Errorf("goroutine %d: anonymous rejected: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func selfSignedCert(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "idp.example"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ReadHMACSecretFile gives the file's content without the surrounding
// white space an editor or echo leaves, and names a file it cannot read.
func TestReadHMACSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("  0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := auth.ReadHMACSecretFile(path)
	if err != nil || string(got) != "0123456789abcdef0123456789abcdef" {
		t.Fatalf("read %q, %v", got, err)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := auth.ReadHMACSecretFile(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("a missing file: %v", err)
	}
}
