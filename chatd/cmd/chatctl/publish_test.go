package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

const testAPIKey = "chatctl-test-key-0123456789"

// apiNode starts a node serving the server API with testAPIKey; it returns
// the node, the API's base URL and the key file.
func apiNode(t *testing.T, args ...string) (*chatdtest.Server, string, string) {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "api-keys")
	if err := os.WriteFile(keys, []byte("# the key\n"+testAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := chatdtest.Start(t, append([]string{"--api-key-file", keys}, args...)...)
	return srv, "http://" + srv.AdminAddr, keys
}

// publish reaches a real client subscribed to the room, as --as or as the
// system sender; the same idempotency key stores once; the environment
// supplies the URL and the key file.
func TestPublish(t *testing.T) {
	srv, base, keys := apiNode(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")

	r := chatctl(t, nil, "publish", "--api-url", base, "--api-key-file", keys, "--room", "lobby", "--as", "shop", "order", "42", "shipped")
	if r.code != exitOK || !strings.Contains(r.stdout, "published to lobby: seq 1, epoch ") {
		t.Fatalf("publish: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if m := bob.NextMessage(); m.Seq != 1 || m.From != "shop" || m.Text != "order 42 shipped" {
		t.Fatalf("bob got %+v", m)
	}

	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys}
	for i, want := range []string{`"duplicate":false`, `"duplicate":true`} {
		r = chatctl(t, env, "publish", "--room", "lobby", "--idempotency-key", "once", "--json", "only once")
		recs := jsonLines(t, r.stdout)
		if r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "chatctl.published" || recs[0]["seq"] != 2.0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("publish %d with the same key: code %d, stdout %q, stderr %q", i, r.code, r.stdout, r.stderr)
		}
	}
	if m := bob.NextMessage(); m.Seq != 2 || m.From != "system:api" || m.Text != "only once" {
		t.Fatalf("bob got %+v", m)
	}
}

// A refused request exits 3 with the API's code, a refused key 4, a
// missing key file or a bad room name 2, an admin listener without the API 1; a connection
// refused is retried until --timeout (5).
func TestPublishRefused(t *testing.T) {
	_, base, keys := apiNode(t, "--max-text-bytes", "10")
	noAPI := chatdtest.Start(t)
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-key-at-all-0000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		exit int
		code string
	}{
		{"text too long", []string{"--api-url", base, "--api-key-file", keys, "--room", "r", "more than ten bytes"}, exitServerError, "text_too_long"},
		{"bad room", []string{"--api-url", base, "--api-key-file", keys, "--room", "no spaces", "hi"}, exitUsage, "usage"}, // checked before asking
		{"bad sender", []string{"--api-url", base, "--api-key-file", keys, "--room", "r", "--as", "a\tb", "hi"}, exitServerError, "bad_request"},
		{"wrong key", []string{"--api-url", base, "--api-key-file", wrong, "--room", "r", "hi"}, exitAuth, "unauthorized"},
		{"no key file", []string{"--api-url", base, "--room", "r", "hi"}, exitUsage, "usage"},
		{"API not enabled", []string{"--api-url", noAPI.AdminURL(""), "--api-key-file", keys, "--room", "r", "hi"}, exitFailure, "unexpected_reply"},
		{"nobody listening", []string{"--api-url", "http://" + closedAddr(t), "--api-key-file", keys, "--room", "r", "--timeout", "300ms", "hi"}, exitTimeout, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := chatctl(t, nil, append([]string{"publish", "--json"}, tc.args...)...)
			errs := ofType(jsonLines(t, r.stdout), "chatctl.error")
			if r.code != tc.exit || len(errs) != 1 || errs[0]["code"] != tc.code {
				t.Fatalf("code %d, stdout %q, stderr %q; want exit %d, code %q", r.code, r.stdout, r.stderr, tc.exit, tc.code)
			}
		})
	}
}

// A 503 is retried with the same idempotency key until --timeout, then
// exits 5: a node without quorum never stores it.
func TestPublishRetriesUnavailable(t *testing.T) {
	_, base, keys := apiNode(t, "--expected-nodes", "3", "--route-timeout", "100ms")
	r := chatctl(t, nil, "publish", "--json", "--api-url", base, "--api-key-file", keys, "--room", "r", "--timeout", "3s", "hi")
	recs := jsonLines(t, r.stdout)
	retries := ofType(recs, "chatctl.retrying")
	errs := ofType(recs, "chatctl.error")
	if r.code != exitTimeout || len(retries) < 2 || retries[0]["code"] != "unavailable" || len(errs) != 1 || errs[0]["code"] != "timeout" {
		t.Fatalf("code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
