package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// fillRoom is one room of a fill and what its writer saw of it. The
// reader goroutine writes it under its connection's mu; the writer reads it
// under mu, or after the reader has exited.
type fillRoom struct {
	name   string
	head   uint64 // at the join
	joined bool
	failed string // why the room was not filled, when it was not

	acks     seqTracker // sequence numbers of the acks
	echo     seqTracker // sequence numbers of the messages read back
	acked    uint64
	dupAcks  uint64
	refused  uint64
	received uint64
}

// controlFrame is an answer the writer waits for: joined, left, or an
// error frame carrying a request id.
type controlFrame struct {
	typ  string
	id   string
	head uint64
	err  string
}

// fillConn is one writing connection of a fill: a writer (the worker's
// goroutine) that joins a batch of rooms, pipelines sends into them under
// a window and leaves them, and a reader goroutine that accounts for every
// answer.
type fillConn struct {
	ws  *websocket.Conn
	f   *filler
	rng *rand.Rand

	wbuf  []byte
	sentN uint64 // cid counter (writer only)

	// window holds one token per send in flight; the reader takes one
	// back per answer.
	window  chan struct{}
	control chan controlFrame
	pending pendingSends

	mu    sync.Mutex
	rooms map[string]*fillRoom // the current batch (under mu)

	// Reader state.
	rbuf       []byte
	ackSamples []latencySample
	ackShard   *latencyShard
	foreign    uint64 // frames for rooms not in the batch (under mu)

	unmatched atomic.Uint64
	closeCode atomic.Int64
	closed    atomic.Bool
	dead      chan struct{} // closed when the reader exits
}

func newFillConn(ws *websocket.Conn, f *filler, seed uint64) *fillConn {
	c := &fillConn{
		ws: ws, f: f,
		rng:      rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano()))),
		window:   make(chan struct{}, f.cfg.Window),
		control:  make(chan controlFrame, 2*f.cfg.Batch+16),
		ackShard: f.run.ackLat.shard(int(seed)),
		dead:     make(chan struct{}),
	}
	_ = ws.SetReadDeadline(time.Time{})
	go c.readLoop()
	return c
}

