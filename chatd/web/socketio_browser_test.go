package web_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// socketIOClientJS finds socket.io-client's browser bundle where
// hack/ensure-node.sh installs the pinned packages.
func socketIOClientJS(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("RINGCHAT_NODE_MODULES")
	if dir == "" {
		lock, err := os.ReadFile("../socketio/testdata/node/package-lock.json")
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(lock)
		cache := os.Getenv("RINGCHAT_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "ringchat")
		}
		dir = filepath.Join(cache, "node", hex.EncodeToString(sum[:])[:16], "node_modules")
	}
	path := filepath.Join(dir, "socket.io-client", "dist", "socket.io.min.js")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("socket.io-client's bundle is missing (%v): run hack/ensure-node.sh", err)
	}
	return path
}

// sioSnapshot is the example page's state (window.sioExample.snapshot()).
type sioSnapshot struct {
	Connected bool   `json:"connected"`
	Recovered bool   `json:"recovered"`
	Transport string `json:"transport"`
	Room      string `json:"room"`
	Messages  []struct {
		Seq  int    `json:"seq"`
		From string `json:"from"`
		Text string `json:"text"`
	} `json:"messages"`
}

// openExample opens the Socket.IO example page in a new tab and signs in.
func (b *browser) openExample(label, name, transport string) *tab {
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
	tb.do("open the example", chromedp.Navigate(b.url))
	tb.waitJS("the example script has started", `!!window.sioExample && typeof io === "function"`)
	tb.setValue(`[data-testid=name]`, name)
	tb.setValue(`[data-testid=transport]`, transport)
	tb.do("sign in", chromedp.Click(chromedp.CSS(`[data-testid=connect]`)))
	tb.waitJS("connected", `window.sioExample.snapshot().connected`)
	return tb
}

// setValue sets a form field's value (chromedp.SetValue cannot set "").
func (tb *tab) setValue(sel, v string) {
	tb.b.t.Helper()
	var ok bool
	tb.eval(`(() => { const e = document.querySelector(`+js(sel)+`); if (!e) return false; e.value = `+js(v)+`; return true; })()`, &ok)
	if !ok {
		tb.b.t.Fatalf("tab %s: no element %s", tb.label, sel)
	}
}

func (tb *tab) sioSnapshot() sioSnapshot {
	var s sioSnapshot
	tb.eval(`window.sioExample.snapshot()`, &s)
	return s
}

func (tb *tab) sioJoin(room string) {
	tb.setValue(`[data-testid=room-input]`, room)
	tb.do("join "+room, chromedp.Click(chromedp.CSS(`[data-testid=join]`)))
	tb.waitJS("joined "+room, `window.sioExample.snapshot().room === `+js(room))
}

func (tb *tab) sioSay(text string) {
	tb.setValue(`[data-testid=text]`, text)
	tb.do("say "+text, chromedp.Click(chromedp.CSS(`[data-testid=send]`)))
}

func (tb *tab) sioWaitMessage(from, text string) {
	tb.waitJS(from+" says "+text, `window.sioExample.snapshot().messages.some(m => m.seq > 0 && m.from === `+js(from)+` && m.text === `+js(text)+`)`)
}

// TestSocketIOExamplePage: the example page written for socket.io-client,
// served by chatd with the client bundle, in two Chromium tabs (one
// upgrading from polling to WebSocket, one on long-polling only): they
// chat, see each other typing, and after a server restart reconnect, join
// again and chat on.
func TestSocketIOExamplePage(t *testing.T) {
	clientJS := socketIOClientJS(t)
	first := chatdtest.Start(t, "--socketio-client-js", clientJS)
	br := startBrowser(t, "http://"+first.Addr+"/socketio/")
	ann := br.openExample("ann", "ann", "default")
	bob := br.openExample("bob", "bob", "polling")
	ann.waitJS("ann upgraded to websocket", `window.sioExample.snapshot().transport === "websocket"`)
	ann.sioJoin("lobby")
	bob.sioJoin("lobby")
	ann.sioSay("hello bob")
	bob.sioWaitMessage("ann", "hello bob")
	bob.sioSay("hi ann")
	ann.sioWaitMessage("bob", "hi ann")
	if s := bob.sioSnapshot(); s.Transport != "polling" {
		t.Errorf("bob's transport is %q, want polling", s.Transport)
	}

	bob.do("type", chromedp.SendKeys(chromedp.CSS(`[data-testid=text]`), "typing"))
	ann.waitJS("ann sees bob typing", `document.querySelector('[data-testid=typing]').textContent.includes("bob is typing")`)
	bob.setValue(`[data-testid=text]`, "")

	first.Stop()
	ann.waitJS("ann's page shows it is reconnecting", `document.querySelector('[data-testid=conn-state]').dataset.state === 'reconnecting'`)
	chatdtest.StartOn(t, first.Addr, "--socketio-client-js", clientJS)
	ann.waitJS("ann reconnected", `window.sioExample.snapshot().connected`)
	bob.waitJS("bob reconnected", `window.sioExample.snapshot().connected`)
	// The restarted node kept no history: no recovery, the pages joined again.
	if s := ann.sioSnapshot(); s.Recovered {
		t.Errorf("ann recovered across a restart of a memory-only node: %+v", s)
	}
	ann.sioSay("after the restart")
	bob.sioWaitMessage("ann", "after the restart")
	var seqs []int
	for _, m := range bob.sioSnapshot().Messages {
		if m.Text == "after the restart" {
			seqs = append(seqs, m.Seq)
		}
	}
	if !slices.Equal(seqs, []int{1}) {
		t.Errorf("the first message after the restart has seqs %v, want [1] (a new epoch)", seqs)
	}
}

// TestSocketIOExampleServed: the example page keeps to the CSP (scripts
// from this origin only, nothing inline), and the client bundle is served
// only when configured.
func TestSocketIOExampleServed(t *testing.T) {
	srv := chatdtest.Start(t)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, html := get("/socketio/")
	if code != http.StatusOK || !strings.Contains(html, "Socket.IO example") {
		t.Fatalf("GET /socketio/: %d", code)
	}
	for _, tag := range regexp.MustCompile(`(?i)<script\b[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(tag, `src="/socket.io/socket.io.min.js"`) && !strings.Contains(tag, `src="example.js"`) {
			t.Errorf("script tag %s is inline or foreign", tag)
		}
	}
	if regexp.MustCompile(`(?i)<style\b|\sstyle=|\son[a-z]+=|https?://`).MatchString(html) {
		t.Errorf("the example has inline styles, handlers or absolute URLs, which the CSP forbids")
	}
	if code, body := get("/socket.io/socket.io.min.js"); code != http.StatusNotFound || !strings.Contains(body, "--socketio-client-js") {
		t.Errorf("client bundle without --socketio-client-js: %d %q", code, body)
	}
}
