package rpc

import (
	"encoding/hex"
	"encoding/json"
	"testing"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// The inter-node wire is pinned here: op codes, the event frame's layout and
// the JSON of every request. A change that fails these tests breaks a
// cluster of mixed versions; make it on purpose, with Version bumped and
// the upgrade note in docs/architecture.md, then update the golden values.

func TestGoldenOpCodes(t *testing.T) {
	want := map[Op]byte{
		OpSubscribe: 1, OpUnsubscribe: 2, OpPresence: 3, OpPublish: 4, OpHistory: 5, OpTyping: 6, OpDirect: 7,
		OpReplicate: 8, OpSync: 9, OpForget: 10, OpHandoff: 11, OpEvent: 12, OpClaim: 13, OpPing: 14,
		OpRingStats: 15, OpFetch: 16, OpRejoined: 17, OpSyncChunk: 18,
		OpDisconnect: 19, OpKick: 20, OpOwnedRooms: 21, OpRoomUsers: 22, OpUserConns: 23, OpSubscribeUser: 24, OpDeleteMessage: 25, OpStreamCursor: 26,
	}
	for o, v := range want {
		if byte(o) != v {
			t.Errorf("op %s = %d, want %d", o, o, v)
		}
	}
	// A Table takes handlers for these ops only (Known), so every op a
	// node handles has a golden value.
	for _, o := range Ops() {
		if _, ok := want[o]; !ok {
			t.Errorf("op %d (%s) has no golden value", o, o)
		}
	}
	if Version != 2 {
		t.Errorf("Version = %d: update the golden values of this file with it", Version)
	}
}

func TestGoldenEventFrame(t *testing.T) {
	m := protocol.Message{Type: protocol.TypeMessage, Room: "r", Seq: 7, MID: "ep-7", From: "ann", CID: "c", Text: "hi", TS: 1}
	ev := feed.Event{Kind: feed.KindMessage, Room: "r", Epoch: "ep", Seq: 7, Frame: protocol.Encode(m)}
	got := hex.EncodeToString(EncodeEvent(ev))
	const want = "0c1e" + // op 12, header length 30 (uvarint)
		"7b226b223a312c2272223a2272222c2265223a226570222c2273223a377d" // {"k":1,"r":"r","e":"ep","s":7}
	if got != want+hex.EncodeToString(ev.Frame) {
		t.Fatalf("event frame %s, want %s then the client frame raw", got, want)
	}
	back, err := DecodeEvent(EncodeEvent(ev)[1:])
	if err != nil || back.Seq != 7 || back.Message == nil || back.Message.Text != "hi" {
		t.Fatalf("decoded %+v, %v", back, err)
	}
}

func TestGoldenRequestBodies(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"replicate", owner.Replication{Room: "r", Epoch: "ep", Term: 3, Msg: protocol.Message{Type: "message", Room: "r", Seq: 1, MID: "ep-1", From: "a", CID: "c", Text: "t", TS: 2}},
			`{"room":"r","epoch":"ep","term":3,"msg":{"type":"message","room":"r","seq":1,"mid":"ep-1","from":"a","cid":"c","text":"t","ts":2}}`},
		{"sync offer", owner.SyncOffer{Meta: roomlog.Meta{Room: "r", Epoch: "ep", Term: 3, Head: 2, Oldest: 1, Terms: []roomlog.TermStart{{Term: 3, Seq: 1}}}},
			`{"meta":{"room":"r","epoch":"ep","term":3,"head":2,"oldest":1,"terms":[{"term":3,"seq":1}]}}`},
		{"sync answer", owner.SyncAnswer{Have: 2}, `{"have":2}`},
		{"chunk", owner.Chunk{Room: "r", Epoch: "ep", Term: 3, Entries: []roomlog.Entry{{Term: 3, Msg: protocol.Message{Seq: 1, From: "a"}}}},
			`{"room":"r","epoch":"ep","term":3,"entries":[{"term":3,"msg":{"type":"","room":"","seq":1,"mid":"","from":"a","text":"","ts":0}}]}`},
		{"notice", owner.HandoffNotice{Room: "r", Term: 3, Head: 2, Nodes: map[string][]string{"n": {"u"}}}, `{"room":"r","term":3,"head":2,"nodes":{"n":["u"]}}`},
		{"claim", owner.ClaimRequest{Room: "r", Promise: true, Term: 4}, `{"room":"r","promise":true,"term":4}`},
		{"claim reply", owner.ClaimReply{Refused: "stale_term", Promised: 5, Copy: &owner.CopyInfo{Epoch: "ep", Term: 4, Head: 9}},
			`{"refused":"stale_term","promised":5,"copy":{"epoch":"ep","term":4,"head":9}}`},
		{"forget", ForgetReq{Room: "r", Term: 3}, `{"room":"r","term":3}`},
		{"fetch", owner.FetchRequest{Room: "r", Term: 4, After: 9}, `{"room":"r","term":4,"after":9}`},
		{"fetch reply", owner.FetchReply{Meta: roomlog.Meta{Room: "r", Epoch: "ep", Term: 4, Head: 1, Oldest: 1}, Keep: 0, Reset: true},
			`{"meta":{"room":"r","epoch":"ep","term":4,"head":1,"oldest":1},"keep":0,"reset":true}`},
		{"stream cursor", StreamCursorReq{Room: "r", Epoch: "ep", Seq: 9}, `{"room":"r","epoch":"ep","seq":9}`},
		{"sync offer with a cursor", owner.SyncOffer{Meta: roomlog.Meta{Room: "r", Epoch: "ep", Term: 3, Head: 2, Oldest: 1, Streamed: 2}},
			`{"meta":{"room":"r","epoch":"ep","term":3,"head":2,"oldest":1,"streamed":2}}`},
		{"delete message", DeleteMessageReq{Room: "r", Seq: 4, By: "mod", View: "v"}, `{"room":"r","seq":4,"by":"mod","view":"v"}`},
		{"deletion", owner.Replication{Room: "r", Epoch: "ep", Term: 3, Msg: protocol.Message{Type: "deleted", Room: "r", Seq: 5, MID: "ep-5", From: "mod", Target: 4, TS: 2}},
			`{"room":"r","epoch":"ep","term":3,"msg":{"type":"deleted","room":"r","seq":5,"mid":"ep-5","from":"mod","text":"","target":4,"ts":2}}`},
		{"deleted message", protocol.Message{Type: "message", Room: "r", Seq: 4, MID: "ep-4", From: "a", CID: "c", Deleted: true, TS: 2},
			`{"type":"message","room":"r","seq":4,"mid":"ep-4","from":"a","cid":"c","text":"","deleted":true,"ts":2}`},
		{"disconnect", DisconnectReq{User: "u", Code: 4011, Reason: "spam"}, `{"user":"u","code":4011,"reason":"spam"}`},
		{"disconnect reply", DisconnectResp{Closed: 2}, `{"closed":2}`},
		{"kick", KickReq{Room: "r", User: "u", Reason: "spam"}, `{"room":"r","user":"u","reason":"spam"}`},
		{"kick reply", KickResp{Kicked: 1}, `{"kicked":1}`},
		{"subscribe user", SubscribeUserReq{Room: "r", User: "u"}, `{"room":"r","user":"u"}`},
		{"subscribe user reply", SubscribeUserResp{Subscribed: 2}, `{"subscribed":2}`},
		{"owned rooms", OwnedRoomsReq{}, `{}`},
		{"owned rooms reply", OwnedRoomsResp{Rooms: []RoomSummary{{Room: "r", Epoch: "ep", Head: 9, Users: 2, Nodes: 1}}},
			`{"rooms":[{"room":"r","epoch":"ep","head":9,"users":2,"nodes":1}]}`},
		{"room users", RoomUsersReq{Room: "r", Limit: 10}, `{"room":"r","limit":10}`},
		{"room users reply", RoomUsersResp{Owner: true, Count: 2, Users: []string{"ann", "bob"}}, `{"owner":true,"count":2,"users":["ann","bob"]}`},
		{"user conns", UserConnsReq{User: "u"}, `{"user":"u"}`},
		{"user conns reply", UserConnsResp{Connections: []ConnSummary{{Session: "s1", Transport: "websocket", Rooms: []string{"a"}}}},
			`{"connections":[{"session":"s1","transport":"websocket","rooms":["a"]}]}`},
		{"meta", membership.Meta{RPCAddr: "h:1", HTTPAddr: "h:2", State: membership.StateActive, Proto: Version}, `{"r":"h:1","h":"h:2","s":"active","p":2}`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%s encodes as %s (%v), want %s", tc.name, b, err, tc.want)
		}
	}
}
