package web_test

// Browser tests: the embedded page, driven in real headless Chromium against
// a real in-process chatd. They need Debian's chromium at /usr/bin/chromium
// (CHROMIUM_PATH overrides); hack/ensure-chromium.sh installs it. A missing
// browser fails the tests: a skipped browser test would pass for nothing.
//
// Waits poll the page (chromedp.Poll with an interval), never sleep. Set
// RINGCHAT_SCREENSHOT=/path.png to save a screenshot of a populated page
// from TestBrowserRoomsUnreadAndDirectMessages.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// waitTimeout bounds one wait in the page: generous for `go test -race` on a
// loaded two-core machine, short enough that a hang fails quickly; scaled by
// RINGCHAT_TEST_TIMEOUT_SCALE. extraTimeout bounds the small things around
// it (closing the browser, reading the page's state for a failure message).
var (
	waitTimeout  = testtime.Bound(20 * time.Second)
	extraTimeout = testtime.Bound(5 * time.Second)
)

func chromiumPath() string {
	if p := os.Getenv("CHROMIUM_PATH"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// browser is one headless Chromium with a fresh profile. Its tabs each get
// their own window, so every page is visible and none is throttled.
type browser struct {
	t    *testing.T
	root context.Context // the browser's first tab; owns the process
	url  string
	used bool // root handed out as a tab

	mu       sync.Mutex
	problems []string // uncaught exceptions, console errors, CSP reports
	consoles sync.WaitGroup
	tabs     []*tab
}

type tab struct {
	b      *browser
	label  string
	ctx    context.Context
	cancel context.CancelFunc
}

// startBrowser launches Chromium. Its cleanup closes the browser, and fails
// the test when a page threw an exception or logged an error.
func startBrowser(t *testing.T, pageURL string) *browser {
	t.Helper()
	path := chromiumPath()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("chromium not found at %s: run hack/ensure-chromium.sh", path)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(allocCtx)
	b := &browser{t: t, root: root, url: pageURL}
	t.Cleanup(func() {
		for _, tb := range b.tabs {
			if tb.ctx != b.root {
				tb.cancel()
			}
		}
		closeCtx, cancel := context.WithTimeout(root, 2*extraTimeout)
		if err := chromedp.Cancel(closeCtx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("closing chromium: %v", err)
		}
		cancel()
		cancelRoot()
		cancelAlloc()
		b.consoles.Wait()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, p := range b.problems {
			t.Errorf("browser console: %s", p)
		}
	})
	// The first Run starts the browser; it must not carry a timeout (the
	// timeout would end the browser), so a watchdog bounds it instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(root) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium (%s): %v", path, err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("chromium (%s) did not start within %v", path, waitTimeout)
	}
	return b
}

// newTab opens a tab on the chat page.
func (b *browser) newTab(label string) *tab {
	b.t.Helper()
	tb := &tab{b: b, label: label}
	if !b.used {
		b.used = true
		tb.ctx, tb.cancel = b.root, func() {}
	} else {
		tb.ctx, tb.cancel = chromedp.NewContext(b.root)
		if err := chromedp.Do(tb.ctx); err != nil {
			b.t.Fatalf("tab %s: open: %v", label, err)
		}
	}
	b.tabs = append(b.tabs, tb)
	b.watchConsole(tb)
	tb.do("open the page", chromedp.Navigate(b.url))
	tb.waitJS("the page script has started", `!!window.ringchat`)
	return tb
}

// watchConsole records what the page reports as broken: uncaught
// exceptions, console.error calls and browser-log errors (which include
// Content-Security-Policy violations). Dropped WebSocket connections during
// a reload, and Socket.IO long-polling requests refused while the server
// restarts, are expected and not counted.
func (b *browser) watchConsole(tb *tab) {
	msgs := chromedp.Console(tb.ctx)
	b.consoles.Add(1)
	go func() {
		defer b.consoles.Done()
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && !m.IsException() && !strings.Contains(m.Text, "Content Security Policy") {
				continue
			}
			if strings.Contains(m.Text, "WebSocket") || strings.Contains(m.Text, "favicon.ico") {
				continue
			}
			if strings.Contains(m.Text, "net::ERR_CONNECTION_REFUSED") && strings.Contains(m.URL, "/socket.io/") {
				continue // a long-polling request while the server restarts
			}
			b.mu.Lock()
			b.problems = append(b.problems, fmt.Sprintf("tab %s: %s (%s:%d)", tb.label, m, m.URL, m.Line))
			b.mu.Unlock()
		}
	}()
}

// do runs actions in the tab, each run bounded by waitTimeout.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, waitTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.b.t.Fatalf("tab %s: %s: %v\n%s", tb.label, what, err, tb.diagnose())
	}
}

// eval evaluates a JavaScript expression and decodes its value into v.
func (tb *tab) eval(expr string, v any) {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, waitTimeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		tb.b.t.Fatalf("tab %s: evaluate %s: %v", tb.label, expr, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		tb.b.t.Fatalf("tab %s: decode %s from %s: %v", tb.label, raw, expr, err)
	}
}

// waitJS polls a JavaScript expression until it is truthy.
func (tb *tab) waitJS(what, expr string) {
	tb.b.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, waitTimeout+extraTimeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(25*time.Millisecond),
		chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil {
		tb.b.t.Fatalf("tab %s: waiting until %s: %v\n%s", tb.label, what, err, tb.diagnose())
	}
}

