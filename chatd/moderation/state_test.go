package moderation

import (
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// A room ban and a ban from every room both refuse joins and sends; the
// one that ends last is reported; an expired one stops applying; mutes
// refuse sends only; unbans and unmutes lift them; the log's own room is
// never refused.
func TestStateRefuse(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	s := NewState(func() time.Time { return now })
	for _, e := range []Entry{
		{Op: OpBan, User: "bob", Room: "lobby", Until: 2_000_000, Reason: "spam"},
		{Op: OpBan, User: "bob", Until: 1_500_000},
		{Op: OpMute, User: "ann", Room: "lobby"},
		{Op: OpBan, User: "eve", Room: "lobby", Until: 900_000},
	} {
		back, err := Decode(e.Encode())
		if err != nil || back != e {
			t.Fatalf("entry %+v decodes as %+v, %v", e, back, err)
		}
		s.Apply(back)
	}
	if e := s.Refuse("bob", "lobby", false); e == nil || e.Code != protocol.CodeBanned || e.Until != 2_000_000 {
		t.Fatalf("bob joining lobby: %+v", e)
	}
	if e := s.Refuse("bob", "other", true); e == nil || e.Code != protocol.CodeBanned || e.Until != 1_500_000 {
		t.Fatalf("bob sending to other: %+v", e)
	}
	if e := s.Refuse("bob", Room, false); e != nil {
		t.Fatalf("the log's room refused: %+v", e)
	}
	if e := s.Refuse("eve", "lobby", false); e != nil {
		t.Fatalf("eve's expired ban applies: %+v", e)
	}
	if e := s.Refuse("ann", "lobby", false); e != nil {
		t.Fatalf("muted ann's join refused: %+v", e)
	}
	if e := s.Refuse("ann", "lobby", true); e == nil || e.Code != protocol.CodeMuted || e.Until != 0 {
		t.Fatalf("muted ann's send: %+v", e)
	}
	if got := s.List(false, "lobby", true); len(got) != 1 || got[0].User != "bob" {
		t.Fatalf("lobby's bans: %+v", got)
	}
	now = time.UnixMilli(1_600_000) // bob's ban from every room has ended
	if e := s.Refuse("bob", "other", false); e != nil {
		t.Fatalf("bob's ended ban from every room applies: %+v", e)
	}
	s.Apply(Entry{Op: OpUnban, User: "bob", Room: "lobby"})
	s.Apply(Entry{Op: OpUnmute, User: "ann", Room: "lobby"})
	if e := s.Refuse("bob", "lobby", true); e != nil {
		t.Fatalf("unbanned bob: %+v", e)
	}
	if e := s.Refuse("ann", "lobby", true); e != nil {
		t.Fatalf("unmuted ann: %+v", e)
	}
	for _, bad := range []string{`{"op":"smite","user":"x"}`, `{"op":"ban"}`, `not json`} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("%s decodes", bad)
		}
	}
}
