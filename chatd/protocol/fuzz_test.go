package protocol

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeClientFrame checks that no input crashes the decoder, that every
// refusal carries a known code and a message, and that every accepted frame
// re-encodes and decodes to itself. Its seed corpus runs in `make test`;
// `make fuzz` explores further.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, seed := range []string{
		`{"type":"hello","token":"a.b.c","protocol":1}`,
		`{"type":"join","id":"1","room":"lobby","since":3,"epoch":"abc"}`,
		`{"type":"send","room":"r","cid":"c","text":"hi \u2603"}`,
		`{"type":"history","room":"r","before":10,"limit":20}`,
		`{"type":"dm","to":"bob","cid":"c","text":"hi"}`,
		`{"type":"typing","room":"r"}`,
		`{"type":"leave","room":"r"}`,
		`{"type":"ping","id":"x"}`,
		`{"type":"join","room":"a b"}`,
		`{"type":"join","since":-1}`,
		`{"type":"send","text":1e999}`,
		`{"type":"ping"}{"type":"ping"}`,
		`{"type":"join","room":"r","text":7,"cid":{"a":[1]},"limit":"x"}`,
		`{"type":"join","text":7,"room":"r","since":"3"}`,
		`{"type":"ping","room":"not a room","since":-1}`,
		`{"type":"send","room":"r","cid":"c","text":"hi","since":[],"Since":1}`,
		`{"type":"hello","name":"n","protocol":"1","room":1}`,
		`{"type":"dm","to":"b","cid":"c","text":"t","TO":7}`,
		`{"type":"shout","id":"x","text":7}`,
		"\xff\xfe",
		`[]`, `null`, `""`, ``,
	} {
		f.Add([]byte(seed))
	}
	known := map[string]bool{CodeBadFrame: true, CodeUnknownType: true, CodeBadRequest: true, CodeInvalidRoom: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := DecodeClientFrame(data)
		if err != nil {
			if !known[err.Code] || err.Message == "" {
				t.Fatalf("refusal %+v has an unknown code or no message", err)
			}
			return
		}
		b, merr := json.Marshal(frame)
		if merr != nil {
			t.Fatalf("accepted frame does not re-encode: %v", merr)
		}
		again, derr := DecodeClientFrame(b)
		if derr != nil {
			t.Fatalf("re-encoded frame %s refused: %v", b, derr)
		}
		if !sameFrame(again, frame) {
			t.Fatalf("round trip changed the frame: %+v vs %+v", frame, again)
		}
		// Members that do not apply to the type are never kept.
		cleared := frame
		cleared.clearInapplicable()
		if !sameFrame(cleared, frame) {
			t.Fatalf("accepted frame %+v keeps members its type does not have", frame)
		}
	})
}
