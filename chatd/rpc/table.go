package rpc

import (
	"encoding/json"
	"fmt"

	"github.com/ringchat/ringchat/chatd/transport"
)

// A Table dispatches what peers send, one handler per op: each handler
// decodes its own body, so adding an op is adding a handler, and an op this
// version does not know, or that no handler takes in that role (a request
// or a push), is refused by its code instead of being misread.

// RequestHandler answers one request from a peer; body is the payload after
// the op byte. The handler calls one of a's methods exactly once, now or
// later and from any goroutine.
type RequestHandler func(from transport.Peer, body []byte, a Answer)

// PushHandler handles one push (a one-way message) from a peer; body is the
// payload after the op byte. An error, a body that did not decode, is
// returned to the caller of ServePush to report.
type PushHandler func(from transport.Peer, body []byte) error

// Table maps each op to its handler. Handlers are registered before the
// table serves (registration is not synchronised with dispatch).
type Table struct {
	requests map[Op]RequestHandler
	pushes   map[Op]PushHandler
}

// NewTable returns a table without handlers.
func NewTable() *Table {
	return &Table{requests: make(map[Op]RequestHandler), pushes: make(map[Op]PushHandler)}
}

// OnRequest registers h for requests of op o. It panics when o is not an op
// of this version or already has a handler: both are programming errors
// that must not reach a running cluster.
func (t *Table) OnRequest(o Op, h RequestHandler) {
	t.claim(o)
	t.requests[o] = h
}

// OnPush registers h for pushes of op o; it panics as OnRequest does.
func (t *Table) OnPush(o Op, h PushHandler) {
	t.claim(o)
	t.pushes[o] = h
}

func (t *Table) claim(o Op) {
	if !o.Known() {
		panic(fmt.Sprintf("rpc: op %d is not an op of this version", o))
	}
	if t.Handles(o) {
		panic(fmt.Sprintf("rpc: op %s has a handler already", o))
	}
}

// Handles reports whether o has a handler, as a request or as a push.
func (t *Table) Handles(o Op) bool {
	_, req := t.requests[o]
	_, push := t.pushes[o]
	return req || push
}

// OnRequestOf registers h for requests of op o whose body is a T in JSON.
// A body that does not decode is answered with Bad and never reaches h.
func OnRequestOf[T any](t *Table, o Op, h func(from transport.Peer, req T, a Answer)) {
	t.OnRequest(o, func(from transport.Peer, body []byte, a Answer) {
		var req T
		if err := json.Unmarshal(body, &req); err != nil {
			a.Bad(err)
			return
		}
		h(from, req, a)
	})
}

// OnPushOf registers h for pushes of op o whose body is a T in JSON. A body
// that does not decode never reaches h; ServePush returns the error.
func OnPushOf[T any](t *Table, o Op, h func(from transport.Peer, msg T)) {
	t.OnPush(o, func(from transport.Peer, body []byte) error {
		var msg T
		if err := json.Unmarshal(body, &msg); err != nil {
			return err
		}
		h(from, msg)
		return nil
	})
}

// Replier is where a request's one reply goes: a transport.Reply.
type Replier interface {
	// OK answers with payload.
	OK(payload []byte) error
	// Err answers with an error message (a code, see EncodeErr).
	Err(msg string) error
}

// ServeRequest dispatches one request (a transport.Handler's
// HandleRequest). An empty payload, or an op without a request handler, is
// answered with an error naming the op's code.
func (t *Table) ServeRequest(from transport.Peer, payload []byte, reply Replier) {
	if len(payload) == 0 {
		_ = reply.Err("empty request")
		return
	}
	h, ok := t.requests[Op(payload[0])]
	if !ok {
		_ = reply.Err(fmt.Sprintf("unknown request op %d", payload[0]))
		return
	}
	h(from, payload[1:], Answer{reply})
}

// ServePush dispatches one push (a transport.Handler's HandlePush). An empty
// payload is ignored; an op without a push handler is an error naming the
// op's code, as is a body its handler could not decode.
func (t *Table) ServePush(from transport.Peer, payload []byte) error {
	if len(payload) == 0 {
		return nil
	}
	h, ok := t.pushes[Op(payload[0])]
	if !ok {
		return fmt.Errorf("unknown push op %d", payload[0])
	}
	return h(from, payload[1:])
}

// Answer is a request's reply, with the encodings every handler uses. Its
// methods send the one reply; a handler calls exactly one of them once.
type Answer struct{ reply Replier }

// OK answers with v encoded as JSON.
func (a Answer) OK(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		_ = a.reply.Err("encode reply: " + err.Error())
		return
	}
	_ = a.reply.OK(b)
}

// Empty answers with an empty body (OpPing: the answer itself is the news).
func (a Answer) Empty() { _ = a.reply.OK(nil) }

// Fail answers with err's code (EncodeErr).
func (a Answer) Fail(err error) { _ = a.reply.Err(EncodeErr(err)) }

// Refuse answers with code, one of this package's codes, for a refusal
// that is no owner error (a node refusing writes for its own quorum rule
// answers CodeNoQuorum, as its owner service would).
func (a Answer) Refuse(code string) { _ = a.reply.Err(code) }

// Bad answers a request whose body did not decode.
func (a Answer) Bad(err error) { _ = a.reply.Err("bad request: " + err.Error()) }

// ReplyFunc returns the callback of an operation that answers a value or an
// error: the value as JSON, or the error's code.
func ReplyFunc[T any](a Answer) func(T, error) {
	return func(v T, err error) {
		if err != nil {
			a.Fail(err)
			return
		}
		a.OK(v)
	}
}

// Done answers an operation that returns only an error: an empty JSON
// object on success, err's code otherwise.
func (a Answer) Done(err error) {
	if err != nil {
		a.Fail(err)
		return
	}
	a.OK(struct{}{})
}
