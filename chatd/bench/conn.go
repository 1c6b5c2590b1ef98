package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// writeBufferPool lends gorilla write buffers only while a message is being
// written, so that thousands of idle connections hold none.
var writeBufferPool = &sync.Pool{}

// conn is one benchmark connection. Its reader goroutine is the only one to
// touch the tracking state; publishing happens from a scheduler goroutine
// under wmu.
type conn struct {
	id   int
	user string
	url  string
	ws   *websocket.Conn
	room *room
	// slot is this connection's publisher index within its room (-1 when
	// it does not publish); it is the first part of its cids.
	slot int
	// track: the reader checks sequence numbers, cids and latency.
	track bool
	// sio: the connection speaks Socket.IO (Engine.IO 4 over WebSocket) to
	// a /socket.io/ endpoint, chatd's or another server's (sio.go).
	sio bool
	run *runState

	wmu    sync.Mutex
	wbuf   []byte
	sentN  uint64 // cid counter of sends (under wmu)
	closed atomic.Bool

	// Reader state (reader goroutine only, read by the coordinator after
	// the reader has exited or under the run's drain barrier).
	rbuf     []byte
	seqs     seqTracker
	cidCount []uint64 // messages received per publisher slot
	cidLast  []uint64 // last cid counter seen per publisher slot
	cidOOO   uint64   // cid counter not above the last one seen (dup or late)
	foreign  uint64   // messages not sent by a benchmark publisher
	samples  []latencySample
	latShard *latencyShard
	// ackSamples are send→ack latencies of the WebSocket message being
	// processed; ackShard is where they go.
	ackSamples []latencySample
	ackShard   *latencyShard
	pending    pendingSends

	sent atomic.Uint64 // sends written

	received  atomic.Uint64 // messages of its room received
	acked     atomic.Uint64 // non-duplicate acks of its sends
	ackDups   atomic.Uint64 // acks flagged duplicate (should stay 0)
	errored   atomic.Uint64 // sends refused with an error frame
	unmatched atomic.Uint64 // acks naming no send in flight (should stay 0)
	closeCode atomic.Int64  // close code from the server, or -1 for a network error
	// epoch and recovered are from the connection's joined frame: the
	// room's epoch, and whether a resume (a join with since) recovered.
	epoch      string
	recovered  bool
	readerDone chan struct{}
}

// dialConfig tunes dialing.
type dialConfig struct {
	readBuffer int
	timeout    time.Duration
	// local is the source address to bind; nil: the kernel's choice.
	local net.IP
	// tokens, when set, mints the hello's token: the user authenticates
	// with a JWT instead of an anonymous name.
	tokens *tokenMinter
}

// dialer is gorilla's Dialer for dc.
func (dc dialConfig) dialer() *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: dc.timeout,
		ReadBufferSize:   dc.readBuffer,
		WriteBufferSize:  4096,
		WriteBufferPool:  writeBufferPool,
		NetDialContext:   netDial(dc.local),
	}
}

// helloFrame is user's hello: a token minted for user when dc has a
// minter, else the anonymous name.
func (dc dialConfig) helloFrame(user string) (protocol.ClientFrame, error) {
	f := protocol.ClientFrame{Type: protocol.TypeHello, Protocol: protocol.Version}
	if dc.tokens == nil {
		f.Name = user
		return f, nil
	}
	tok, err := dc.tokens.mint(user, time.Now())
	if err != nil {
		return f, err
	}
	f.Token = tok
	return f, nil
}

// errRefused marks an upgrade refused by the server (503, 429).
var errRefused = errors.New("upgrade refused")