// diagnose describes the page state for a failure message.
func (tb *tab) diagnose() string {
	ctx, cancel := context.WithTimeout(tb.ctx, extraTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		conn: document.querySelector('[data-testid=conn-state]')?.innerText,
		signinError: document.querySelector('[data-testid=signin-error]')?.innerText,
		typing: document.querySelector('[data-testid=typing]')?.innerText,
		messages: [...document.querySelectorAll('[data-testid=message]')].map(e => [e.dataset.room, e.dataset.seq, e.dataset.from, e.dataset.state, e.querySelector('[data-testid=message-text]')?.textContent]),
		state: window.ringchat ? window.ringchat.snapshot() : null,
	})`))
	if err != nil {
		return "(page state unavailable: " + err.Error() + ")"
	}
	return "page state: " + s
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

const (
	selName      = `[data-testid="name"]`
	selConnect   = `[data-testid="connect"]`
	selRoomInput = `[data-testid="room-input"]`
	selJoin      = `[data-testid="join"]`
	selComposer  = `[data-testid="composer"]`
	selSend      = `[data-testid="send"]`
)

func (tb *tab) signIn(name string) {
	tb.b.t.Helper()
	tb.do("sign in as "+name,
		chromedp.WaitVisible(chromedp.CSS(selName)),
		// The name the other tab used is remembered in localStorage and
		// prefilled. (chromedp.SetValue cannot set "": v0.23.0 reports
		// "could not set value" for an empty string.)
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[chromedp.Void](`document.querySelector('`+selName+`').value = ''`)(ctx, t)
			return err
		}),
		chromedp.SendKeys(chromedp.CSS(selName), name),
		chromedp.Click(chromedp.CSS(selConnect)),
	)
	tb.waitOnline()
	tb.waitJS(name+" is shown as the signed-in user",
		`document.querySelector('[data-testid=me]').textContent === `+js(name))
}

func (tb *tab) waitOnline() {
	tb.b.t.Helper()
	tb.waitJS("the connection state is online",
		`document.querySelector('[data-testid=conn-state]').dataset.state === 'online'`)
}

func (tb *tab) join(room string) {
	tb.b.t.Helper()
	tb.do("join "+room,
		chromedp.SendKeys(chromedp.CSS(selRoomInput), room),
		chromedp.Click(chromedp.CSS(selJoin)),
	)
	tb.waitJS("room "+room+" is joined and active", fmt.Sprintf(
		`document.querySelector('[data-testid=room-item][data-room=%s][data-joined=true].active') !== null`, js(room)))
}

func (tb *tab) open(key string) {
	tb.b.t.Helper()
	sel := fmt.Sprintf(`[data-testid="room-item"][data-room=%s] .room-link`, js(key))
	tb.do("open "+key, chromedp.Click(chromedp.CSS(sel)))
	tb.waitJS(key+" is the active conversation", fmt.Sprintf(
		`document.querySelector('[data-testid=room-item][data-room=%s].active') !== null`, js(key)))
}

// say types text into the composer and sends it with Enter.
func (tb *tab) say(text string) {
	tb.b.t.Helper()
	tb.do("send "+text, chromedp.SendKeys(chromedp.CSS(selComposer), text+"\r"))
}

// waitMessage waits for a message with that text in that conversation, in
// the given state, and returns its seq (0 for DMs).
func (tb *tab) waitMessage(room, from, text, state string) int {
	tb.b.t.Helper()
	find := fmt.Sprintf(`[...document.querySelectorAll('[data-testid=message][data-room=%s][data-from=%s]')]
		.find(e => e.querySelector('[data-testid=message-text]').textContent === %s && e.dataset.state === %s)`,
		js(room), js(from), js(text), js(state))
	tb.waitJS(fmt.Sprintf("%s shows %q from %s in %s as %s", tb.label, text, from, room, state), `!!`+find)
	var seq string
	tb.eval(`(`+find+`).dataset.seq || ""`, &seq)
	n, _ := strconv.Atoi(seq)
	return n
}

// seqs returns the data-seq of every shown message of room, in page order.
func (tb *tab) seqs(room string) []int {
	tb.b.t.Helper()
	var out []int
	tb.eval(fmt.Sprintf(`[...document.querySelectorAll('[data-testid=message][data-room=%s]')].map(e => Number(e.dataset.seq || 0))`, js(room)), &out)
	return out
}

// snapshot is the client state that the page exposes for tests.
type snapshot struct {
	Conn  string `json:"conn"`
	Me    string `json:"me"`
	Rooms []struct {
		Key          string `json:"key"`
		Joined       bool   `json:"joined"`
		ReachedStart bool   `json:"reachedStart"`
		Epoch        string `json:"epoch"`
		LastSeq      *int   `json:"lastSeq"`
		Seqs         []int  `json:"seqs"`
		LastJoin     *struct {
			Since     *int   `json:"since"`
			Epoch     string `json:"epoch"`
			Recovered *bool  `json:"recovered"`
		} `json:"lastJoin"`
	} `json:"rooms"`
}

func (tb *tab) snapshot() snapshot {
	tb.b.t.Helper()
	var s snapshot
	tb.eval(`window.ringchat.snapshot()`, &s)
	return s
}

// pair starts a server, a browser and two signed-in tabs, alice (a) and bob
// (b), both in room.
func pair(t *testing.T, room string) (a, b *tab) {
	t.Helper()
	srv := chatdtest.Start(t)
	br := startBrowser(t, "http://"+srv.Addr+"/")
	a = br.newTab("A")
	b = br.newTab("B")
	a.signIn("alice")
	b.signIn("bob")
	a.join(room)
	b.join(room)
	return a, b
}

func presenceHas(user string) string {
	return fmt.Sprintf(`document.querySelector('[data-testid=presence] [data-testid=presence-user][data-user=%s]') !== null`, js(user))
}

// TestBrowserTwoTabsChat: two tabs sign in under different names, join one
// room, see each other in the member list, and exchange a message that the
// sender sees acknowledged and the other tab sees arrive.
func TestBrowserTwoTabsChat(t *testing.T) {
	a, b := pair(t, "lobby")

	b.waitJS("bob's member list shows alice", presenceHas("alice"))
	a.waitJS("alice's member list shows bob", presenceHas("bob"))

	a.say("hello from alice")
	seq := a.waitMessage("lobby", "alice", "hello from alice", "sent")
	if seq != 1 {
		t.Errorf("alice's first message has seq %d, want 1", seq)
	}
	if got := b.waitMessage("lobby", "alice", "hello from alice", "sent"); got != seq {
		t.Errorf("bob sees the message with seq %d, alice with %d", got, seq)
	}

	// Markup in a message is text, never HTML.
	evil := `<img src=x data-evil=1> & <b>bold</b>`
	b.do("bob sends markup", chromedp.SendKeys(chromedp.CSS(selComposer), evil), chromedp.Click(chromedp.CSS(selSend)))
	a.waitMessage("lobby", "bob", evil, "sent")
	var injected bool
	a.eval(`document.querySelector('[data-testid=messages] [data-evil], [data-testid=messages] b') !== null`, &injected)
	if injected {
		t.Errorf("message text was rendered as HTML")
	}
	if got := a.seqs("lobby"); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("alice shows seqs %v, want [1 2]", got)
	}

	// The join form refuses names that break the protocol's room rules.
	a.do("join a bad room name",
		chromedp.SendKeys(chromedp.CSS(selRoomInput), "no spaces allowed"),
		chromedp.Click(chromedp.CSS(selJoin)))
	a.waitJS("the join form explains the room rules",
		`(() => { const e = document.querySelector('[data-testid=room-error]'); return !e.hidden && /letters, digits/.test(e.textContent); })()`)
}

// TestBrowserReloadResumes: bob reloads the page while alice sends two more
// messages. The reloaded page must come back online in the same room, resume
// with since=<last seq>, and show every message exactly once, in order.
func TestBrowserReloadResumes(t *testing.T) {
	a, b := pair(t, "lobby")
	a.say("before the reload")
	b.waitMessage("lobby", "alice", "before the reload", "sent")

	// Hold the reloaded page's script, so that bob is certainly away while
	// alice sends: the old page is gone once the new one asks for app.js.
	ctx, cancel := context.WithTimeout(b.ctx, waitTimeout)
	defer cancel()
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/app.js*"}}}); err != nil {
		t.Fatalf("intercept app.js: %v", err)
	}
	ignoreCache := true
	if _, err := chromedp.Call(ctx, page.Reload, page.ReloadParams{IgnoreCache: &ignoreCache}); err != nil {
		t.Fatalf("reload bob's page: %v", err)
	}
	var held fetch.RequestID
	for ev, err := range paused {
		if err != nil {
			t.Fatalf("waiting for the reloaded page to ask for app.js: %v", err)
		}
		held = ev.RequestID
		break
	}

	a.waitJS("alice sees bob leave", `!(`+presenceHas("bob")+`)`)
	a.say("while you were away 1")
	a.say("while you were away 2")
	a.waitMessage("lobby", "alice", "while you were away 2", "sent")

	if _, err := chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: held}); err != nil {
		t.Fatalf("release app.js: %v", err)
	}
	if _, err := chromedp.Call(ctx, fetch.Disable, cdp.Empty{}); err != nil {
		t.Fatalf("stop intercepting: %v", err)
	}

	b.waitOnline()
	b.waitJS("bob's reloaded page is back in lobby",
		`document.querySelector('[data-testid=room-item][data-room="lobby"][data-joined=true]') !== null`)
	b.waitMessage("lobby", "alice", "while you were away 2", "sent")
	b.waitJS("bob shows three messages", `document.querySelectorAll('[data-testid=message][data-room="lobby"]').length >= 3`)
	if got := b.seqs("lobby"); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("after the reload bob shows seqs %v, want [1 2 3] exactly once each\n%s", got, b.diagnose())
	}
	var texts []string
	b.eval(`[...document.querySelectorAll('[data-testid=message][data-room="lobby"] [data-testid=message-text]')].map(e => e.textContent)`, &texts)
	if want := []string{"before the reload", "while you were away 1", "while you were away 2"}; !slices.Equal(texts, want) {
		t.Errorf("after the reload bob shows %q, want %q", texts, want)
	}

	s := b.snapshot()
	if len(s.Rooms) != 1 || s.Rooms[0].Key != "lobby" {
		t.Fatalf("after the reload bob's rooms are %+v, want just lobby", s.Rooms)
	}
	lj := s.Rooms[0].LastJoin
	if lj == nil || lj.Since == nil || *lj.Since != 1 || lj.Recovered == nil || !*lj.Recovered {
		t.Errorf("bob's page did not resume: last join %+v, want since=1 and recovered=true", lj)
	}
	b.waitJS("bob's member list shows alice again", presenceHas("alice"))
	b.waitJS("bob is still bob", `document.querySelector('[data-testid=me]').textContent === "bob"`)
}

// TestBrowserTypingIndicator: alice types, bob sees "alice is typing…",
// alice does not see herself, and the line clears a few seconds later.
func TestBrowserTypingIndicator(t *testing.T) {
	a, b := pair(t, "lobby")
	a.do("alice types", chromedp.SendKeys(chromedp.CSS(selComposer), "hel"))
	b.waitJS("bob sees alice typing",
		`document.querySelector('[data-testid=typing]').textContent.includes('alice is typing')`)
	var own string
	a.eval(`document.querySelector('[data-testid=typing]').textContent`, &own)
	if own != "" {
		t.Errorf("alice's typing line shows %q; a user must not see her own typing", own)
	}
	b.waitJS("bob's typing line clears once alice stops",
		`document.querySelector('[data-testid=typing]').textContent === ''`)
}

// TestBrowserSignInErrorShowsReason: a refused hello (close 4001) brings the
// server's reason to the sign-in card.
func TestBrowserSignInErrorShowsReason(t *testing.T) {
	srv := chatdtest.Start(t)
	br := startBrowser(t, "http://"+srv.Addr+"/")
	a := br.newTab("A")
	a.do("sign in with a bad token",
		chromedp.Click(chromedp.CSS(`[data-testid="tab-token"]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid="token"]`), "not-a-jwt"),
		chromedp.Click(chromedp.CSS(selConnect)),
	)
	a.waitJS("the sign-in card shows the server's reason",
		`(() => { const e = document.querySelector('[data-testid=signin-error]'); return !e.hidden && /token/i.test(e.textContent); })()`)
	var state string
	a.eval(`document.querySelector('[data-testid=conn-state]').dataset.state`, &state)
	if state != "offline" {
		t.Errorf("after a refused sign-in the connection state is %q, want offline", state)
	}
}

// TestBrowserSignInWithToken: on a server that only takes tokens
// (--jwt-secret-file, no anonymous access), two tabs each paste an HS256 token
// into the token field, are named by its sub (not as guests), and exchange
// messages.
func TestBrowserSignInWithToken(t *testing.T) {
	const secret = "browser-test-secret-0123456789abcdefghij"
	srv := chatdtest.StartWith(t, []string{"--node-name", "test-node", "--log-level", "error", "--jwt-secret-file", chatdtest.SecretFile(t, "jwt-secret", secret)})
	mint := func(sub string) string {
		now := time.Now()
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}).SignedString([]byte(secret))
		if err != nil {
			t.Fatalf("sign token: %v", err)
		}
		return tok
	}
	br := startBrowser(t, "http://"+srv.Addr+"/")
	a := br.newTab("A")
	b := br.newTab("B")
	// Subjects the guest-name form would refuse ('@'): the page shows what
	// the welcome says, which is the token's sub.
	const ada, grace = "ada@example.com", "grace@example.com"
	a.signInToken(mint(ada), ada)
	b.signInToken(mint(grace), grace)
	a.join("lobby")
	b.join("lobby")
	a.waitJS("ada's member list shows grace", presenceHas(grace))
	b.waitJS("grace's member list shows ada", presenceHas(ada))

	a.say("hello from ada")
	seq := a.waitMessage("lobby", ada, "hello from ada", "sent")
	if got := b.waitMessage("lobby", ada, "hello from ada", "sent"); got != seq || seq != 1 {
		t.Errorf("grace sees ada's message with seq %d, ada with %d; want 1", got, seq)
	}
	b.say("hello from grace")
	b.waitMessage("lobby", grace, "hello from grace", "sent")
	if got := a.waitMessage("lobby", grace, "hello from grace", "sent"); got != 2 {
		t.Errorf("ada sees grace's message with seq %d, want 2", got)
	}
}

// signInToken pastes token into the sign-in card's token field, connects,
// and waits until the page names the user sub, not as a guest.
func (tb *tab) signInToken(token, sub string) {
	tb.b.t.Helper()
	tb.do("open the token sign-in",
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="tab-token"]`)),
		chromedp.Click(chromedp.CSS(`[data-testid="tab-token"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="token"]`)),
		chromedp.Focus(chromedp.CSS(`[data-testid="token"]`)),
	)
	// A paste: the text arrives in one input event, not key by key.
	ctx, cancel := context.WithTimeout(tb.ctx, waitTimeout)
	_, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: token})
	cancel()
	if err != nil {
		tb.b.t.Fatalf("tab %s: paste the token: %v", tb.label, err)
	}
	var pasted string
	tb.eval(`document.querySelector('[data-testid="token"]').value`, &pasted)
	if pasted != token {
		tb.b.t.Fatalf("tab %s: the token field holds %q, want the pasted token", tb.label, pasted)
	}
	tb.do("connect with the token", chromedp.Click(chromedp.CSS(selConnect)))
	tb.waitOnline()
	tb.waitJS(sub+" is shown as the signed-in user",
		`document.querySelector('[data-testid=me]').textContent === `+js(sub))
	var guest bool
	tb.eval(`!document.getElementById('me-anon').hidden`, &guest)
	if guest {
		tb.b.t.Errorf("tab %s: %s signed in with a token is shown as a guest", tb.label, sub)
	}
}

