package socketio

import (
	"testing"

	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/wsframe"
)

// TestRender: native frames become the documented packets: an event (the
// frame without type, the offset last), an ACK for a reply to an event
// that asked for one (errors under "error"), room names shown as the
// namespace's client names them.
func TestRender(t *testing.T) {
	s := &socket{ns: Namespace{Name: "/support"}, prefix: "/support/", offsets: true,
		positions: []position{{room: "/support/general", epoch: "ep", seq: 4}}}
	var got []string
	var scratch []byte
	emit := func(p []byte) { got = append(got, string(p)) }
	msg := protocol.Encode(protocol.Message{Type: protocol.TypeMessage, Room: "/support/general", Seq: 5, MID: "ep-5", From: "ann", CID: "c", Text: "hi", TS: 7})
	s.render(msg, &scratch, emit)
	off := appendOffset(nil, []position{{"/support/general", "ep", 5}}, "/support/")
	want := `42/support,["message",{"room":"general","seq":5,"mid":"ep-5","from":"ann","cid":"c","text":"hi","ts":7},"` + string(off) + `"]`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("message rendered as %q, want %q", got, want)
	}
	got = nil
	e := protocol.NewError(protocol.CodeNotJoined, "12", "join first")
	e.Room = "/support/x"
	s.render(protocol.Encode(e), &scratch, emit)
	if want := `43/support,12[{"error":{"code":"not_joined","message":"join first","room":"x"}}]`; len(got) != 1 || got[0] != want {
		t.Fatalf("error rendered as %q, want %q", got, want)
	}
	got = nil
	s.render(protocol.Encode(protocol.Left{Type: protocol.TypeLeft, ID: "3", Room: "/support/general"}), &scratch, emit)
	off = appendOffset(nil, nil, "/support/")
	if len(got) != 2 || got[0] != `43/support,3[{"room":"general"}]` || got[1] != `42/support,["left",{"room":"general"},"`+string(off)+`"]` {
		t.Fatalf("leave reply rendered as %q", got)
	}
	// With recovery off (no offsets) the event still follows the ack.
	s.offsets = false
	got = nil
	s.render(protocol.Encode(protocol.Left{Type: protocol.TypeLeft, ID: "4", Room: "/support/general"}), &scratch, emit)
	if len(got) != 2 || got[0] != `43/support,4[{"room":"general"}]` || got[1] != `42/support,["left",{"room":"general"}]` {
		t.Fatalf("leave reply without offsets rendered as %q", got)
	}
}

// BenchmarkRenderMessage: the per-delivery cost of turning a shared
// native message frame into a subscriber's Socket.IO event with its
// offset.
func BenchmarkRenderMessage(b *testing.B) {
	s := &socket{ns: Namespace{Name: "/"}, offsets: true, positions: []position{{room: "bench", epoch: "ktsckf5g", seq: 1}}}
	msg := protocol.Encode(protocol.Message{Type: protocol.TypeMessage, Room: "bench", Seq: 2, MID: "ktsckf5g-2", From: "pub", CID: "0.1", Text: "t=1796616417012000000;s=1;xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", TS: 1796616417012})
	var scratch, buf []byte
	emit := func(p []byte) { buf = wsframe.Append(buf[:0], opText, p) }
	b.ReportAllocs()
	for b.Loop() {
		s.render(msg, &scratch, emit)
	}
}
