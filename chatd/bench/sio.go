package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// chatbench speaks Socket.IO (Engine.IO 4, WebSocket transport) when a URL's
// path is /socket.io/: the events of docs/socketio.md (join, send with an
// acknowledgement, message), so the same scenarios measure chatd's
// /socket.io/ endpoint, its /ws, and any Socket.IO server that implements
// that vocabulary (the Node.js socket.io server of
// chatd/socketio/testdata/node/bench-server.cjs).

// isSocketIO reports whether url names a Socket.IO endpoint.
func isSocketIO(u string) bool {
	p, err := url.Parse(u)
	return err == nil && strings.HasPrefix(p.Path, "/socket.io")
}

// socketIOURL adds the Engine.IO query (version 4, WebSocket transport).
func socketIOURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := p.Query()
	q.Set("EIO", "4")
	q.Set("transport", "websocket")
	p.RawQuery = q.Encode()
	return p.String()
}

// socketIOHandshake reads the open packet, connects the main namespace
// with the user's name (or a token minted for the user, when dc has a
// minter) and joins room (acknowledgement id 0).
func (c *conn) socketIOHandshake(user, room string, dc dialConfig) (protocol.Joined, error) {
	if _, err := c.expectSIO("0"); err != nil {
		return protocol.Joined{}, fmt.Errorf("engine.io open: %w", err)
	}
	hf, err := dc.helloFrame(user)
	if err != nil {
		return protocol.Joined{}, err
	}
	creds := map[string]string{"name": hf.Name}
	if hf.Token != "" {
		creds = map[string]string{"token": hf.Token}
	}
	auth, _ := json.Marshal(creds)
	if err := c.ws.WriteMessage(websocket.TextMessage, append([]byte("40"), auth...)); err != nil {
		return protocol.Joined{}, fmt.Errorf("send connect: %w", err)
	}
	if _, err := c.expectSIO("40"); err != nil {
		return protocol.Joined{}, fmt.Errorf("socket.io connect: %w", err)
	}
	join, _ := json.Marshal(map[string]string{"room": room})
	if err := c.ws.WriteMessage(websocket.TextMessage, append(append([]byte(`420["join",`), join...), ']')); err != nil {
		return protocol.Joined{}, fmt.Errorf("send join: %w", err)
	}
	p, err := c.expectSIO("430[")
	if err != nil {
		return protocol.Joined{}, fmt.Errorf("join %s: %w", room, err)
	}
	var j protocol.Joined
	if err := json.Unmarshal(ackArg(p), &j); err != nil || j.Room == "" {
		return protocol.Joined{}, fmt.Errorf("join %s: unexpected answer %q", room, p)
	}
	return j, nil
}

// expectSIO reads packets until one starting with prefix, answering pings
// and failing on a CONNECT_ERROR.
func (c *conn) expectSIO(prefix string) ([]byte, error) {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return nil, err
		}
		switch {
		case bytes.HasPrefix(data, []byte(prefix)):
			return data, nil
		case bytes.HasPrefix(data, []byte("44")):
			return nil, fmt.Errorf("connect error: %s", data[2:])
		case string(data) == "2":
			if err := c.ws.WriteMessage(websocket.TextMessage, []byte("3")); err != nil {
				return nil, err
			}
		}
	}
}

// ackArg returns the argument of an ACK packet 43<id>[<arg>].
func ackArg(p []byte) []byte {
	i := bytes.IndexByte(p, '[')
	if i < 0 || len(p) < i+2 {
		return nil
	}
	return p[i+1 : len(p)-1]
}

var (
	sioMessage = []byte(`42["message",`)
	sioAckHead = []byte("43")
	sioError   = []byte(`42["error",`)
)

// processSocketIO handles one Engine.IO packet (one WebSocket message).
func (c *conn) processSocketIO(data []byte) {
	switch {
	case bytes.HasPrefix(data, sioMessage):
		if c.track {
			c.onMessage(data, time.Now().UnixNano())
			c.received.Add(1)
			c.run.delivered.Add(1)
			if len(c.samples) > 0 {
				c.latShard.record(c.samples)
				c.samples = c.samples[:0]
			}
		}
	case bytes.HasPrefix(data, sioAckHead):
		arg := ackArg(data)
		if bytes.HasPrefix(arg, []byte(`{"error":`)) {
			c.onSIOError(arg[len(`{"error":`) : len(arg)-1])
			return
		}
		c.onAck(arg, time.Now().UnixNano())
		if len(c.ackSamples) > 0 {
			c.ackShard.record(c.ackSamples)
			c.ackSamples = c.ackSamples[:0]
		}
	case bytes.HasPrefix(data, sioError):
		c.onSIOError(bytes.TrimSuffix(data[len(sioError):], []byte("]")))
	case len(data) == 1 && data[0] == '2':
		c.wmu.Lock()
		err := c.ws.WriteMessage(websocket.TextMessage, []byte("3"))
		c.wmu.Unlock()
		if err != nil && !c.closed.Load() {
			c.closeCode.Store(-1)
		}
	}
}

// onSIOError counts an error (in an acknowledgement or an error event) as
// an answered send, like an error frame on /ws.
func (c *conn) onSIOError(obj []byte) {
	// An error event may carry the recovery offset after the object.
	if i := bytes.LastIndex(obj, []byte("},")); i >= 0 {
		obj = obj[:i+1]
	}
	var e protocol.Error
	if err := json.Unmarshal(obj, &e); err != nil {
		c.run.badFrames.Add(1)
		return
	}
	c.run.countError(e.Code)
	c.errored.Add(1)
	c.run.refused.Add(1)
	c.run.acked.Add(1) // answered, although not stored
}

// socketIOSend rewrites a native send frame ({"type":"send",…}) in place
// into a Socket.IO event asking for acknowledgement n.
func socketIOSend(native []byte, n uint64) []byte {
	const head = `{"type":"send",`
	if !bytes.HasPrefix(native, []byte(head)) {
		panic(errors.New("bench: not a send frame"))
	}
	obj := native[len(head):]
	out := make([]byte, 0, len(native)+24)
	out = append(out, "42"...)
	out = strconv.AppendUint(out, n, 10)
	out = append(out, `["send",{`...)
	out = append(out, obj...)
	out = append(out, ']')
	return append(native[:0], out...)
}

// dialSocketIO opens a WebSocket to a Socket.IO endpoint (the handshake
// follows in socketIOHandshake).
func dialSocketIO(ctx context.Context, u string, dc dialConfig) (*websocket.Conn, error) {
	ws, resp, err := dc.dialer().DialContext(ctx, socketIOURL(u), nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w: HTTP %d (Retry-After %v)", u, errRefused, resp.StatusCode, client.RetryAfter(resp))
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
	}
	return ws, nil
}