// TestBrowserRoomsUnreadAndDirectMessages: unread badges count messages of
// rooms in the background, and clicking a member opens a direct message
// conversation that reaches the other user.
func TestBrowserRoomsUnreadAndDirectMessages(t *testing.T) {
	a, b := pair(t, "lobby")
	a.join("random")
	b.join("random")

	// alice looks at random while bob writes in lobby.
	b.open("lobby")
	b.say("anyone here?")
	b.waitMessage("lobby", "bob", "anyone here?", "sent")
	a.waitJS("lobby shows one unread message for alice",
		`document.querySelector('[data-testid=room-item][data-room="lobby"] [data-testid=unread]')?.textContent === '1'`)
	a.open("lobby")
	a.waitMessage("lobby", "bob", "anyone here?", "sent")
	a.waitJS("opening lobby clears its badge",
		`document.querySelector('[data-testid=room-item][data-room="lobby"] [data-testid=unread]') === null`)

	// alice opens a DM by clicking bob in the member list.
	a.do("alice clicks bob", chromedp.Click(chromedp.CSS(`[data-testid=presence] [data-user="bob"] button`)))
	a.waitJS("alice's DM with bob is open",
		`document.querySelector('[data-testid=room-item][data-room="@bob"].active') !== null`)
	a.say("psst, bob")
	a.waitMessage("@bob", "alice", "psst, bob", "sent")
	b.waitJS("bob gets a DM conversation with an unread badge",
		`document.querySelector('[data-testid=room-item][data-room="@alice"] [data-testid=unread]')?.textContent === '1'`)
	b.open("@alice")
	b.waitMessage("@alice", "alice", "psst, bob", "sent")
	b.say("hi alice")
	a.waitMessage("@bob", "bob", "hi alice", "sent")

	if path := os.Getenv("RINGCHAT_SCREENSHOT"); path != "" {
		screenshot(t, a, b, path)
	}
}

