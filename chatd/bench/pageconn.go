package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// pageReq is a history request waiting for its page.
type pageReq struct {
	room   string
	idx    int
	before uint64
	sentNs int64
	cold   bool
}

// pageConn is one reading connection of History: requests are written by
// the scheduler, pages are matched to them by id in the reader goroutine.
type pageConn struct {
	ws *websocket.Conn
	h  *historyRun

	wmu    sync.Mutex
	wbuf   []byte
	nextID uint64 // under wmu

	mu      sync.Mutex
	pending map[string]pageReq

	outstanding atomic.Int64
	rbuf        []byte
	closeCode   atomic.Int64
	closed      atomic.Bool
	dead        chan struct{}
}

func newPageConn(ws *websocket.Conn, h *historyRun) *pageConn {
	c := &pageConn{ws: ws, h: h, pending: map[string]pageReq{}, dead: make(chan struct{})}
	_ = ws.SetReadDeadline(time.Time{})
	go c.readLoop()
	return c
}

// request writes a history request.
func (c *pageConn) request(room string, idx int, before uint64, limit int, cold bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return errConnClosed
	}
	c.nextID++
	id := "h" + strconv.FormatUint(c.nextID, 10)
	b := append(c.wbuf[:0], `{"type":"history","id":"`...)
	b = append(b, id...)
	b = append(b, `","room":"`...)
	b = append(b, room...)
	b = append(b, '"')
	if before > 0 {
		b = append(b, `,"before":`...)
		b = strconv.AppendUint(b, before, 10)
	}
	b = append(b, `,"limit":`...)
	b = strconv.AppendInt(b, int64(limit), 10)
	b = append(b, '}')
	c.wbuf = b
	c.mu.Lock()
	c.pending[id] = pageReq{room: room, idx: idx, before: before, sentNs: time.Now().UnixNano(), cold: cold}
	c.mu.Unlock()
	c.outstanding.Add(1)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.take(id)
		return fmt.Errorf("history request: %w", err)
	}
	return nil
}

func (c *pageConn) take(id string) (pageReq, bool) {
	c.mu.Lock()
	r, ok := c.pending[id]
	if ok {
		delete(c.pending, id)
	}
	c.mu.Unlock()
	if ok {
		c.outstanding.Add(-1)
	}
	return r, ok
}

func (c *pageConn) close() {
	if c.closed.Swap(true) {
		<-c.dead
		return
	}
	c.wmu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	_ = c.ws.Close()
	<-c.dead
}

var prefixHistory = []byte(`{"type":"history"`)

func (c *pageConn) readLoop() {
	defer close(c.dead)
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			if !c.closed.Load() {
				if code, _, ok := client.CloseCode(err); ok {
					c.closeCode.Store(int64(code))
				} else {
					c.closeCode.Store(-1)
				}
			}
			return
		}
		n, err := readAll(r, &c.rbuf)
		if err != nil {
			if !c.closed.Load() {
				c.closeCode.Store(-1)
			}
			return
		}
		now := time.Now().UnixNano()
		data := c.rbuf[:n]
		for len(data) > 0 {
			var line []byte
			if i := bytes.IndexByte(data, '\n'); i >= 0 {
				line, data = data[:i], data[i+1:]
			} else {
				line, data = data, nil
			}
			c.onFrame(line, now)
		}
	}
}

func (c *pageConn) onFrame(line []byte, now int64) {
	switch {
	case bytes.HasPrefix(line, prefixHistory):
		var p protocol.HistoryPage
		if err := json.Unmarshal(line, &p); err != nil {
			c.h.run.badFrames.Add(1)
			c.h.bad.Add(1)
			c.h.problem("undecodable page: %v", err)
			return
		}
		req, ok := c.take(p.ID)
		if !ok {
			c.h.bad.Add(1)
			c.h.problem("page with unknown id %q", p.ID)
			return
		}
		c.h.answer(req, &p, now, nil)
	case bytes.HasPrefix(line, prefixError):
		var e protocol.Error
		if err := json.Unmarshal(line, &e); err != nil {
			c.h.run.badFrames.Add(1)
			return
		}
		req, ok := c.take(e.ID)
		if !ok {
			c.h.run.countError(e.Code)
			c.h.problem("error frame for no request: %s: %s", e.Code, e.Message)
			return
		}
		c.h.answer(req, nil, now, &e)
	}
}
