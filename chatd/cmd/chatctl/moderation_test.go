package main

import (
	"fmt"
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
	// The server unregisters a closed connection once its session ends,
	// a moment after the close frame: wait for that, or the next
	// disconnect would count the closing one too.
	chatdtest.Eventually(t, chatdtest.Timeout, "bob's closed connection gone from the server", func() (bool, string) {
		r := chatctl(t, env, "who", "--user", "bob")
		return r.code == exitOK && r.stdout == "", r.stdout + r.stderr
	})

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

// kick makes the user's connection leave the room with the reason; a
// missing --room or --user exits 2, a bad room 2 (chatctl checks it).
func TestKick(t *testing.T) {
	srv, base, keys := apiNode(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")
	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys}

	r := chatctl(t, env, "kick", "--room", "lobby", "--user", "bob", "--reason", "off-topic")
	if r.code != exitOK || !strings.Contains(r.stdout, "kicked bob from lobby: 1 connection(s) left") {
		t.Fatalf("kick: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var l protocol.Left
	bob.ExpectDecode(protocol.TypeLeft, &l)
	if l.Room != "lobby" || l.Reason != "off-topic" || l.ID != "" {
		t.Fatalf("bob got %+v", l)
	}
	r = chatctl(t, env, "kick", "--room", "lobby", "--user", "bob", "--json")
	if recs := jsonLines(t, r.stdout); r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "chatctl.kicked" || recs[0]["kicked"] != 0.0 {
		t.Fatalf("second kick: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"kick", "--user", "bob"}, {"kick", "--room", "lobby"}} {
		if r = chatctl(t, env, args...); r.code != exitUsage {
			t.Fatalf("%q: code %d, stderr %q", args, r.code, r.stderr)
		}
	}
}

// ban, bans and unban: a room ban refuses bob's join with banned and is
// listed with its end; unban lifts it; a bad --for exits 3 (the API's
// bad_request).
func TestBanUnbanBans(t *testing.T) {
	srv, base, keys := apiNode(t)
	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys}
	// The node answers bans once it has read the moderation log.
	chatdtest.Eventually(t, chatdtest.Timeout, "the moderation log read", func() (bool, string) {
		r := chatctl(t, env, "bans")
		return r.code == exitOK, r.stderr
	})

	r := chatctl(t, env, "ban", "--room", "lobby", "--user", "bob", "--for", "1h", "--reason", "spam")
	if r.code != exitOK || !strings.Contains(r.stdout, "banned bob from lobby until ") || !strings.HasSuffix(strings.TrimSpace(r.stdout), ": spam") {
		t.Fatalf("ban: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	bob := chatdtest.Connect(t, srv.URL, "bob")
	chatdtest.Eventually(t, chatdtest.Timeout, "bob's join refused", func() (bool, string) {
		bob.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "lobby"})
		f := bob.Next()
		if f.Type == protocol.TypeJoined {
			bob.Do(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l", Room: "lobby"})
			bob.Expect(protocol.TypeLeft)
		}
		return f.Type == protocol.TypeError && strings.Contains(string(f.Raw), `"banned"`), string(f.Raw)
	})
	r = chatctl(t, env, "bans", "--json")
	if recs := jsonLines(t, r.stdout); r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "chatctl.ban" || recs[0]["user"] != "bob" || recs[0]["room"] != "lobby" {
		t.Fatalf("bans: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r = chatctl(t, env, "unban", "--room", "lobby", "--user", "bob"); r.code != exitOK || !strings.Contains(r.stdout, "unbanned bob from lobby") {
		t.Fatalf("unban: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	chatdtest.Eventually(t, chatdtest.Timeout, "the ban lifted", func() (bool, string) {
		r := chatctl(t, env, "bans")
		return r.code == exitOK && r.stdout == "", r.stdout
	})
	if r = chatctl(t, env, "ban", "--user", "bob", "--for", "ever"); r.code != exitServerError || !strings.Contains(r.stderr, "bad_request") {
		t.Fatalf("ban --for ever: code %d, stderr %q", r.code, r.stderr)
	}
	if r = chatctl(t, env, "ban", "--room", "lobby"); r.code != exitUsage {
		t.Fatalf("ban without --user: code %d", r.code)
	}
}

// mute refuses bob's sends with muted; unmute lifts it.
func TestMuteUnmute(t *testing.T) {
	srv, base, keys := apiNode(t)
	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys}
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")
	r := chatctl(t, env, "mute", "--room", "lobby", "--user", "bob", "--for", "10m", "--json")
	if recs := jsonLines(t, r.stdout); r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "chatctl.muted" || recs[0]["room"] != "lobby" {
		t.Fatalf("mute: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	chatdtest.Eventually(t, chatdtest.Timeout, "bob's send refused as muted", func() (bool, string) {
		bob.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s", Room: "lobby", CID: "m", Text: "hi"})
		for {
			f := bob.Next()
			if f.Type == protocol.TypeError || f.Type == protocol.TypeAck {
				return strings.Contains(string(f.Raw), `"muted"`), string(f.Raw)
			}
		}
	})
	if r = chatctl(t, env, "unmute", "--room", "lobby", "--user", "bob"); r.code != exitOK || !strings.Contains(r.stdout, "unmuted bob in lobby") {
		t.Fatalf("unmute: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r = chatctl(t, env, "mute", "--user", "bob"); r.code != exitUsage {
		t.Fatalf("mute without --room: code %d", r.code)
	}
}

// delete removes a message: the reader gets the deletion, history prints
// the message deleted and the deletion; again says it already was; a seq
// without a message exits 3, a missing --seq 2.
func TestDelete(t *testing.T) {
	srv, base, keys := apiNode(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")
	bob.Say("lobby", "c1", "keep me")
	oops := bob.Say("lobby", "c2", "an oops")
	env := map[string]string{envAPIURL: base, envAPIKeyFile: keys, "CHATCTL_URL": srv.URL, "CHATCTL_NAME": "reader"}

	r := chatctl(t, env, "delete", "--room", "lobby", "--seq", fmt.Sprint(oops.Seq), "--as", "mod-ann")
	if want := fmt.Sprintf("deleted lobby seq %d (the deletion is seq %d)", oops.Seq, oops.Seq+1); r.code != exitOK || !strings.Contains(r.stdout, want) {
		t.Fatalf("delete: code %d, stdout %q (want %q), stderr %q", r.code, r.stdout, want, r.stderr)
	}
	var d protocol.Message
	bob.ExpectDecode(protocol.TypeDeleted, &d)
	if d.Target != oops.Seq || d.From != "mod-ann" {
		t.Fatalf("bob got %+v", d)
	}
	r = chatctl(t, env, "history", "--room", "lobby")
	if !strings.Contains(r.stdout, fmt.Sprintf("#%d bob: (message deleted)", oops.Seq)) || !strings.Contains(r.stdout, fmt.Sprintf("#%d mod-ann deleted #%d", oops.Seq+1, oops.Seq)) ||
		strings.Contains(r.stdout, "an oops") || !strings.Contains(r.stdout, "keep me") {
		t.Fatalf("history after the deletion: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = chatctl(t, env, "delete", "--room", "lobby", "--seq", fmt.Sprint(oops.Seq), "--json")
	recs := jsonLines(t, r.stdout)
	if r.code != exitOK || len(recs) != 1 || recs[0]["type"] != "chatctl.deleted" || recs[0]["already"] != true {
		t.Fatalf("delete again: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r = chatctl(t, env, "delete", "--room", "lobby", "--seq", "999"); r.code != exitServerError || !strings.Contains(r.stderr, "no_such_message") {
		t.Fatalf("delete of an unwritten seq: code %d, stderr %q", r.code, r.stderr)
	}
	if r = chatctl(t, env, "delete", "--room", "lobby"); r.code != exitUsage {
		t.Fatalf("delete without --seq: code %d, stderr %q", r.code, r.stderr)
	}
}