// screenshot fills lobby with a short conversation and saves alice's view.
func screenshot(t *testing.T, a, b *tab, path string) {
	t.Helper()
	a.open("lobby")
	b.open("lobby")
	lines := []struct {
		who  *tab
		from string
		text string
	}{
		{b, "bob", "Morning! Did the deploy go out?"},
		{a, "alice", "Yes — v1.4 is live on all nodes."},
		{a, "alice", "Resume after restart worked: clients rejoined with since=<seq> and nothing was lost."},
		{b, "bob", "Nice. I'll watch the dashboards: https://example.com/grafana/d/chat"},
		{b, "bob", "Lunch at noon? The usual place."},
	}
	for _, l := range lines {
		l.who.say(l.text)
		a.waitMessage("lobby", l.from, l.text, "sent")
	}
	b.do("bob types", chromedp.SendKeys(chromedp.CSS(selComposer), "sounds"))
	a.waitJS("alice sees bob typing", `document.querySelector('[data-testid=typing]').textContent.includes('bob is typing')`)
	a.do("alice drafts", chromedp.SendKeys(chromedp.CSS(selComposer), "Sure, see you there"))
	ctx, cancel := context.WithTimeout(a.ctx, waitTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("screenshot saved to %s", path)
}

// TestBrowserHistoryPaging: joining a room with a long history shows the
// last 50 messages; scrolling to the top loads the older ones, keeps the
// reader's place, and ends at the start of the room.
func TestBrowserHistoryPaging(t *testing.T) {
	srv := chatdtest.Start(t, "--rate", "1000", "--rate-burst", "1000")
	carol := chatdtest.Connect(t, srv.URL, "carol")
	carol.Join("big")
	const total = 70
	for i := 1; i <= total; i++ {
		carol.Say("big", "c"+strconv.Itoa(i), "message "+strconv.Itoa(i))
	}
	br := startBrowser(t, "http://"+srv.Addr+"/")
	a := br.newTab("A")
	a.signIn("alice")
	a.join("big")
	a.waitMessage("big", "carol", "message "+strconv.Itoa(total), "sent")
	if got, want := a.seqs("big"), seqRange(total-49, total); !slices.Equal(got, want) {
		t.Fatalf("after joining alice shows seqs %v, want the last 50: %v", got, want)
	}
	a.do("scroll to the top", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=messages]').scrollTop = 0`)(ctx, t)
		return err
	}))
	a.waitJS("the older messages are loaded", fmt.Sprintf(
		`document.querySelectorAll('[data-testid=message][data-room="big"]').length === %d`, total))
	if got, want := a.seqs("big"), seqRange(1, total); !slices.Equal(got, want) {
		t.Fatalf("after paging alice shows seqs %v, want %v", got, want)
	}
	var top float64
	a.eval(`document.querySelector('[data-testid=messages]').scrollTop`, &top)
	if top <= 0 {
		t.Errorf("after loading older messages the list is scrolled to %v; it should keep the reader's place", top)
	}
	a.waitJS("the start of the room is shown", `document.querySelector('.room-start') !== null`)
}

