package admin_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testcert"
)

var adminPaths = []string{"/admin/cluster", "/admin/ring", "/admin/rooms"}

const (
	tokenA = "admin-token-aaaaaaaaaaaaaaaa"
	tokenB = "admin-token-bbbbbbbbbbbbbbbb"
	tokenC = "admin-token-cccccccccccccccc"
)

// get sends GET url with auth as the Authorization header when not empty.
func get(t *testing.T, c *http.Client, url, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// writeTokens replaces the token file through a rename, as a Secret
// volume's update does.
func writeTokens(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// The client port serves neither the admin API nor the metrics, whatever
// the request carries; the admin listener serves both.
func TestClientPortHasNoAdminSurface(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	writeTokens(t, tokens, tokenA+"\n")
	srv := chatdtest.Start(t, "--admin-token-file", tokens)
	for _, path := range append(adminPaths, "/admin/", "/admin/nope", "/metrics", "/debug/pprof/", "/debug/pprof/goroutine") {
		for _, auth := range []string{"", "Bearer " + tokenA} {
			if code, _, body := get(t, http.DefaultClient, "http://"+srv.Addr+path, auth); code != http.StatusNotFound {
				t.Errorf("client port %s (auth %q): %d %.80q, want 404", path, auth, code, body)
			}
		}
	}
	for _, path := range append(adminPaths, "/metrics") {
		if code, _, body := get(t, http.DefaultClient, srv.AdminURL(path), "Bearer "+tokenA); code != http.StatusOK {
			t.Errorf("admin listener %s: %d %q", path, code, body)
		}
	}
}

// Go's profiles are on the admin listener, behind the admin token: a
// goroutine dump of a stuck node is one authenticated GET.
func TestProfilesBehindTheAdminToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	writeTokens(t, tokens, tokenA+"\n")
	srv := chatdtest.Start(t, "--admin-token-file", tokens)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=2", "/debug/pprof/cmdline"} {
		if code, _, _ := get(t, http.DefaultClient, srv.AdminURL(path), ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, code)
		}
	}
	code, _, body := get(t, http.DefaultClient, srv.AdminURL("/debug/pprof/goroutine?debug=2"), "Bearer "+tokenA)
	if code != http.StatusOK || !strings.Contains(body, "goroutine ") || !strings.Contains(body, "chatd/") {
		t.Errorf("goroutine dump: %d %.200q", code, body)
	}
}

func TestAdminTokens(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	writeTokens(t, tokens, "# current and next\n"+tokenA+"\n\n  "+tokenB+"  \n")
	srv := chatdtest.Start(t, "--admin-token-file", tokens)
	c := http.DefaultClient
	refused := map[string]string{
		"none":            "",
		"wrong token":     "Bearer not-the-token-at-all",
		"token prefix":    "Bearer " + tokenA[:5],
		"token and more":  "Bearer " + tokenA + "x",
		"another scheme":  "Basic " + tokenA,
		"no scheme":       tokenA,
		"scheme only":     "Bearer",
		"empty token":     "Bearer ",
		"token as scheme": tokenA + " " + tokenA,
		"both tokens":     "Bearer " + tokenA + tokenB,
	}
	for _, path := range append(adminPaths, "/admin/nope") {
		for name, auth := range refused {
			code, hdr, body := get(t, c, srv.AdminURL(path), auth)
			if code != http.StatusUnauthorized {
				t.Errorf("%s with %s: status %d, want 401", path, name, code)
				continue
			}
			if got := hdr.Get("WWW-Authenticate"); got != `Bearer realm="chatd admin"` {
				t.Errorf("%s with %s: WWW-Authenticate %q", path, name, got)
			}
			if !strings.Contains(body, "missing or wrong bearer token") || strings.Contains(body, tokenA) {
				t.Errorf("%s with %s: body %q", path, name, body)
			}
		}
		want := http.StatusOK
		if path == "/admin/nope" {
			want = http.StatusNotFound // only once authenticated
		}
		for _, auth := range []string{"Bearer " + tokenA, "bearer " + tokenB} {
			if path == "/admin/ring" && auth != "Bearer "+tokenA {
				continue // its rate limit is tested apart
			}
			if code, hdr, body := get(t, c, srv.AdminURL(path), auth); code != want {
				t.Errorf("%s with %q: status %d (%s), want %d", path, auth, code, body, want)
			} else if want == http.StatusOK && hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%s: Content-Type %q", path, hdr.Get("Content-Type"))
			}
		}
	}
	// Probes and, by default, metrics need no token.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, body := get(t, c, srv.AdminURL(path), ""); code != http.StatusOK {
			t.Errorf("%s without a token: %d %q", path, code, body)
		}
	}

}