// dialConn connects, says hello and joins room. It returns once the joined
// frame arrived; the reader is not started yet.
//
// With resume set, the join resumes from it (since and epoch): the joined
// frame says whether the room recovered.
func dialConn(ctx context.Context, url, user string, r *room, resume *resumePoint, dc dialConfig) (*conn, protocol.Joined, error) {
	ctx, cancel := context.WithTimeout(ctx, dc.timeout)
	defer cancel()
	sio := isSocketIO(url)
	var ws *websocket.Conn
	var err error
	if sio {
		ws, err = dialSocketIO(ctx, url, dc)
	} else {
		ws, err = dialHello(ctx, url, user, dc)
	}
	if err != nil {
		return nil, protocol.Joined{}, err
	}
	c := &conn{user: user, url: url, ws: ws, room: r, slot: -1, sio: sio, readerDone: make(chan struct{})}
	fail := func(err error) (*conn, protocol.Joined, error) {
		_ = ws.Close()
		return nil, protocol.Joined{}, err
	}
	if sio {
		j, err := c.socketIOHandshake(user, r.name, dc)
		if err != nil {
			return fail(err)
		}
		_ = ws.SetReadDeadline(time.Time{})
		c.seqs.last = j.Head
		return c, j, nil
	}
	jf := protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: r.name}
	if resume != nil {
		since := resume.since
		jf.Since, jf.Epoch = &since, resume.epoch
	}
	join, _ := json.Marshal(jf)
	if err := ws.WriteMessage(websocket.TextMessage, join); err != nil {
		return fail(fmt.Errorf("send join: %w", err))
	}
	raw, err := expectFrame(ws, protocol.TypeJoined)
	if err != nil {
		return fail(fmt.Errorf("join %s: %w", r.name, err))
	}
	var j protocol.Joined
	if err := json.Unmarshal(raw, &j); err != nil {
		return fail(fmt.Errorf("decode joined: %w", err))
	}
	_ = ws.SetReadDeadline(time.Time{})
	c.seqs.last = j.Head
	c.epoch = j.Epoch
	c.recovered = j.Recovered != nil && *j.Recovered
	return c, j, nil
}

// resumePoint is where a reconnecting connection resumes its room.
type resumePoint struct {
	epoch string
	since uint64
}

// dialHello connects and says hello, returning once the welcome arrived.
// The read deadline is left at ctx's deadline; callers clear it when they
// are done with their handshake.
func dialHello(ctx context.Context, url, user string, dc dialConfig) (*websocket.Conn, error) {
	hf, err := dc.helloFrame(user)
	if err != nil {
		return nil, err
	}
	ws, resp, err := dc.dialer().DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w: HTTP %d (Retry-After %v)", url, errRefused, resp.StatusCode, client.RetryAfter(resp))
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	}
	hello, _ := json.Marshal(hf)
	if err := ws.WriteMessage(websocket.TextMessage, hello); err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("send hello: %w", err)
	}
	if _, err := expectFrame(ws, protocol.TypeWelcome); err != nil {
		_ = ws.Close()
		return nil, fmt.Errorf("hello: %w", err)
	}
	return ws, nil
}

