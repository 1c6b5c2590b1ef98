package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/auth"
)

// The cost of one hello's token check: an HS256 token verified with the
// secret of --jwt-secret-file, and one naming its key in a key set
// (--jwt-jwks-file) of three keys.
func BenchmarkAuthenticate(b *testing.B) {
	secret := []byte(strings.Repeat("s", 32))
	exp := time.Now().Add(time.Hour).Unix()
	sign := func(kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ann", "exp": exp})
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(secret)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	set, err := auth.ParseKeySet([]byte(`{"keys":[` +
		`{"kty":"oct","kid":"a","k":"` + strings.Repeat("QUFB", 11) + `"},` +
		`{"kty":"oct","kid":"b","k":"c3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3Nzc3M"},` +
		`{"kty":"oct","kid":"c","k":"` + strings.Repeat("Q0ND", 11) + `"}]}`))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		cfg   auth.Config
		token string
	}{
		{"secret", auth.Config{HMACSecret: secret}, sign("")},
		{"keyset", auth.Config{KeySet: func() *auth.KeySet { return set }}, sign("b")},
	} {
		a, err := auth.New(bc.cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Authenticate(bc.token, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