// The token file is read again while chatd runs: a token rotates by
// adding the new one, then removing the old one; a file that does not
// parse keeps the tokens in use, and says so in the log, without the
// tokens.
func TestAdminTokenRotation(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	writeTokens(t, tokens, tokenA+"\n")
	p := chatdtest.StartProcess(t, "--admin-token-file", tokens, "--auth-reload-interval", "50ms")
	c := http.DefaultClient
	status := func(tok string) int {
		code, _, _ := get(t, c, p.AdminURL("/admin/cluster"), "Bearer "+tok)
		return code
	}
	if status(tokenA) != http.StatusOK || status(tokenB) != http.StatusUnauthorized {
		t.Fatalf("before: A %d, B %d", status(tokenA), status(tokenB))
	}
	writeTokens(t, tokens, tokenA+"\n"+tokenB+"\n")
	chatdtest.Eventually(t, chatdtest.Timeout, "token B accepted", func() (bool, string) {
		return status(tokenB) == http.StatusOK, strconv.Itoa(status(tokenB))
	})
	if status(tokenA) != http.StatusOK {
		t.Fatal("token A refused while still in the file")
	}
	writeTokens(t, tokens, tokenB+"\n")
	chatdtest.Eventually(t, chatdtest.Timeout, "token A refused", func() (bool, string) {
		return status(tokenA) == http.StatusUnauthorized, strconv.Itoa(status(tokenA))
	})
	if !p.Logs().Contains(`"msg":"admin tokens reloaded"`) {
		t.Fatal("no reload in the log")
	}

	for i, bad := range []string{"", "short\n"} {
		writeTokens(t, tokens, bad)
		chatdtest.Eventually(t, chatdtest.Timeout, "the bad file noticed", func() (bool, string) {
			status(tokenB) // a request makes the node look at the file
			n := strings.Count(p.Logs().String(), `"msg":"keeping the current admin tokens"`)
			return n == i+1, strconv.Itoa(n) + " keeping lines"
		})
		if status(tokenB) != http.StatusOK {
			t.Fatalf("after writing %q, the token in use is refused", bad)
		}
	}
	for _, tok := range []string{tokenA, tokenB} {
		if p.Logs().Contains(tok) {
			t.Fatalf("the log holds a token:\n%s", p.Logs().String())
		}
	}
}

func TestMetricsRequireToken(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	writeTokens(t, tokens, tokenA+"\n")
	srv := chatdtest.Start(t, "--admin-token-file", tokens, "--metrics-require-token")
	if code, _, _ := get(t, http.DefaultClient, srv.AdminURL("/metrics"), ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d, want 401", code)
	}
	if code, _, body := get(t, http.DefaultClient, srv.AdminURL("/metrics"), "Bearer "+tokenA); code != http.StatusOK || !strings.Contains(body, "chatd_connections") {
		t.Fatalf("/metrics with a token: %d", code)
	}
	// The probes stay open: the kubelet has no token.
	if code, _, _ := get(t, http.DefaultClient, srv.AdminURL("/readyz"), ""); code != http.StatusOK {
		t.Fatalf("/readyz: %d", code)
	}
}

