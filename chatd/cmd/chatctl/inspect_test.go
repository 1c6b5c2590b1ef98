package main

import (
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// rooms lists the rooms in use with their counts; who --room lists a
// room's users, who --user a user's connections; asking for both or
// neither exits 2.
func TestRoomsAndWho(t *testing.T) {
	srv, base, keys := apiNode(t)
	for _, user := range []string{"ann", "bob"} {
		chatdtest.Connect(t, srv.URL, user).Join("lobby")
	}
	chatdtest.Connect(t, srv.URL, "bob").Join("side")
	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys}

	r := chatctl(t, env, "rooms")
	if r.code != exitOK || !strings.Contains(r.stdout, "lobby\t2 users\t1 nodes") || !strings.Contains(r.stdout, "side\t1 users") || strings.Contains(r.stdout, "#moderation") {
		t.Fatalf("rooms: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	recs := jsonLines(t, chatctl(t, env, "rooms", "--json").stdout)
	if len(recs) != 2 || recs[0]["type"] != "chatctl.room" || recs[0]["room"] != "lobby" || recs[0]["users"] != 2.0 {
		t.Fatalf("rooms --json: %v", recs)
	}

	if r = chatctl(t, env, "who", "--room", "lobby"); r.code != exitOK || r.stdout != "ann\nbob\n" {
		t.Fatalf("who --room: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r = chatctl(t, env, "who", "--room", "lobby", "--limit", "1"); r.code != exitOK || r.stdout != "ann\n… 1 more (2 present)\n" {
		t.Fatalf("who --room --limit 1: code %d, stdout %q", r.code, r.stdout)
	}
	r = chatctl(t, env, "who", "--user", "bob")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != exitOK || len(lines) != 2 ||
		!strings.Contains(r.stdout, "\twebsocket\tlobby\n") || !strings.Contains(r.stdout, "\twebsocket\tside\n") {
		t.Fatalf("who --user: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	recs = jsonLines(t, chatctl(t, env, "who", "--user", "bob", "--json").stdout)
	if len(recs) != 2 || recs[0]["type"] != "chatctl.connection" || recs[0]["user"] != "bob" {
		t.Fatalf("who --user --json: %v", recs)
	}

	for _, args := range [][]string{{"who"}, {"who", "--room", "lobby", "--user", "bob"}, {"who", "--room", "a b"}} {
		if r = chatctl(t, env, args...); r.code != exitUsage {
			t.Fatalf("%q: code %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if r = chatctl(t, env, "who", "--room", "lobby", "--limit", "-1"); r.code != exitServerError || !strings.Contains(r.stderr, "bad_request") {
		t.Fatalf("who --limit -1: code %d, stderr %q", r.code, r.stderr)
	}
}

// subscribe joins the user's connection to the room (once: a second call
// joins nobody); a missing --user exits 2.
func TestSubscribeCommand(t *testing.T) {
	srv, base, keys := apiNode(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys}
	r := chatctl(t, env, "subscribe", "--room", "news", "--user", "bob")
	if r.code != exitOK || !strings.Contains(r.stdout, "subscribed bob to news: 1 connection(s) joined") {
		t.Fatalf("subscribe: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	bob.Expect("joined")
	recs := jsonLines(t, chatctl(t, env, "subscribe", "--room", "news", "--user", "bob", "--json").stdout)
	if len(recs) != 1 || recs[0]["type"] != "chatctl.subscribed" || recs[0]["subscribed"] != 0.0 {
		t.Fatalf("second subscribe --json: %v", recs)
	}
	if r = chatctl(t, env, "subscribe", "--room", "news"); r.code != exitUsage {
		t.Fatalf("subscribe without --user: code %d", r.code)
	}
}