func seqRange(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestBrowserReconnectsAfterServerRestart: the server restarts (close 1012).
// The page shows that it is reconnecting, keeps a message typed meanwhile
// as pending, reconnects by itself, finds the room restarted in a new epoch
// (recovered=false), starts that room over, and delivers the pending message.
func TestBrowserReconnectsAfterServerRestart(t *testing.T) {
	first := chatdtest.Start(t)
	br := startBrowser(t, "http://"+first.Addr+"/")
	a := br.newTab("A")
	a.signIn("alice")
	a.join("lobby")
	a.say("before the restart")
	a.waitMessage("lobby", "alice", "before the restart", "sent")

	first.Stop()
	a.waitJS("the page shows it is reconnecting",
		`document.querySelector('[data-testid=conn-state]').dataset.state === 'reconnecting'`)
	a.say("typed while the server was down")
	a.waitMessage("lobby", "alice", "typed while the server was down", "pending")

	chatdtest.StartOn(t, first.Addr) // the same address, as a restart or a redeploy gives
	a.waitOnline()
	a.waitMessage("lobby", "alice", "typed while the server was down", "sent")
	if got := a.seqs("lobby"); !slices.Equal(got, []int{1}) {
		t.Errorf("after the restart alice shows seqs %v, want [1]: the room restarted in a new epoch", got)
	}
	s := a.snapshot()
	if len(s.Rooms) != 1 || s.Rooms[0].LastJoin == nil {
		t.Fatalf("after the restart alice's rooms are %+v", s.Rooms)
	}
	lj := s.Rooms[0].LastJoin
	if lj.Since == nil || *lj.Since != 1 || lj.Recovered == nil || *lj.Recovered {
		t.Errorf("rejoin after the restart: %+v, want since=1 and recovered=false", lj)
	}
}

// TestPageServed checks the page over plain HTTP: the HTML, its assets, and
// the security headers; and that the HTML keeps to the CSP (no inline script
// or style, nothing from another origin).
func TestPageServed(t *testing.T) {
	srv := chatdtest.Start(t)
	base := "http://" + srv.Addr
	get := func(path, wantType string) (string, http.Header) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: read: %v", path, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200", path, resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, wantType) {
			t.Errorf("GET %s: Content-Type %q, want %s", path, ct, wantType)
		}
		return string(body), resp.Header
	}

	html, hdr := get("/", "text/html")
	if !strings.Contains(html, "<title>ringchat</title>") {
		t.Errorf("GET /: no <title>ringchat</title> in the page")
	}
	csp := hdr.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q, want default-src 'self'", csp)
	}
	if got := hdr.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("GET /: X-Content-Type-Options %q, want nosniff", got)
	}
	for _, tag := range regexp.MustCompile(`(?i)<script\b[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, `src="app.js"`) {
			t.Errorf("GET /: script tag %s is inline or foreign; the CSP allows only same-origin files", tag)
		}
	}
	if regexp.MustCompile(`(?i)<style\b|\sstyle=|\son[a-z]+=|https?://`).MatchString(html) {
		t.Errorf("GET /: the page has inline styles, inline handlers or absolute URLs, which the CSP forbids")
	}
	for _, id := range []string{"name", "connect", "room-input", "join", "composer", "send", "messages", "conn-state", "presence", "typing"} {
		if !strings.Contains(html, `data-testid="`+id+`"`) {
			t.Errorf("GET /: no element with data-testid=%q", id)
		}
	}

	app, _ := get("/app.js", "text/javascript")
	if !strings.Contains(app, "'/ws'") {
		t.Errorf("GET /app.js: does not look like the chat client")
	}
	get("/style.css", "text/css")
	get("/favicon.svg", "image/svg+xml")
}

