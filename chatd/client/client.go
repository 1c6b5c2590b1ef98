// Package client is a small Go client for ringchat's protocol v1. It does the
// framing (one frame per outgoing message, newline-separated batches coming
// in) and the hello handshake, and leaves policy (reconnects, resume) to its
// callers: chatctl, chatbench and the tests build on it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Frame is one server frame: its type and its raw JSON, decoded on demand
// with Decode.
type Frame struct {
	Type string
	Raw  json.RawMessage
}

// Decode unmarshals the frame into v (e.g. *protocol.Message).
func (f Frame) Decode(v any) error { return json.Unmarshal(f.Raw, v) }

// Conn is one WebSocket connection to chatd. Read must be called from one
// goroutine; Send may be called from any.
type Conn struct {
	ws      *websocket.Conn
	writeMu sync.Mutex
	pending [][]byte
	Welcome protocol.Welcome
}

// Options tunes Dial.
type Options struct {
	// Header is sent with the upgrade request (e.g. Origin).
	Header http.Header
	// HandshakeTimeout bounds the upgrade; zero means 10s.
	HandshakeTimeout time.Duration
	// TLSConfig is for wss:// URLs (e.g. RootCAs for a private CA); nil
	// means the system's roots.
	TLSConfig *tls.Config
	// NetDialContext, when set, opens the TCP connection (TLS, for wss://,
	// is still done on top of it with TLSConfig), e.g. from a chosen local
	// address: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}).DialContext.
	// Nil means a plain net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Dial connects to url (ws://host:port/ws or wss://…) without sending hello. The
// returned *http.Response is set when the server refused the upgrade, so
// callers can read its status and Retry-After.
func Dial(ctx context.Context, url string, opts Options) (*Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: opts.HandshakeTimeout, TLSClientConfig: opts.TLSConfig, NetDialContext: opts.NetDialContext}
	if d.HandshakeTimeout == 0 {
		d.HandshakeTimeout = 10 * time.Second
	}
	ws, resp, err := d.DialContext(ctx, url, opts.Header)
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s: %w", url, err)
	}
	return &Conn{ws: ws}, resp, nil
}

// Connect dials url and authenticates with hello (token or anonymous name),
// returning once the welcome arrives.
func Connect(ctx context.Context, url string, hello protocol.ClientFrame, opts Options) (*Conn, error) {
	c, _, err := Dial(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	hello.Type = protocol.TypeHello
	if err := c.Send(hello); err != nil {
		c.Close()
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.ws.SetReadDeadline(dl)
	}
	f, err := c.Read()
	_ = c.ws.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("waiting for welcome: %w", err)
	}
	if f.Type != protocol.TypeWelcome {
		c.Close()
		return nil, fmt.Errorf("expected welcome, got %s: %s", f.Type, f.Raw)
	}
	if err := f.Decode(&c.Welcome); err != nil {
		c.Close()
		return nil, fmt.Errorf("decode welcome: %w", err)
	}
	return c, nil
}

// Send writes one client frame.
func (c *Conn) Send(f protocol.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode %s frame: %w", f.Type, err)
	}
	return c.SendRaw(b)
}

// SendRaw writes data as one text message, valid or not (tests use it to
// send garbage).
func (c *Conn) SendRaw(data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// SendMessageType writes data with an explicit WebSocket message type.
func (c *Conn) SendMessageType(mt int, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.ws.WriteMessage(mt, data)
}

// Read returns the next server frame, splitting batched messages. A close
// from the server is returned as a *websocket.CloseError.
func (c *Conn) Read() (Frame, error) {
	for len(c.pending) == 0 {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return Frame{}, err
		}
		for _, line := range bytes.Split(data, []byte{'\n'}) {
			if len(line) > 0 {
				c.pending = append(c.pending, line)
			}
		}
	}
	raw := c.pending[0]
	c.pending = c.pending[1:]
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return Frame{}, fmt.Errorf("server sent invalid JSON %q: %w", raw, err)
	}
	return Frame{Type: head.Type, Raw: raw}, nil
}

// SetReadDeadline bounds the next Read calls.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// Close closes the connection politely (close frame 1000), then the socket.
func (c *Conn) Close() {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	_ = c.ws.Close()
}

// Abort drops the socket without a close frame, as a crashed client would.
func (c *Conn) Abort() { _ = c.ws.Close() }

// CloseCode extracts the WebSocket close code and reason from a Read error;
// ok is false when the error is not a close.
func CloseCode(err error) (code int, reason string, ok bool) {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Text, true
	}
	return 0, "", false
}
