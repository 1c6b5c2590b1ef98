package chatdtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// FaultProxy stands between clients and a real chatd node: it relays
// WebSocket connections at /ws frame by frame, and every other HTTP request
// (the page and its files) as it is. On the way it can answer chosen client
// frames itself with an error frame of a given code, as the node does when
// a room's owner is unreachable (unavailable) or its disk fails, and cut
// connections, as a network failure does. The frames that reach the node
// are the clients' own, so what the node answers is real.
type FaultProxy struct {
	// Addr is the proxy's host:port; URL its WebSocket endpoint.
	Addr string
	URL  string

	target string
	srv    *httptest.Server
	pumps  sync.WaitGroup

	mu     sync.Mutex
	refuse []refusal
	cut    func(protocol.ClientFrame) bool
	seen   []Intercepted
	conns  []*websocket.Conn
	closed bool
}

// Intercepted is a client frame the proxy saw, and the code it answered
// it with ("" when it went to the node), or whether it cut the connection
// instead.
type Intercepted struct {
	Frame   protocol.ClientFrame
	Refused string
	Cut     bool
}

type refusal struct {
	match func(protocol.ClientFrame) bool
	code  string
}

// StartFaultProxy relays to the node at addr (host:port) until the test
// ends.
func StartFaultProxy(t testing.TB, addr string) *FaultProxy {
	t.Helper()
	p := &FaultProxy{target: addr}
	files := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			p.relay(t, w, r)
			return
		}
		files.ServeHTTP(w, r)
	}))
	p.Addr = p.srv.Listener.Addr().String()
	p.URL = "ws://" + p.Addr + "/ws"
	t.Cleanup(func() {
		p.mu.Lock()
		p.closed = true
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.srv.Close()
		p.pumps.Wait()
	})
	return p
}

// Refuse answers the next client frames for which match is true, one per
// code, in order, with error frames of those codes (carrying the frame's id
// and room) instead of passing them on.
func (p *FaultProxy) Refuse(match func(protocol.ClientFrame) bool, codes ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range codes {
		p.refuse = append(p.refuse, refusal{match: match, code: c})
	}
}

// CutOn drops the connection (without a close frame, both ways) that
// sends the next client frame for which match is true, instead of passing
// that frame on; once.
func (p *FaultProxy) CutOn(match func(protocol.ClientFrame) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = match
}

// Seen returns the client frames seen so far, in order.
func (p *FaultProxy) Seen() []Intercepted {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Intercepted(nil), p.seen...)
}

var proxyUpgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// relay connects one client connection to the node and pumps frames until
// either side ends.
func (p *FaultProxy) relay(t testing.TB, w http.ResponseWriter, r *http.Request) {
	down, err := proxyUpgrader.Upgrade(w, r, nil)
	if err != nil {
		t.Errorf("fault proxy: upgrade the client's connection: %v", err)
		return
	}
	up, _, err := websocket.DefaultDialer.Dial("ws://"+p.target+"/ws", nil)
	if err != nil {
		down.Close()
		t.Errorf("fault proxy: dial %s: %v", p.target, err)
		return
	}
	p.mu.Lock()
	closed := p.closed
	p.conns = append(p.conns, down, up)
	p.mu.Unlock()
	if closed { // the test is over
		down.Close()
		up.Close()
		return
	}
	var downWrite sync.Mutex // both pumps write to the client
	drop := func() {
		down.Close()
		up.Close()
	}
	p.pumps.Add(2)
	go func() { // node → client
		defer p.pumps.Done()
		defer drop()
		for {
			mt, data, err := up.ReadMessage()
			if err != nil {
				return
			}
			downWrite.Lock()
			err = down.WriteMessage(mt, data)
			downWrite.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { // client → node
		defer p.pumps.Done()
		defer drop()
		for {
			mt, data, err := down.ReadMessage()
			if err != nil {
				return
			}
			reply, cut := p.intercept(data)
			if cut {
				return
			}
			if reply != nil {
				downWrite.Lock()
				err = down.WriteMessage(websocket.TextMessage, reply)
				downWrite.Unlock()
			} else {
				err = up.WriteMessage(mt, data)
			}
			if err != nil {
				return
			}
		}
	}()
}

// intercept records a client frame and returns the error frame to answer
// it with, or nil to pass it on, or cut to drop the connection.
func (p *FaultProxy) intercept(data []byte) (reply []byte, cut bool) {
	var f protocol.ClientFrame
	if json.Unmarshal(data, &f) != nil {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	in := Intercepted{Frame: f}
	if p.cut != nil && p.cut(f) {
		p.cut = nil
		in.Cut = true
		p.seen = append(p.seen, in)
		return nil, true
	}
	for i, r := range p.refuse {
		if r.match(f) {
			in.Refused = r.code
			p.refuse = append(p.refuse[:i], p.refuse[i+1:]...)
			break
		}
	}
	p.seen = append(p.seen, in)
	if in.Refused == "" {
		return nil, false
	}
	e := protocol.NewError(in.Refused, f.ID, "refused by the test's fault proxy")
	e.Room = f.Room
	return protocol.Encode(e), false
}
