package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodePacket: the Socket.IO packet decoder never panics; what it
// accepts has a known type, a namespace starting with "/", valid JSON data
// of the shape its type needs, and re-encodes (head + data) to a packet
// that decodes to the same thing. `make fuzz-socketio` explores further.
func FuzzDecodePacket(f *testing.F) {
	for _, seed := range []string{
		`0`, `0{"token":"x"}`, `0/support,{"name":"ann"}`, `1`, `1/support,`,
		`2["join",{"room":"lobby"}]`, `21["send",{"room":"a","cid":"c","text":"t"}]`,
		`2/support,7["history",{"room":"a","limit":2}]`, `3["x"]`, `31[]`,
		`51-["send",{"_placeholder":true,"num":0}]`, `61-/a,2[{"_placeholder":true,"num":0}]`,
		`4{"message":"x"}`, `2`, `2[]`, `2[1]`, `2{"a":1}`, `9`, ``, "2[\"\xff\"]",
		`2/` + string(bytes.Repeat([]byte("n"), 40)) + `,[]`, `299999999999999999999["a"]`,
		`2["join",{"room":"a"},"extra",1,2]`, `0/x`, `2/x,["e"`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePacket(data)
		if err != nil {
			if errors.Is(err, errBinary) && p.Attachments < 0 {
				t.Fatalf("negative attachments")
			}
			return
		}
		if p.Type < sioConnect || p.Type > sioAck || p.Type == sioConnectError {
			t.Fatalf("accepted packet type %d", p.Type)
		}
		if p.Namespace == "" || p.Namespace[0] != '/' {
			t.Fatalf("namespace %q", p.Namespace)
		}
		if p.Data != nil && !json.Valid(p.Data) {
			t.Fatalf("invalid JSON accepted: %q", p.Data)
		}
		if p.Type == sioEvent && (p.Event == "" || len(p.Args) > maxEventArgCount) {
			t.Fatalf("event %q with %d args", p.Event, len(p.Args))
		}
		again := appendPacketHead(nil, p.Type, p.Namespace, p.AckID)
		again = append(again, p.Data...)
		q, err := DecodePacket(again)
		if err != nil {
			t.Fatalf("re-encoded %q does not decode: %v", again, err)
		}
		if q.Type != p.Type || q.Namespace != p.Namespace || q.AckID != p.AckID || !bytes.Equal(q.Data, p.Data) || q.Event != p.Event {
			t.Fatalf("round trip changed %+v into %+v", p, q)
		}
	})
}

// TestOffsetRoundTrip: offsets decode to the positions they were made of
// (namespace prefix taken off), and damage is detected.
func TestOffsetRoundTrip(t *testing.T) {
	positions := []position{{"/support/general", "ktsckf5g", 42}, {"/support/a", "e2", 0}}
	off := appendOffset(nil, positions, "/support/")
	got, err := decodeOffset(string(off))
	if err != nil {
		t.Fatal(err)
	}
	want := []position{{"general", "ktsckf5g", 42}, {"a", "e2", 0}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range off {
		damaged := bytes.Clone(off)
		damaged[i] ^= 1
		if _, err := decodeOffset(string(damaged)); err == nil {
			if p, _ := decodeOffset(string(damaged)); len(p) == 2 && p[0] == want[0] && p[1] == want[1] {
				continue // a flip in base64's unused low bits decodes to the same bytes
			}
			t.Fatalf("damage at byte %d not detected", i)
		}
	}
	empty := appendOffset(nil, nil, "")
	if got, err := decodeOffset(string(empty)); err != nil || len(got) != 0 {
		t.Fatalf("empty offset: %v %v", got, err)
	}
}

// FuzzDecodeOffset: offsets from clients never panic the decoder.
func FuzzDecodeOffset(f *testing.F) {
	off := appendOffset(nil, []position{{"lobby", "ep", 7}}, "")
	f.Add(string(off))
	f.Add("")
	f.Add("AQ")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = decodeOffset(s)
	})
}