// expectFrame reads frames until one of type typ (skipping presence and
// typing), failing on an error frame or a close.
func expectFrame(ws *websocket.Conn, typ string) ([]byte, error) {
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			if len(line) == 0 {
				continue
			}
			var head struct {
				Type    string `json:"type"`
				Code    string `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal(line, &head); err != nil {
				return nil, fmt.Errorf("invalid frame %q: %w", line, err)
			}
			switch head.Type {
			case typ:
				return line, nil
			case protocol.TypeError:
				return nil, fmt.Errorf("server error %s: %s", head.Code, head.Message)
			}
		}
	}
}

// startReader runs the read loop in a goroutine until the connection ends.
func (c *conn) startReader(wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(c.readerDone)
		c.readLoop()
	}()
}

func (c *conn) readLoop() {
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			if c.closed.Load() {
				return // our own close
			}
			if code, _, ok := client.CloseCode(err); ok {
				c.closeCode.Store(int64(code))
			} else {
				c.closeCode.Store(-1)
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

// readAll reads r to its end into *buf, growing it as needed, and returns
// the length read. The buffer is reused from message to message.
func readAll(r io.Reader, buf *[]byte) (int, error) {
	b := *buf
	if cap(b) == 0 {
		b = make([]byte, 0, 4096)
	}
	b = b[:cap(b)]
	n := 0
	for {
		if n == len(b) {
			grown := make([]byte, 2*len(b))
			copy(grown, b[:n])
			b = grown
		}
		m, err := r.Read(b[n:])
		n += m
		if err == io.EOF {
			*buf = b
			return n, nil
		}
		if err != nil {
			*buf = b
			return n, err
		}
	}
}

var (
	prefixMessage  = []byte(`{"type":"message"`)
	prefixAck      = []byte(`{"type":"ack"`)
	prefixError    = []byte(`{"type":"error"`)
	prefixPresence = []byte(`{"type":"presence"`)
)

// process handles one WebSocket message: newline-separated frames.
func (c *conn) process(data []byte) {
	if c.sio {
		c.processSocketIO(data)
		return
	}
	now := time.Now().UnixNano()
	var msgs uint64
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
			if c.track {
				c.onMessage(line, now)
				msgs++
			}
		case bytes.HasPrefix(line, prefixAck):
			c.onAck(line, now)
		case bytes.HasPrefix(line, prefixError):
			c.onError(line)
		case bytes.HasPrefix(line, prefixPresence):
			c.run.presence.Add(1)
		}
	}
	if msgs > 0 {
		c.received.Add(msgs)
		c.run.delivered.Add(msgs)
		if len(c.samples) > 0 {
			c.latShard.record(c.samples)
			c.samples = c.samples[:0]
		}
	}
	if len(c.ackSamples) > 0 {
		c.ackShard.record(c.ackSamples)
		c.ackSamples = c.ackSamples[:0]
	}
}

func (c *conn) onMessage(line []byte, now int64) {
	m, ok := parseMessage(line)
	if !ok {
		c.run.slowParses.Add(1)
		m, ok = parseMessageSlow(line)
		if !ok {
			c.run.badFrames.Add(1)
			return
		}
	}
	c.seqs.add(m.seq)
	if m.slot < 0 {
		c.foreign++
		return
	}
	if m.slot >= len(c.cidCount) {
		if m.slot >= maxSlots {
			c.foreign++
			return
		}
		c.cidCount = append(c.cidCount, make([]uint64, m.slot+1-len(c.cidCount))...)
		c.cidLast = append(c.cidLast, make([]uint64, m.slot+1-len(c.cidLast))...)
	}
	c.cidCount[m.slot]++
	if m.n <= c.cidLast[m.slot] {
		c.cidOOO++
	} else {
		c.cidLast[m.slot] = m.n
	}
	if m.step > 0 && m.sentNs > 0 {
		c.samples = append(c.samples, latencySample{step: m.step, micros: max((now-m.sentNs)/1000, 1)})
	}
}

func (c *conn) onAck(line []byte, now int64) {
	a, ok := parseAck(line)
	if !ok {
		c.run.badFrames.Add(1)
		return
	}
	if a.room == "" {
		return // a DM ack; benchmarks send none
	}
	if a.duplicate {
		c.ackDups.Add(1)
	} else {
		c.acked.Add(1)
		c.run.stored.Add(1)
	}
	c.room.noteAck(a.seq)
	c.run.acked.Add(1)
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
	if p.step > 0 && c.ackShard != nil {
		c.ackSamples = append(c.ackSamples, latencySample{step: p.step, micros: max((now-p.sentNs)/1000, 1)})
	}
}

func (c *conn) onError(line []byte) {
	var e protocol.Error
	if err := json.Unmarshal(line, &e); err != nil {
		c.run.badFrames.Add(1)
		return
	}
	c.run.countError(e.Code)
	if e.Room != "" && e.ID == "" {
		// Send frames carry no id: a room error answers a send.
		c.errored.Add(1)
		c.run.refused.Add(1)
		c.run.acked.Add(1) // answered, although not stored
	}
}

// publish sends one message stamped with the current time and step.
func (c *conn) publish(step int, textSize int) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return errConnClosed
	}
	c.sentN++
	now := time.Now().UnixNano()
	c.wbuf = appendSend(c.wbuf[:0], c.room.name, c.slot, c.sentN, now, step, textSize)
	if c.sio {
		c.wbuf = socketIOSend(c.wbuf, c.sentN)
	}
	// Noted before the write: the ack may be read before WriteMessage
	// returns.
	c.pending.add(c.sentN, now, step)
	if err := c.ws.WriteMessage(websocket.TextMessage, c.wbuf); err != nil {
		c.pending.take(c.sentN)
		return fmt.Errorf("publish: %w", err)
	}
	c.sent.Add(1)
	return nil
}

// inflight is the number of sends written and not yet answered (acked or
// refused).
func (c *conn) inflight() int64 {
	return int64(c.sent.Load()) - int64(c.acked.Load()+c.ackDups.Load()+c.errored.Load())
}

// errConnClosed is returned by publish after close.
var errConnClosed = errors.New("connection closed")

// close sends a normal close frame and drops the socket; the reader then
// exits.
func (c *conn) close() {
	if c.closed.Swap(true) {
		return
	}
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	_ = c.ws.Close()
}

// appendSend appends a send frame whose text carries the send time and the
// step: `t=<unix nanos>;s=<step>;` padded with 'x' to textSize bytes.
func appendSend(b []byte, room string, slot int, n uint64, nowNs int64, step, textSize int) []byte {
	b = append(b, `{"type":"send","room":"`...)
	b = append(b, room...)
	b = append(b, `","cid":"`...)
	b = strconv.AppendInt(b, int64(slot), 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `","text":"t=`...)
	start := len(b) - 2
	b = strconv.AppendInt(b, nowNs, 10)
	b = append(b, ";s="...)
	b = strconv.AppendInt(b, int64(step), 10)
	b = append(b, ';')
	for len(b)-start < textSize {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}