// /admin/ring asks every member: its rate limit answers 429 with
// Retry-After past a burst, and requests refused for their token do not
// use the budget up.
func TestRingRateLimit(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	writeTokens(t, tokens, tokenA+"\n")
	srv := chatdtest.Start(t, "--admin-token-file", tokens)
	c := http.DefaultClient
	ring := srv.AdminURL("/admin/ring")
	for range 50 {
		if code, _, _ := get(t, c, ring, "Bearer wrong-token-0123456789"); code != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d", code)
		}
	}
	// The whole burst is still there. (At RingRate per second, the burst
	// refills in RingBurst/RingRate seconds: quick requests find it full.)
	ok := 0
	var retryAfter string
	for i := 0; i < 50 && retryAfter == ""; i++ {
		code, hdr, body := get(t, c, ring, "Bearer "+tokenA)
		switch code {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			retryAfter = hdr.Get("Retry-After")
			if !strings.Contains(body, "rate limited") {
				t.Fatalf("429 body %q", body)
			}
		default:
			t.Fatalf("status %d: %s", code, body)
		}
	}
	if ok < admin.RingBurst {
		t.Fatalf("%d requests answered before the first 429, want at least the burst of %d (the refused tokens used it?)", ok, admin.RingBurst)
	}
	if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want whole seconds ≥ 1", retryAfter)
	}
	// The other documents are not limited.
	for range 10 {
		if code, _, _ := get(t, c, srv.AdminURL("/admin/cluster"), "Bearer "+tokenA); code != http.StatusOK {
			t.Fatalf("/admin/cluster while /admin/ring is limited: %d", code)
		}
	}
	chatdtest.Eventually(t, chatdtest.Timeout, "/admin/ring answering again", func() (bool, string) {
		code, _, _ := get(t, c, ring, "Bearer "+tokenA)
		return code == http.StatusOK, strconv.Itoa(code)
	})
}

// Without a token file the admin listener must stay on loopback: chatd
// refuses to start otherwise, and says why.
func TestNonLoopbackAdminNeedsAToken(t *testing.T) {
	_, exit := chatdtest.TryStartProcess(t, "--admin-listen", "0.0.0.0:0")
	if exit == nil || exit.Code != 2 || !strings.Contains(exit.Stderr, "--admin-listen 0.0.0.0:0 is not a loopback address: an admin listener reachable from other machines needs --admin-token-file") {
		t.Fatalf("exit %+v", exit)
	}
	// A token file that holds no token is refused at start.
	empty := filepath.Join(t.TempDir(), "empty")
	writeTokens(t, empty, "# nothing yet\n")
	_, exit = chatdtest.TryStartProcess(t, "--admin-listen", "0.0.0.0:0", "--admin-token-file", empty)
	if exit == nil || exit.Code != 1 || !strings.Contains(exit.Stderr, "no token in the file") {
		t.Fatalf("exit %+v", exit)
	}
	// With a token it listens on every interface, and wants the token.
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	writeTokens(t, tokens, tokenA+"\n")
	p := chatdtest.StartProcess(t, "--admin-listen", "0.0.0.0:0", "--admin-token-file", tokens)
	line := p.Logs().Line("chatd listening")
	adminAddr, _ := line["admin"].(string)
	_, port, _ := strings.Cut(adminAddr, "]:")
	if port == "" {
		_, port, _ = strings.Cut(adminAddr, ":")
	}
	url := "http://127.0.0.1:" + port + "/admin/cluster"
	if code, _, _ := get(t, http.DefaultClient, url, ""); code != http.StatusUnauthorized {
		t.Fatalf("%s (from %q) without a token: %d", url, adminAddr, code)
	}
	if code, _, _ := get(t, http.DefaultClient, url, "Bearer "+tokenA); code != http.StatusOK {
		t.Fatalf("%s with the token: %d", url, code)
	}
}

// With --tls-cert-file the admin listener serves the same certificate:
// its bearer tokens never cross the network in clear.
func TestAdminListenerTLS(t *testing.T) {
	dir := t.TempDir()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(testcert.Write(t, dir, 1, time.Now())) {
		t.Fatal("bad test certificate")
	}
	tokens := filepath.Join(dir, "admin-tokens")
	writeTokens(t, tokens, tokenA+"\n")
	srv := chatdtest.Start(t, "--admin-token-file", tokens,
		"--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-key-file", filepath.Join(dir, "tls.key"))
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: chatdtest.Timeout}
	if code, _, body := get(t, https, "https://"+srv.AdminAddr+"/admin/cluster", "Bearer "+tokenA); code != http.StatusOK {
		t.Fatalf("https admin: %d %s", code, body)
	}
	plain := &http.Client{Timeout: chatdtest.Timeout}
	req, _ := http.NewRequest(http.MethodGet, srv.AdminURL("/admin/cluster"), nil)
	req.Header.Set("Authorization", "Bearer "+tokenA)
	if resp, err := plain.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the admin API answered over plain HTTP on a TLS node")
		}
	}
}
