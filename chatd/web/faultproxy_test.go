package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// faultProxy stands between the page and a real chatd: it serves the page
// from chatd and relays the page's WebSocket frames both ways, except that
// it can answer the page's next history requests for older pages (those
// with a "before") itself, with an error frame of a given code, as a node
// whose room owner is unreachable or whose disk fails would. It records
// every history request it sees.
type faultProxy struct {
	URL string // the page's address: http://host:port/

	target string // chatd's host:port
	srv    *httptest.Server
	conns  sync.WaitGroup

	mu      sync.Mutex
	inject  []string         // codes for the next older-page requests, in order
	history []historyRequest // every history request, in order
	open    []*websocket.Conn
}

// historyRequest is one history frame the page sent, and the code the
// proxy answered it with ("" when it went to chatd).
type historyRequest struct {
	Before   uint64
	Injected string
}

func startFaultProxy(t *testing.T, chatdAddr string) *faultProxy {
	t.Helper()
	p := &faultProxy{target: chatdAddr}
	backend := &url.URL{Scheme: "http", Host: chatdAddr}
	files := httputil.NewSingleHostReverseProxy(backend)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			p.relay(t, w, r)
			return
		}
		files.ServeHTTP(w, r)
	}))
	p.URL = p.srv.URL + "/"
	t.Cleanup(func() {
		p.mu.Lock()
		for _, c := range p.open {
			c.Close()
		}
		p.mu.Unlock()
		p.srv.Close()
		p.conns.Wait()
	})
	return p
}

// injectOlder makes the proxy answer the next len(codes) older-page
// requests with error frames of these codes.
func (p *faultProxy) injectOlder(codes ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inject = append(p.inject, codes...)
}

// requests returns the history requests seen so far.
func (p *faultProxy) requests() []historyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]historyRequest(nil), p.history...)
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// relay connects one page connection to chatd and pumps frames until
// either side ends.
func (p *faultProxy) relay(t *testing.T, w http.ResponseWriter, r *http.Request) {
	page, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		t.Errorf("fault proxy: upgrade the page's connection: %v", err)
		return
	}
	server, _, err := websocket.DefaultDialer.Dial("ws://"+p.target+"/ws", nil)
	if err != nil {
		page.Close()
		t.Errorf("fault proxy: dial chatd: %v", err)
		return
	}
	p.mu.Lock()
	p.open = append(p.open, page, server)
	p.mu.Unlock()
	var pageWrite sync.Mutex // both pumps write to the page
	p.conns.Add(2)
	go func() { // chatd → page
		defer p.conns.Done()
		defer page.Close()
		for {
			mt, data, err := server.ReadMessage()
			if err != nil {
				return
			}
			pageWrite.Lock()
			err = page.WriteMessage(mt, data)
			pageWrite.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { // page → chatd
		defer p.conns.Done()
		defer server.Close()
		for {
			mt, data, err := page.ReadMessage()
			if err != nil {
				return
			}
			if reply := p.intercept(data); reply != nil {
				pageWrite.Lock()
				err = page.WriteMessage(websocket.TextMessage, reply)
				pageWrite.Unlock()
			} else {
				err = server.WriteMessage(mt, data)
			}
			if err != nil {
				return
			}
		}
	}()
}

// intercept records a history request and returns the error frame to
// answer it with, or nil to pass it on.
func (p *faultProxy) intercept(data []byte) []byte {
	var f struct {
		Type   string `json:"type"`
		ID     string `json:"id"`
		Room   string `json:"room"`
		Before uint64 `json:"before"`
	}
	if json.Unmarshal(data, &f) != nil || f.Type != "history" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	req := historyRequest{Before: f.Before}
	if f.Before > 0 && len(p.inject) > 0 {
		req.Injected, p.inject = p.inject[0], p.inject[1:]
	}
	p.history = append(p.history, req)
	if req.Injected == "" {
		return nil
	}
	reply, _ := json.Marshal(map[string]string{"type": "error", "id": f.ID, "code": req.Injected,
		"message": "injected by the test's proxy", "room": f.Room})
	return reply
}