// storedServer starts chatd with its history on disk in dir and only
// historySize messages per room in memory, so that older pages are read
// from the store; flags are added.
func storedServer(t *testing.T, dir string, flags ...string) *chatdtest.Server {
	t.Helper()
	return chatdtest.Start(t, storedFlags(dir, flags...)...)
}

func storedFlags(dir string, flags ...string) []string {
	return append([]string{"--data-dir", dir, "--history-size", "20", "--storage-reserve-bytes", "0", "--rate", "1000", "--rate-burst", "1000"}, flags...)
}

// post sends n messages "<prefix> i" to room as user, each acknowledged
// before the next.
func post(t *testing.T, url, user, room, prefix string, n int) {
	t.Helper()
	c := chatdtest.Connect(t, url, user)
	c.Join(room)
	for i := 1; i <= n; i++ {
		c.Say(room, fmt.Sprintf("%s-%s-%d", user, prefix, i), fmt.Sprintf("%s %d", prefix, i))
	}
	c.Close()
}

// scrollBack scrolls the room's list to the top again and again, each time
// waiting for the page it asks for, until the page says it reached the
// beginning. Each page must keep the message that was at the top of the
// view where it was on screen. every runs after each page.
func (tb *tab) scrollBack(room string, every func()) {
	tb.b.t.Helper()
	for pages := 0; ; pages++ {
		var state struct {
			Start  bool    `json:"start"`
			Count  int     `json:"count"`
			Anchor string  `json:"anchor"`
			Y      float64 `json:"y"`
		}
		// One task: the scroll event (and the request it causes) comes
		// after the position is read.
		tb.eval(fmt.Sprintf(`(() => {
			const list = document.querySelector('[data-testid=messages]');
			const shown = () => list.querySelectorAll('[data-testid=message][data-room=%s]');
			if (document.querySelector('[data-testid=room-start]')) return {start: true, count: shown().length};
			list.scrollTop = 0;
			const first = shown()[0];
			return {start: false, count: shown().length, anchor: first.dataset.seq,
				y: first.getBoundingClientRect().top - list.getBoundingClientRect().top};
		})()`, js(room)), &state)
		if state.Start {
			return
		}
		if pages > 100 {
			tb.b.t.Fatalf("tab %s: still not at the beginning of %s after %d pages\n%s", tb.label, room, pages, tb.diagnose())
		}
		tb.waitJS("an older page of "+room+" is shown", fmt.Sprintf(`document.querySelector('[data-testid=room-start]') !== null ||
			document.querySelectorAll('[data-testid=message][data-room=%s]').length > %d`, js(room), state.Count))
		// The page has been rendered in the same task that added it.
		var moved float64
		tb.eval(fmt.Sprintf(`(() => {
			const list = document.querySelector('[data-testid=messages]');
			const el = list.querySelector('[data-testid=message][data-seq="%s"]');
			return el.getBoundingClientRect().top - list.getBoundingClientRect().top - %f;
		})()`, state.Anchor, state.Y), &moved)
		if moved < -1 || moved > 1 {
			tb.b.t.Errorf("tab %s: message %s moved by %.1fpx on screen when an older page came; the reader's place must be kept", tb.label, state.Anchor, moved)
		}
		if every != nil {
			every()
		}
	}
}

