package main

import (
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// disconnect closes the user's connections with 4010, or 4011 with
// --no-reconnect, and says how many; bad input exits 2 or 3.
func TestDisconnect(t *testing.T) {
	srv, base, keys := apiNode(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys}

	r := chatctl(t, env, "disconnect", "--user", "bob", "--reason", "take a break")
	if r.code != exitOK || !strings.Contains(r.stdout, "disconnected bob: 1 connection(s) closed with 4010") {
		t.Fatalf("disconnect: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if code, reason := bob.ExpectClose(); code != protocol.CloseDisconnected || reason != "take a break" {
		t.Fatalf("bob closed with %d %q", code, reason)
	}

	bob = chatdtest.Connect(t, srv.URL, "bob")
	r = chatctl(t, env, "disconnect", "--user", "bob", "--no-reconnect", "--json")
	recs := jsonLines(t, r.stdout)
	if r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "chatctl.disconnected" || recs[0]["closed"] != 1.0 || recs[0]["code"] != 4011.0 {
		t.Fatalf("disconnect --no-reconnect: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if code, _ := bob.ExpectClose(); code != protocol.CloseDisconnectedNoReconnect {
		t.Fatalf("bob closed with %d", code)
	}

	if r = chatctl(t, env, "disconnect"); r.code != exitUsage {
		t.Fatalf("disconnect without --user: code %d, stderr %q", r.code, r.stderr)
	}
	if r = chatctl(t, env, "disconnect", "--user", "bob", "--reason", strings.Repeat("r", 200)); r.code != exitServerError || !strings.Contains(r.stderr, "bad_request") {
		t.Fatalf("disconnect with a long reason: code %d, stderr %q", r.code, r.stderr)
	}
}
