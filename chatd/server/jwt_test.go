package server_test

// Token authentication as configured from files: --jwt-public-key-file (an
// RSA key for RS256, an ECDSA P-256 key for ES256) and --jwt-secret-file
// (HS256), through chatd's own flag handling (chatd/app) to a real
// WebSocket hello. chatd/auth tests the verification itself; these tests
// prove the files reach it.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// jwtBase is the configuration of these servers before their key flags: no
// anonymous access, so every client must bring a token.
var jwtBase = []string{"--node-name", "test-node", "--log-level", "error"}

// jwtWriteFile writes data to a file called name in a new directory and
// returns its path.
func jwtWriteFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// jwtWritePublicKey writes pub as a PEM "PUBLIC KEY" file and returns its
// path and content.
func jwtWritePublicKey(t *testing.T, pub any) (string, []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("marshal public key: %v", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return jwtWriteFile(t, "jwt.pub", data), data
}

// jwtRSAKey and jwtECKey generate signing keys: RSA 2048 for RS256, ECDSA
// P-256 for ES256.
func jwtRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func jwtECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwtRefused says hello with token and expects the 4001 close with reason.
func jwtRefused(t *testing.T, srv *chatdtest.Server, token, reason string) {
	t.Helper()
	c := chatdtest.Dial(t, srv.URL)
	c.Do(protocol.ClientFrame{Type: protocol.TypeHello, Token: token})
	limExpectClose(t, c, protocol.CloseAuthFailed, reason)
}

// jwtAccepted connects with token and checks that the welcome names sub as
// a token (not anonymous) user.
func jwtAccepted(t *testing.T, srv *chatdtest.Server, token, sub string) *chatdtest.Client {
	t.Helper()
	c := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: token})
	if c.Welcome.User != sub || c.Welcome.Anonymous {
		t.Fatalf("welcome user %q anonymous %v, want %q from the token's sub", c.Welcome.User, c.Welcome.Anonymous, sub)
	}
	return c
}

func TestJWTPublicKeyFile(t *testing.T) {
	t.Parallel()
	rsaKey, rsaOther := jwtRSAKey(t), jwtRSAKey(t)
	ecKey, ecOther := jwtECKey(t), jwtECKey(t)
	for _, tc := range []struct {
		name          string
		pub           any
		method        jwt.SigningMethod
		key, otherKey any
		// A token of the other asymmetric kind, which this server has no
		// key for.
		foreign jwt.SigningMethod
		forKey  any
	}{
		{"RS256", &rsaKey.PublicKey, jwt.SigningMethodRS256, rsaKey, rsaOther, jwt.SigningMethodES256, ecKey},
		{"ES256", &ecKey.PublicKey, jwt.SigningMethodES256, ecKey, ecOther, jwt.SigningMethodRS256, rsaKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, pemData := jwtWritePublicKey(t, tc.pub)
			srv := chatdtest.StartWith(t, jwtBase, "--jwt-public-key-file", path)

			ann := jwtAccepted(t, srv, limToken(t, tc.method, tc.key, limClaims("ann@example.com")), "ann@example.com")
			ben := jwtAccepted(t, srv, limToken(t, tc.method, tc.key, limClaims("u-1842")), "u-1842")
			w := limWatch(t, "lobby", ann, ben)
			w.check() // messages carry the subs as from

			jwtRefused(t, srv, limToken(t, tc.method, tc.otherKey, limClaims("mallory")), "token signature invalid")
			jwtRefused(t, srv, limToken(t, tc.foreign, tc.forKey, limClaims("mallory")), "token algorithm not allowed")
			// Algorithm confusion: the public key file used as an HS256 secret.
			jwtRefused(t, srv, limToken(t, jwt.SigningMethodHS256, pemData, limClaims("mallory")), "token algorithm not allowed")
			jwtRefused(t, srv, "", "token required")

			srv.WaitMetric(t, `chatd_auth_failures_total{code="token_bad_signature"}`, 1)
			srv.WaitMetric(t, `chatd_auth_failures_total{code="token_alg_not_allowed"}`, 2)
			srv.WaitMetric(t, `chatd_auth_failures_total{code="token_missing"}`, 1)
			srv.WaitMetric(t, "chatd_connections", 2)
			w.check()
		})
	}
}

func TestJWTSecretFile(t *testing.T) {
	t.Parallel()
	const secret = "jwt-secret-file-test-0123456789abcdefghij"
	// As a Kubernetes Secret or an editor leaves it: the trailing newline is
	// not part of the secret.
	path := jwtWriteFile(t, "jwt.secret", []byte(secret+"\n"))
	srv := chatdtest.StartWith(t, jwtBase, "--jwt-secret-file", path)
	hs := func(key string, sub string) string {
		return limToken(t, jwt.SigningMethodHS256, []byte(key), limClaims(sub))
	}

	ann := jwtAccepted(t, srv, hs(secret, "ann"), "ann")
	ben := jwtAccepted(t, srv, hs(secret, "ben"), "ben")
	w := limWatch(t, "lobby", ann, ben)
	w.check()

	jwtRefused(t, srv, hs("another-secret-0123456789abcdefghijklmnop", "mallory"), "token signature invalid")
	jwtRefused(t, srv, hs(secret+"\n", "mallory"), "token signature invalid")
	jwtRefused(t, srv, limToken(t, jwt.SigningMethodRS256, jwtRSAKey(t), limClaims("mallory")), "token algorithm not allowed")

	srv.WaitMetric(t, `chatd_auth_failures_total{code="token_bad_signature"}`, 2)
	srv.WaitMetric(t, `chatd_auth_failures_total{code="token_alg_not_allowed"}`, 1)
	srv.WaitMetric(t, "chatd_connections", 2)
	w.check()
}

// TestJWTSecretFileAndPublicKeyFile: both kinds of key at once (documented
// as allowed) each accept their own tokens.
func TestJWTSecretFileAndPublicKeyFile(t *testing.T) {
	t.Parallel()
	const secret = "jwt-both-test-0123456789abcdefghijklmnop"
	secretPath := jwtWriteFile(t, "jwt.secret", []byte(secret))
	ecKey, ecOther := jwtECKey(t), jwtECKey(t)
	keyPath, _ := jwtWritePublicKey(t, &ecKey.PublicKey)
	srv := chatdtest.StartWith(t, jwtBase, "--jwt-secret-file", secretPath, "--jwt-public-key-file", keyPath)

	hsUser := jwtAccepted(t, srv, limToken(t, jwt.SigningMethodHS256, []byte(secret), limClaims("hs-user")), "hs-user")
	esUser := jwtAccepted(t, srv, limToken(t, jwt.SigningMethodES256, ecKey, limClaims("es-user")), "es-user")
	w := limWatch(t, "lobby", hsUser, esUser)
	w.check()
	jwtRefused(t, srv, limToken(t, jwt.SigningMethodES256, ecOther, limClaims("mallory")), "token signature invalid")
	jwtRefused(t, srv, limToken(t, jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdefghijklmnop"), limClaims("mallory")), "token signature invalid")
	srv.WaitMetric(t, `chatd_auth_failures_total{code="token_bad_signature"}`, 2)
	w.check()
}