// shownTexts returns the text of every shown message of room, in page order.
func (tb *tab) shownTexts(room string) []string {
	tb.b.t.Helper()
	var out []string
	tb.eval(fmt.Sprintf(`[...document.querySelectorAll('[data-testid=message][data-room=%s] [data-testid=message-text]')].map(e => e.textContent)`, js(room)), &out)
	return out
}

// TestBrowserScrollsBackThroughStoredHistory: a room of 300 messages on a
// node keeping 20 per room in memory (the rest is read from its disk).
// Scrolling up again and again loads page after page, keeps the reader's
// place, and ends at the beginning: the page then holds messages 1..300
// once each, in order, plus the live messages that arrived meanwhile below
// them, and says it reached the beginning of the room.
func TestBrowserScrollsBackThroughStoredHistory(t *testing.T) {
	srv := storedServer(t, t.TempDir())
	const total = 300
	post(t, srv.URL, "carol", "archive", "message", total)

	br := startBrowser(t, "http://"+srv.Addr+"/")
	a := br.newTab("A")
	a.signIn("alice")
	a.join("archive")
	a.waitMessage("archive", "carol", fmt.Sprintf("message %d", total), "sent")

	// Live messages keep arriving at the bottom while alice reads back.
	dave := chatdtest.Connect(t, srv.URL, "dave")
	dave.Join("archive")
	live := 0
	a.scrollBack("archive", func() {
		live++
		dave.Say("archive", "live-"+strconv.Itoa(live), "live "+strconv.Itoa(live))
	})
	a.waitMessage("archive", "dave", "live "+strconv.Itoa(live), "sent")
	// The newest 50 came with the join; the rest takes at least 5 pages.
	if live < total/50-1 {
		t.Errorf("the beginning came after %d pages; %d messages in pages of 50 need at least %d", live, total, total/50-1)
	}

	if got, want := a.seqs("archive"), seqRange(1, total+live); !slices.Equal(got, want) {
		t.Fatalf("after scrolling back alice shows seqs %v, want 1..%d once each in order\n%s", got, total+live, a.diagnose())
	}
	want := make([]string, 0, total+live)
	for i := 1; i <= total; i++ {
		want = append(want, fmt.Sprintf("message %d", i))
	}
	for i := 1; i <= live; i++ {
		want = append(want, fmt.Sprintf("live %d", i))
	}
	if got := a.shownTexts("archive"); !slices.Equal(got, want) {
		t.Errorf("after scrolling back alice shows texts %q, want %q", got, want)
	}
	var start string
	a.eval(`document.querySelector('[data-testid=room-start]').textContent`, &start)
	if !strings.Contains(start, "beginning of the room") {
		t.Errorf("the top of the room says %q, want it to say it is the beginning of the room", start)
	}
	s := a.snapshot()
	if len(s.Rooms) != 1 || !s.Rooms[0].ReachedStart {
		t.Errorf("the page's state does not record the beginning: %+v", s.Rooms)
	}
}

// TestBrowserStoredHistorySurvivesRestart: chatd stops and starts again on
// the same data dir; the reloaded page finds the room in the same epoch,
// resumes it, and scrolls back through the whole conversation again.
func TestBrowserStoredHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	first := storedServer(t, dir)
	const total = 120
	post(t, first.URL, "carol", "archive", "message", total)

	br := startBrowser(t, "http://"+first.Addr+"/")
	a := br.newTab("A")
	a.signIn("alice")
	a.join("archive")
	a.waitMessage("archive", "carol", fmt.Sprintf("message %d", total), "sent")
	before := a.snapshot()

	first.Stop()
	a.waitJS("the page shows it is reconnecting",
		`document.querySelector('[data-testid=conn-state]').dataset.state === 'reconnecting'`)
	second := chatdtest.StartOn(t, first.Addr, storedFlags(dir)...)
	post(t, second.URL, "carol", "archive", "after restart", 1)

	a.do("reload alice's page", chromedp.Reload())
	a.waitJS("the page script has started again", `!!window.ringchat`)
	a.waitOnline()
	a.waitMessage("archive", "carol", "after restart 1", "sent")
	after := a.snapshot()
	if len(after.Rooms) != 1 || after.Rooms[0].Epoch != before.Rooms[0].Epoch {
		t.Fatalf("after the restart the room is %+v, want the epoch it had: %q", after.Rooms, before.Rooms[0].Epoch)
	}
	if lj := after.Rooms[0].LastJoin; lj == nil || lj.Recovered == nil || !*lj.Recovered {
		t.Errorf("the reloaded page did not resume the room: last join %+v", lj)
	}
	a.scrollBack("archive", nil)
	if got, want := a.seqs("archive"), seqRange(1, total+1); !slices.Equal(got, want) {
		t.Fatalf("after the restart alice shows seqs %v, want 1..%d\n%s", got, total+1, a.diagnose())
	}
}