// close sends a normal close and drops the socket; the reader then exits.
func (c *fillConn) close() {
	if c.closed.Swap(true) {
		return
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.ws.Close()
	<-c.dead
}

// errConnLost is returned when the reader stopped while the writer waited.
var errConnLost = errors.New("connection lost")

// fillBatch joins the batch's rooms, writes MessagesPerRoom messages into
// each (round robin over the rooms, at most Window in flight), waits for
// every answer and leaves. An error means the connection is unusable; the
// rooms' state says what was done.
func (c *fillConn) fillBatch(ctx context.Context, batch []*fillRoom) error {
	rooms := make(map[string]*fillRoom, len(batch))
	for _, rm := range batch {
		rooms[rm.name] = rm
	}
	c.mu.Lock()
	c.rooms = rooms
	c.mu.Unlock()
	fail := func(err error) error {
		c.mu.Lock()
		for _, rm := range batch {
			if rm.failed == "" && (!rm.joined || rm.acked < uint64(c.f.cfg.MessagesPerRoom)) {
				rm.failed = err.Error()
			}
		}
		c.mu.Unlock()
		return err
	}
	timeout := c.f.run.opts.DialTimeout

	for i, rm := range batch {
		if err := c.writeFrame(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j" + strconv.Itoa(i), Room: rm.name}); err != nil {
			return fail(err)
		}
	}
	if err := c.await(ctx, len(batch), timeout, func(cf controlFrame) {
		i, ok := batchIndex(cf.id, "j", len(batch))
		if !ok {
			return
		}
		rm := batch[i]
		c.mu.Lock()
		defer c.mu.Unlock()
		if cf.typ == protocol.TypeJoined {
			rm.joined, rm.head = true, cf.head
			rm.acks.last, rm.echo.last = cf.head, cf.head
		} else {
			rm.failed = "join refused: " + cf.err
		}
	}); err != nil {
		return fail(fmt.Errorf("joins: %w", err))
	}

	var joined []*fillRoom
	for _, rm := range batch {
		if rm.joined {
			joined = append(joined, rm)
		}
	}
	for range c.f.cfg.MessagesPerRoom {
		for _, rm := range joined {
			if err := c.acquire(ctx); err != nil {
				return fail(fmt.Errorf("waiting for acks: %w", err))
			}
			if err := c.send(rm.name); err != nil {
				return fail(err)
			}
		}
	}
	// Every answer is in when the whole window is free again.
	for range cap(c.window) {
		if err := c.acquire(ctx); err != nil {
			return fail(fmt.Errorf("waiting for the last acks: %w", err))
		}
	}
	for range cap(c.window) {
		<-c.window
	}

	for i, rm := range joined {
		if err := c.writeFrame(protocol.ClientFrame{Type: protocol.TypeLeave, ID: "l" + strconv.Itoa(i), Room: rm.name}); err != nil {
			return fail(err)
		}
	}
	if err := c.await(ctx, len(joined), timeout, func(controlFrame) {}); err != nil {
		return fail(fmt.Errorf("leaves: %w", err))
	}
	c.mu.Lock()
	c.rooms = nil
	c.mu.Unlock()
	return nil
}

// batchIndex parses a request id "<prefix><i>" with i < n.
func batchIndex(id, prefix string, n int) (int, bool) {
	s, ok := strings.CutPrefix(id, prefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0 && i < n
}

// await takes n control frames, giving each to handle; an answer that does
// not come within timeout of the previous one fails.
func (c *fillConn) await(ctx context.Context, n int, timeout time.Duration, handle func(controlFrame)) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for range n {
		select {
		case cf := <-c.control:
			handle(cf)
			t.Reset(timeout)
		case <-t.C:
			return fmt.Errorf("no answer within %v", timeout)
		case <-c.dead:
			return errConnLost
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// acquire takes a window token, waiting at most Drain for an answer to
// free one.
func (c *fillConn) acquire(ctx context.Context) error {
	select {
	case c.window <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(c.f.run.opts.Drain)
	defer t.Stop()
	select {
	case c.window <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("no ack within --drain %v", c.f.run.opts.Drain)
	case <-c.dead:
		return errConnLost
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release gives a window token back for an answered send.
func (c *fillConn) release() bool {
	select {
	case <-c.window:
		return true
	default:
		return false
	}
}

func (c *fillConn) writeFrame(f protocol.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode %s: %w", f.Type, err)
	}
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("send %s: %w", f.Type, err)
	}
	return nil
}

// send writes one message with a random text into room.
func (c *fillConn) send(room string) error {
	c.sentN++
	b := append(c.wbuf[:0], `{"type":"send","room":"`...)
	b = append(b, room...)
	b = append(b, `","cid":"f.`...)
	b = strconv.AppendUint(b, c.sentN, 10)
	b = append(b, `","text":"`...)
	b = fillText(b, c.rng, c.f.run.opts.TextSize)
	b = append(b, `"}`...)
	c.wbuf = b
	c.pending.add(c.sentN, time.Now().UnixNano(), 1)
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		c.pending.take(c.sentN)
		c.release()
		return fmt.Errorf("send: %w", err)
	}
	c.f.run.published.Add(1)
	return nil
}

func (c *fillConn) readLoop() {
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
		c.process(c.rbuf[:n])
	}
}

var (
	prefixJoined = []byte(`{"type":"joined"`)
	prefixLeft   = []byte(`{"type":"left"`)
)

// process handles one WebSocket message of newline-separated frames.
func (c *fillConn) process(data []byte) {
	now := time.Now().UnixNano()
	c.mu.Lock()
	for len(data) > 0 {
		var line []byte
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			line, data = data, nil
		}
		switch {
		case len(line) == 0:
		case bytes.HasPrefix(line, prefixMessage):
			c.onMessage(line)
		case bytes.HasPrefix(line, prefixAck):
			c.onAck(line, now)
		case bytes.HasPrefix(line, prefixError):
			c.onError(line)
		case bytes.HasPrefix(line, prefixJoined):
			var j protocol.Joined
			if err := json.Unmarshal(line, &j); err != nil {
				c.f.run.badFrames.Add(1)
				continue
			}
			c.toWriter(controlFrame{typ: protocol.TypeJoined, id: j.ID, head: j.Head})
		case bytes.HasPrefix(line, prefixLeft):
			var l protocol.Left
			if err := json.Unmarshal(line, &l); err != nil {
				c.f.run.badFrames.Add(1)
				continue
			}
			c.toWriter(controlFrame{typ: protocol.TypeLeft, id: l.ID})
		}
	}
	c.mu.Unlock()
	if len(c.ackSamples) > 0 {
		c.ackShard.record(c.ackSamples)
		c.ackSamples = c.ackSamples[:0]
	}
}

// toWriter hands an answer to the writer; one it is not waiting for (the
// channel holds more than a batch of them) is counted, never blocking the
// reader.
func (c *fillConn) toWriter(cf controlFrame) {
	select {
	case c.control <- cf:
	default:
		c.foreign++
	}
}

func (c *fillConn) onMessage(line []byte) {
	room, ok := stringMember(line, keyRoom)
	i := bytes.Index(line, keySeq)
	if !ok || i < 0 {
		c.f.run.badFrames.Add(1)
		return
	}
	seq, _, ok := leadingUint(line[i+len(keySeq):])
	if !ok {
		c.f.run.badFrames.Add(1)
		return
	}
	rm := c.rooms[string(room)]
	if rm == nil {
		c.foreign++
		return
	}
	rm.echo.add(seq)
	rm.received++
	c.f.run.delivered.Add(1)
}

func (c *fillConn) onAck(line []byte, now int64) {
	a, ok := parseAck(line)
	if !ok {
		c.f.run.badFrames.Add(1)
		return
	}
	rm := c.rooms[a.room]
	if rm == nil {
		c.foreign++
		return
	}
	if !c.release() {
		c.unmatched.Add(1)
	}
	if a.duplicate {
		rm.dupAcks++
	} else {
		rm.acked++
		rm.acks.add(a.seq)
		c.f.acked.Add(1)
		c.f.run.stored.Add(1)
	}
	n, ok := cidCounter(a.cid)
	if !ok {
		c.unmatched.Add(1)
		return
	}
	p, ok := c.pending.take(n)
	if !ok {
		c.unmatched.Add(1)
		return
	}
	c.ackSamples = append(c.ackSamples, latencySample{step: p.step, micros: max((now-p.sentNs)/1000, 1)})
}

func (c *fillConn) onError(line []byte) {
	var e protocol.Error
	if err := json.Unmarshal(line, &e); err != nil {
		c.f.run.badFrames.Add(1)
		return
	}
	c.f.run.countError(e.Code)
	switch {
	case e.ID != "":
		c.toWriter(controlFrame{typ: protocol.TypeError, id: e.ID, err: e.Code + ": " + e.Message})
	case e.Room != "":
		// Send frames carry no id: a room error answers a send.
		if rm := c.rooms[e.Room]; rm != nil {
			rm.refused++
		}
		c.f.run.refused.Add(1)
		c.release()
	}
}
