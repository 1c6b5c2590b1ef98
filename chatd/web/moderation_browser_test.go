package web_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// apiServer starts a node that serves the server API with one key, and
// returns it with a function that calls the API as a backend does,
// failing the test on any answer but 200.
func apiServer(t *testing.T) (*chatdtest.Server, func(method, path, body string)) {
	t.Helper()
	const key = "api-key-browser-tests-0000"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := chatdtest.Start(t, "--api-key-file", keys)
	call := func(method, path, body string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.AdminURL(path), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %d", method, path, resp.StatusCode)
		}
	}
	return srv, call
}

// TestBrowserKickedFromRoom: the backend kicks the signed-in user from a
// room through the server API; the page drops the room from its list and
// says why, and the user may join it again.
func TestBrowserKickedFromRoom(t *testing.T) {
	srv, call := apiServer(t)
	br := startBrowser(t, "http://"+srv.Addr+"/")
	tb := br.newTab("bob")
	tb.signIn("bob")
	tb.join("lobby")

	call(http.MethodPost, "/api/v1/rooms/lobby/kick", `{"user":"bob","reason":"off-topic"}`)
	tb.waitJS("the page says bob was removed from lobby, and why",
		`[...document.querySelectorAll('[data-testid=toast]')].some(e => e.textContent === 'You were removed from #lobby: off-topic')`)
	tb.waitJS("lobby is no longer listed", `document.querySelector('[data-testid=room-item][data-room=lobby]') === null`)
	tb.join("lobby")
}

// TestBrowserSubscribedToRoom: the backend subscribes the signed-in user to
// a room through the server API; the page lists the room, says so, shows
// its messages, and joins it again after a reload (it keeps the room like
// one the user joined).
func TestBrowserSubscribedToRoom(t *testing.T) {
	srv, call := apiServer(t)
	br := startBrowser(t, "http://"+srv.Addr+"/")
	tb := br.newTab("bob")
	tb.signIn("bob")
	tb.join("lobby")
	call(http.MethodPost, "/api/v1/rooms/support:4711/subscriptions", `{"user":"bob"}`)
	tb.waitJS("the page says bob was added to support:4711",
		`[...document.querySelectorAll('[data-testid=toast]')].some(e => e.textContent === 'You were added to #support:4711')`)
	tb.waitJS("support:4711 is listed and joined", `document.querySelector('[data-testid=room-item][data-room="support:4711"][data-joined=true]') !== null`)
	call(http.MethodPost, "/api/v1/rooms/support:4711/messages", `{"user":"agent-7","text":"how can I help?"}`)
	tb.open("support:4711")
	tb.waitMessage("support:4711", "agent-7", "how can I help?", "sent")

	tb.do("reload the page", chromedp.Reload())
	tb.waitJS("support:4711 is joined again after the reload",
		`document.querySelector('[data-testid=room-item][data-room="support:4711"][data-joined=true]') !== null`)
	call(http.MethodPost, "/api/v1/rooms/support:4711/messages", `{"user":"agent-7","text":"still there?"}`)
	tb.waitMessage("support:4711", "agent-7", "still there?", "sent")
}

// TestBrowserMessageDeleted: the backend deletes a message through the
// server API; the page of a reader who saw it replaces its text with
// "message deleted" at once, keeps the messages around it, and still shows
// it deleted after a reload (from the server's history); a reader who
// joins later never sees the text.
func TestBrowserMessageDeleted(t *testing.T) {
	srv, call := apiServer(t)
	br := startBrowser(t, "http://"+srv.Addr+"/")
	bob := br.newTab("bob")
	bob.signIn("bob")
	bob.join("lobby")
	bob.say("before it")
	bob.say("an oops to delete")
	bob.say("after it")
	seq := bob.waitMessage("lobby", "bob", "an oops to delete", "sent")
	bob.waitMessage("lobby", "bob", "after it", "sent")

	call(http.MethodDelete, fmt.Sprintf("/api/v1/rooms/lobby/messages/%d?by=mod", seq), "")
	deleted := fmt.Sprintf(`(() => {
		const li = document.querySelector('[data-testid=message][data-room=lobby][data-seq="%d"]');
		return !!li && li.dataset.deleted === 'true' && li.querySelector('[data-testid=message-text]').textContent === 'message deleted' &&
			!document.body.textContent.includes('an oops to delete') &&
			document.body.textContent.includes('before it') && document.body.textContent.includes('after it');
	})()`, seq)
	bob.waitJS("the deleted message says so, live", deleted)
	bob.do("reload the page", chromedp.Reload())
	bob.waitJS("the deleted message says so after a reload", deleted)

	ann := br.newTab("ann")
	ann.signIn("ann")
	ann.join("lobby")
	ann.waitMessage("lobby", "bob", "after it", "sent")
	ann.waitJS("a later reader sees the message deleted", deleted)
}