// TestBrowserOlderPagesRetryAfterErrors: the page's older-page requests
// are refused on the way (a proxy answers them as chatd does when a room's
// owner is unreachable or its disk fails). A transient refusal
// (unavailable, storage_failed) is retried by itself after a backoff, with
// a note saying so; a refusal that will not go away by itself (forbidden)
// is shown with a "Try again" button and not retried until it is pressed.
// The reader still ends with every message once, in order, and no page
// reached chatd twice.
func TestBrowserOlderPagesRetryAfterErrors(t *testing.T) {
	srv := storedServer(t, t.TempDir())
	const total = 200
	post(t, srv.URL, "carol", "archive", "message", total)
	proxy := chatdtest.StartFaultProxy(t, srv.Addr)
	older := func(f protocol.ClientFrame) bool { return f.Type == protocol.TypeHistory && f.Before > 0 }

	br := startBrowser(t, "http://"+proxy.Addr+"/")
	a := br.newTab("A")
	a.signIn("alice")
	a.join("archive")
	a.waitMessage("archive", "carol", fmt.Sprintf("message %d", total), "sent")
	// Notes come and go between polls: remember every one shown.
	var ok bool
	a.eval(`(() => {
		window.seenNotes = [];
		new MutationObserver(() => {
			for (const n of document.querySelectorAll('[data-testid=load-older][data-state=retrying], [data-testid=history-error]')) window.seenNotes.push(n.textContent);
		}).observe(document.querySelector('[data-testid=messages]'), {childList: true, subtree: true});
		return true;
	})()`, &ok)

	scrollTop := func() {
		a.do("scroll to the top", chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=messages]').scrollTop = 0`)(ctx, t)
			return err
		}))
	}
	firstShown := func() int { return a.seqs("archive")[0] }

	// Transient refusals: retried with backoff until the page comes.
	proxy.Refuse(older, protocol.CodeUnavailable, protocol.CodeStorageFailed)
	oldest := firstShown()
	scrollTop()
	a.waitJS("the older page arrives after two refusals", fmt.Sprintf(
		`document.querySelector('[data-testid=message][data-room="archive"]').dataset.seq < %d`, oldest))
	if got := attemptsFor(proxy.Seen(), uint64(oldest)); !slices.Equal(got, []string{"unavailable", "storage_failed", ""}) {
		t.Errorf("requests for the page before %d: %q, want two refused then one to chatd", oldest, got)
	}
	var notes []string
	a.eval(`window.seenNotes`, &notes)
	if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "unavailable") && strings.Contains(n, "Retrying") }) ||
		!slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "storage") && strings.Contains(n, "Retrying") }) {
		t.Errorf("the page did not say it was retrying after each refusal; notes shown: %q", notes)
	}

	// A lasting refusal: shown, and asked again only when the reader says so.
	proxy.Refuse(older, protocol.CodeForbidden)
	oldest = firstShown()
	scrollTop()
	a.waitJS("the refusal is shown with a Try again button",
		`document.querySelector('[data-testid=history-error] [data-testid=history-retry]') !== null`)
	if got := attemptsFor(proxy.Seen(), uint64(oldest)); !slices.Equal(got, []string{"forbidden"}) {
		t.Errorf("requests for the page before %d once refused: %q, want only the refused one", oldest, got)
	}
	a.do("try again", chromedp.Click(chromedp.CSS(`[data-testid=history-retry]`)))
	a.waitJS("the older page arrives after trying again", fmt.Sprintf(
		`document.querySelector('[data-testid=message][data-room="archive"]').dataset.seq < %d`, oldest))
	if got := attemptsFor(proxy.Seen(), uint64(oldest)); !slices.Equal(got, []string{"forbidden", ""}) {
		t.Errorf("requests for the page before %d: %q, want the refused one, then one to chatd", oldest, got)
	}

	a.scrollBack("archive", nil)
	if got, want := a.seqs("archive"), seqRange(1, total); !slices.Equal(got, want) {
		t.Fatalf("after scrolling back alice shows seqs %v, want 1..%d once each in order\n%s", got, total, a.diagnose())
	}
	sent := map[uint64]int{}
	for _, r := range proxy.Seen() {
		if r.Frame.Type == protocol.TypeHistory && r.Refused == "" {
			sent[r.Frame.Before]++
		}
	}
	for before, n := range sent {
		if n > 1 {
			t.Errorf("the page before %d was asked of chatd %d times, want once", before, n)
		}
	}
}

// attemptsFor lists how each history request for the page below before was
// answered: a refusal's code, or "" for chatd.
func attemptsFor(seen []chatdtest.Intercepted, before uint64) []string {
	var out []string
	for _, r := range seen {
		if r.Frame.Type == protocol.TypeHistory && r.Frame.Before == before {
			out = append(out, r.Refused)
		}
	}
	return out
}
