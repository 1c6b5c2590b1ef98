package rpc_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/store"
	"github.com/ringchat/ringchat/chatd/transport"
)

// reply records a request's answers; a handler must answer exactly once.
type reply struct {
	ok   []string
	errs []string
}

func (r *reply) OK(b []byte) error    { r.ok = append(r.ok, string(b)); return nil }
func (r *reply) Err(msg string) error { r.errs = append(r.errs, msg); return nil }

func (r *reply) answered() string {
	switch {
	case len(r.ok)+len(r.errs) != 1:
		return "not answered exactly once"
	case len(r.ok) == 1:
		return "ok " + r.ok[0]
	default:
		return "err " + r.errs[0]
	}
}

var peer = transport.Peer{Name: "n2", Addr: "h:1"}

func TestTableDispatch(t *testing.T) {
	tb := rpc.NewTable()
	rpc.OnRequestOf(tb, rpc.OpTyping, func(from transport.Peer, req rpc.TypingReq, a rpc.Answer) {
		a.OK(rpc.DirectResp{Delivered: len(req.User) + len(from.Name)})
	})
	tb.OnRequest(rpc.OpPing, func(_ transport.Peer, _ []byte, a rpc.Answer) { a.Empty() })
	tb.OnRequest(rpc.OpPublish, func(_ transport.Peer, _ []byte, a rpc.Answer) { a.Refuse(rpc.CodeNoQuorum) })
	tb.OnRequest(rpc.OpHandoff, func(_ transport.Peer, body []byte, a rpc.Answer) {
		if len(body) > 0 {
			a.Done(owner.ErrMoving)
			return
		}
		a.Done(nil)
	})
	var pushed []string
	rpc.OnPushOf(tb, rpc.OpForget, func(from transport.Peer, msg rpc.ForgetReq) { pushed = append(pushed, from.Name+":"+msg.Room) })

	for _, tc := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"typed", rpc.Encode(rpc.OpTyping, rpc.TypingReq{Room: "r", User: "ann"}), `ok {"delivered":5}`},
		{"bare", rpc.Bare(rpc.OpPing), "ok "},
		{"refused", rpc.Encode(rpc.OpPublish, rpc.PublishReq{}), "err no_quorum"},
		{"done", rpc.Bare(rpc.OpHandoff), "ok {}"},
		{"failed", append(rpc.Bare(rpc.OpHandoff), 'x'), "err moving"},
		{"bad body", append(rpc.Bare(rpc.OpTyping), '['), "err bad request: "},
		{"empty", nil, "err empty request"},
		{"a push op", rpc.Encode(rpc.OpForget, rpc.ForgetReq{Room: "r"}), "err unknown request op 10"},
		{"unknown op", []byte{99}, "err unknown request op 99"},
	} {
		r := &reply{}
		tb.ServeRequest(peer, tc.payload, r)
		if got := r.answered(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}

	if err := tb.ServePush(peer, rpc.Encode(rpc.OpForget, rpc.ForgetReq{Room: "r"})); err != nil || len(pushed) != 1 || pushed[0] != "n2:r" {
		t.Errorf("push: %v, handled %v", err, pushed)
	}
	if err := tb.ServePush(peer, nil); err != nil {
		t.Errorf("empty push: %v, want it ignored", err)
	}
	if err := tb.ServePush(peer, append(rpc.Bare(rpc.OpForget), '[')); err == nil {
		t.Error("a push that does not decode: no error")
	}
	for _, payload := range [][]byte{rpc.Bare(rpc.OpTyping), {99}} {
		if err := tb.ServePush(peer, payload); err == nil || !strings.Contains(err.Error(), "unknown push op") {
			t.Errorf("push of op %d: %v, want unknown push op", payload[0], err)
		}
	}
	if len(pushed) != 1 {
		t.Errorf("pushes handled: %v", pushed)
	}
	if !tb.Handles(rpc.OpForget) || !tb.Handles(rpc.OpPing) || tb.Handles(rpc.OpClaim) {
		t.Error("Handles disagrees with the registrations")
	}
}

// One handler per op, and only for ops of this version: anything else is
// a programming error, caught when the table is built.
func TestTableRefusesSecondHandlerAndUnknownOp(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	tb := rpc.NewTable()
	tb.OnRequest(rpc.OpPing, func(transport.Peer, []byte, rpc.Answer) {})
	mustPanic("second request handler", func() { tb.OnRequest(rpc.OpPing, func(transport.Peer, []byte, rpc.Answer) {}) })
	mustPanic("push handler for a request op", func() { tb.OnPush(rpc.OpPing, func(transport.Peer, []byte) error { return nil }) })
	mustPanic("unknown op", func() { tb.OnPush(rpc.Op(99), func(transport.Peer, []byte) error { return nil }) })
}

// An owner's error comes back from the wire as the same error.
func TestErrorCodesRoundTrip(t *testing.T) {
	for _, err := range []error{
		owner.ErrNotOwner, owner.ErrMoving, owner.ErrClosed, owner.ErrBehind, owner.ErrNotMember, owner.ErrNoQuorum,
		roomlog.ErrGap, roomlog.ErrConflict, store.ErrFull, owner.ErrStorage, roomlog.ErrAlreadyDeleted,
	} {
		back := rpc.DecodeErr(&transport.RemoteError{Msg: rpc.EncodeErr(err)})
		if !errors.Is(back, err) {
			t.Errorf("%v came back as %v", err, back)
		}
	}
	notDeletable := fmt.Errorf("%w: room r seq 3 is a deletion", roomlog.ErrNotDeletable)
	if back := rpc.DecodeErr(&transport.RemoteError{Msg: rpc.EncodeErr(notDeletable)}); !errors.Is(back, roomlog.ErrNotDeletable) || back.Error() != notDeletable.Error() {
		t.Errorf("%v came back as %v", notDeletable, back)
	}
	var ste *owner.StaleTermError
	back := rpc.DecodeErr(&transport.RemoteError{Msg: rpc.EncodeErr(&owner.StaleTermError{Promised: 7})})
	if !errors.As(back, &ste) || ste.Promised != 7 {
		t.Errorf("stale term came back as %v", back)
	}
	other := errors.New("something else")
	if code := rpc.EncodeErr(other); code != "something else" {
		t.Errorf("an error outside the vocabulary travels as %q", code)
	}
	if rpc.DecodeErr(other) != other {
		t.Error("DecodeErr changed an error that is no remote error")
	}
}
