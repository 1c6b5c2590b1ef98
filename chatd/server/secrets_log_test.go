package server_test

// Secrets only as files: chatd's own output never holds a secret value,
// whatever happens to it — good and bad tokens, admin requests with right
// and wrong bearer tokens, secret files rotated and broken while it runs,
// the removed secret flags — at the most verbose log level.

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// secretForms are the spellings of secret a log line could hold it in.
func secretForms(secret string) []string {
	return []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret))}
}

// replaceFile replaces path's content through a rename.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	const (
		jwtSecret  = "jwt-hs256-secret-aaaaaaaaaaaaaaaaaaaaaaaaaa"
		jwksSecret = "jwks-oct-secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbb"
		adminA     = "admin-token-cccccccccccccccccc"
		adminB     = "admin-token-dddddddddddddddddd"
		flagSecret = "flag-secret-eeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
	)
	dir := t.TempDir()
	jwtFile := chatdtest.SecretFile(t, "jwt-secret", jwtSecret)
	jwks := filepath.Join(dir, "jwks.json")
	octJWKS := func(kid, secret string) string {
		return `{"keys":[{"kty":"oct","kid":"` + kid + `","k":"` + base64.RawURLEncoding.EncodeToString([]byte(secret)) + `"}]}`
	}
	replaceFile(t, jwks, octJWKS("hs-1", jwksSecret))
	tokens := filepath.Join(dir, "admin-tokens")
	replaceFile(t, tokens, adminA+"\n")
	reload := 50 * time.Millisecond
	p := chatdtest.StartProcess(t, "--allow-anonymous=false", "--jwt-secret-file", jwtFile, "--jwt-jwks-file", jwks,
		"--admin-token-file", tokens, "--auth-reload-interval", reload.String(), "--log-level", "debug")
	srv := p.Server()

	// Tokens: good ones of both keys, forgeries, and the secrets
	// themselves sent as tokens.
	sign := func(key, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix()})
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	chatdtest.ConnectHello(t, p.URL, protocol.ClientFrame{Token: sign(jwtSecret, "")})
	chatdtest.ConnectHello(t, p.URL, protocol.ClientFrame{Token: sign(jwksSecret, "hs-1")})
	for _, bad := range []string{sign(jwtSecret+"x", ""), sign(jwksSecret+"x", "hs-1"), jwtSecret, jwksSecret, adminA} {
		c := chatdtest.Dial(t, p.URL)
		c.Do(protocol.ClientFrame{Type: protocol.TypeHello, Token: bad})
		if code, _ := c.ExpectClose(); code != protocol.CloseAuthFailed {
			t.Fatalf("a bad token: close %d", code)
		}
	}
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4001"}`, 5)

	// The admin API with right, wrong and nearly right tokens.
	admin := func(auth string) int {
		req, _ := http.NewRequest(http.MethodGet, p.AdminURL("/admin/cluster"), nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for auth, want := range map[string]int{"Bearer " + adminA: 200, "Bearer " + adminA + "x": 401, adminA: 401, "Bearer " + jwtSecret: 401} {
		if got := admin(auth); got != want {
			t.Fatalf("admin API: %d, want %d", got, want)
		}
	}

	// Secret files rotated, then broken in ways whose errors could quote
	// them: a line with a space in the token, a short symmetric key.
	replaceFile(t, tokens, adminA+"\n"+adminB+"\n")
	chatdtest.Eventually(t, chatdtest.Timeout, "admin token B accepted", func() (bool, string) { return admin("Bearer "+adminB) == 200, "" })
	replaceFile(t, tokens, adminB+" "+adminA+"\n")
	replaceFile(t, jwks, octJWKS("hs-2", jwksSecret[:20]))
	chatdtest.Eventually(t, chatdtest.Timeout, "both broken files noticed", func() (bool, string) {
		admin("Bearer " + adminB)
		chatdtest.ConnectHello(t, p.URL, protocol.ClientFrame{Token: sign(jwksSecret, "hs-1")}).Close()
		logs := p.Logs().String()
		return strings.Contains(logs, `"msg":"keeping the current admin tokens"`) && strings.Contains(logs, `"msg":"keeping the current JWT key set"`), "not yet"
	})
	p.Terminate()

	// The removed flags refuse to start, without repeating the value.
	for _, args := range [][]string{{"--admin-token", flagSecret}, {"--jwt-secret=" + flagSecret}} {
		_, exit := chatdtest.TryStartProcess(t, args...)
		if exit == nil || exit.Code == 0 || !strings.Contains(exit.Stderr, "was removed") {
			t.Fatalf("%s: %+v", args[0], exit)
		}
		if strings.Contains(exit.Stderr, flagSecret) {
			t.Errorf("%s: the refusal repeats the secret:\n%s", args[0], exit.Stderr)
		}
	}

	logs := p.Logs().String()
	if !strings.Contains(logs, `"msg":"admin tokens reloaded"`) || !strings.Contains(logs, `"level":"DEBUG"`) {
		t.Fatalf("the log lacks what the test did (reload, debug lines):\n%s", logs)
	}
	for _, secret := range []string{jwtSecret, jwksSecret, jwksSecret[:20], adminA, adminB} {
		for _, form := range secretForms(secret) {
			if i := strings.Index(logs, form); i >= 0 {
				t.Errorf("the log holds a secret (%q) in: %s", form, lineAround(logs, i))
			}
		}
	}
}

// lineAround returns the log line holding s[i].
func lineAround(s string, i int) string {
	start := strings.LastIndexByte(s[:i], '\n') + 1
	end := strings.IndexByte(s[i:], '\n')
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}
