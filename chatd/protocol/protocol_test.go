package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeClientFrame(t *testing.T) {
	cases := []struct {
		in   string
		code string // "" means valid
	}{
		{`{"type":"hello","name":"ann"}`, ""},
		{`{"type":"join","id":"1","room":"lobby","since":3,"epoch":"abc"}`, ""},
		{`{"type":"send","room":"r","cid":"c","text":"hi"}`, ""},
		{`{"type":"history","room":"r","limit":200}`, ""},
		{`{"type":"dm","to":"bob","cid":"c","text":"hi"}`, ""},
		{`{"type":"typing","room":"r"}`, ""},
		{`{"type":"ping"}`, ""},
		{`not json`, CodeBadFrame},
		{`[1,2]`, CodeBadFrame},
		{`{"type":"ping"} {"type":"ping"}`, CodeBadFrame},
		{`{}`, CodeBadFrame},
		{`{"type":42}`, CodeBadFrame},
		{`{"type":"dance"}`, CodeUnknownType},
		{`{"type":"join"}`, CodeInvalidRoom},
		{`{"type":"join","room":"a b"}`, CodeInvalidRoom},
		{`{"type":"join","room":"` + strings.Repeat("x", 65) + `"}`, CodeInvalidRoom},
		{`{"type":"send","room":"r","text":"hi"}`, CodeBadRequest},
		{`{"type":"send","room":"r","cid":"c"}`, CodeBadRequest},
		{`{"type":"history","room":"r","limit":201}`, CodeBadRequest},
		{`{"type":"history","room":"r","limit":-1}`, CodeBadRequest},
		{`{"type":"dm","cid":"c","text":"hi"}`, CodeBadRequest},
		{`{"type":"ping","id":"` + strings.Repeat("i", 65) + `"}`, CodeBadRequest},
		{"{\"type\":\"ping\",\"id\":\"\xff\"}", CodeBadFrame},
		{`"just a string"`, CodeBadFrame},
		{`null`, CodeBadFrame},

		// Numbers are bounded by what the server holds: a sequence number
		// above 2^53-1 (MaxSeq) is refused as a request, one beyond uint64
		// (or any non-integer) as a frame; the epoch is at most 32 bytes.
		{`{"type":"join","room":"r","since":9007199254740991,"epoch":"e"}`, ""},
		{`{"type":"join","room":"r","since":9007199254740992,"epoch":"e"}`, CodeBadRequest},
		{`{"type":"join","room":"r","since":18446744073709551615,"epoch":"e"}`, CodeBadRequest},
		{`{"type":"join","room":"r","since":18446744073709551616,"epoch":"e"}`, CodeBadFrame},
		{`{"type":"join","room":"r","since":1e3,"epoch":"e"}`, CodeBadFrame},
		{`{"type":"join","room":"r","since":1,"epoch":"` + strings.Repeat("e", 32) + `"}`, ""},
		{`{"type":"join","room":"r","since":1,"epoch":"` + strings.Repeat("e", 33) + `"}`, CodeBadRequest},
		{`{"type":"join","room":"r","epoch":"` + strings.Repeat("e", 100000) + `"}`, CodeBadRequest},
		{`{"type":"history","room":"r","before":9007199254740991}`, ""},
		{`{"type":"history","room":"r","before":9007199254740992}`, CodeBadRequest},
		{`{"type":"history","room":"r","before":-1}`, CodeBadFrame},
		{`{"type":"history","room":"r","limit":1e300}`, CodeBadFrame},
		{`{"type":"hello","protocol":9223372036854775807}`, ""},
		{`{"type":"hello","protocol":9223372036854775808}`, CodeBadFrame},
		{`{"type":"hello","protocol":1.5}`, CodeBadFrame},

		// Members that do not apply to the type are ignored, whatever
		// their JSON type (§2)...
		{`{"type":"join","room":"r","text":7}`, ""},
		{`{"type":"join","room":"r","cid":{"a":[1]},"limit":"many","to":false,"token":[]}`, ""},
		{`{"type":"ping","room":"not a room!","since":-1,"before":"x"}`, ""},
		{`{"type":"hello","name":"ann","room":3,"text":null,"epoch":1}`, ""},
		{`{"type":"send","room":"r","cid":"c","text":"hi","since":"x","protocol":"v1"}`, ""},
		{`{"type":"dm","to":"bob","cid":"c","text":"hi","room":["x"]}`, ""},
		{`{"type":"history","room":"r","epoch":5,"TEXT":5}`, ""},
		{`{"type":"leave","room":"r","Text":5}`, ""},
		{`{"type":"typing","room":"r","name":1.5}`, ""},
		{`{"type":"shout","id":"x","text":7}`, CodeUnknownType},
		{`{"id":"x","text":7}`, CodeBadFrame}, // no type
		// ...while members that apply keep their types, also when an
		// inapplicable one comes first.
		{`{"type":"join","room":"r","since":-1}`, CodeBadFrame},
		{`{"type":"join","text":7,"room":"r","since":"3"}`, CodeBadFrame},
		{`{"type":"join","room":7}`, CodeBadFrame},
		{`{"type":"join","ROOM":7,"text":7}`, CodeBadFrame},
		{`{"type":"send","room":"r","cid":"c","text":["hi"]}`, CodeBadFrame},
		{`{"type":"send","room":"r","cid":1,"text":"hi","since":"x"}`, CodeBadFrame},
		{`{"type":"history","room":"r","limit":"50","text":1}`, CodeBadFrame},
		{`{"type":"history","room":"r","before":-1}`, CodeBadFrame},
		{`{"type":"dm","to":7,"cid":"c","text":"hi"}`, CodeBadFrame},
		{`{"type":"hello","protocol":"1"}`, CodeBadFrame},
		{`{"type":"hello","token":1,"room":2}`, CodeBadFrame},
		{`{"type":"ping","id":7,"room":1}`, CodeBadFrame},
		{`{"type":["ping"],"text":1}`, CodeBadFrame},
		{`{"type":"join","room":"r","text":7}]`, CodeBadFrame}, // trailing data
	}
	for _, c := range cases {
		_, err := DecodeClientFrame([]byte(c.in))
		got := ""
		if err != nil {
			got = err.Code
			if err.Message == "" {
				t.Errorf("%s: error without a message", c.in)
			}
		}
		if got != c.code {
			t.Errorf("DecodeClientFrame(%.40s) code %q, want %q (%v)", c.in, got, c.code, err)
		}
	}
}

// TestInapplicableMembersCleared: an ignored member is gone from the decoded
// frame, so it can neither be acted on nor echoed (a rate_limited error
// echoes a valid frame's room).
func TestInapplicableMembersCleared(t *testing.T) {
	for in, want := range map[string]ClientFrame{
		`{"type":"ping","id":"p","room":"lobby","text":"x","since":3,"limit":5}`:          {Type: TypePing, ID: "p"},
		`{"type":"join","room":"r","since":2,"epoch":"e","text":7,"cid":"c","before":4}`:  {Type: TypeJoin, Room: "r", Since: u64(2), Epoch: "e"},
		`{"type":"dm","to":"bob","cid":"c","text":"hi","room":"r","token":"t","since":1}`: {Type: TypeDM, To: "bob", CID: "c", Text: "hi"},
		`{"type":"hello","name":"ann","protocol":1,"room":"r","to":"x"}`:                  {Type: TypeHello, Name: "ann", Protocol: 1},
		`{"type":"history","room":"r","before":9,"limit":3,"epoch":"e","to":1}`:           {Type: TypeHistory, Room: "r", Before: 9, Limit: 3},
		`{"type":"send","room":"r","cid":"c","text":"t","name":"n","limit":"x"}`:          {Type: TypeSend, Room: "r", CID: "c", Text: "t"},
	} {
		got, err := DecodeClientFrame([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if !sameFrame(got, want) {
			t.Errorf("%s decoded to %+v, want %+v", in, got, want)
		}
	}
}

func u64(v uint64) *uint64 { return &v }

func sameFrame(a, b ClientFrame) bool {
	as, bs := a.Since, b.Since
	a.Since, b.Since = nil, nil
	return a == b && (as == nil) == (bs == nil) && (as == nil || *as == *bs)
}

// TestWrongTypeNamesTheMember: the refusal of a mistyped member that
// applies says which member it is.
func TestWrongTypeNamesTheMember(t *testing.T) {
	_, err := DecodeClientFrame([]byte(`{"type":"join","text":7,"room":"r","since":"3"}`))
	if err == nil || err.Code != CodeBadFrame || err.Message != `member "since" has the wrong type` {
		t.Fatalf("error = %+v", err)
	}
}

func TestErrorCarriesRequestID(t *testing.T) {
	_, err := DecodeClientFrame([]byte(`{"type":"join","id":"req-7","room":"bad room"}`))
	if err == nil || err.ID != "req-7" {
		t.Fatalf("error = %+v, want id req-7", err)
	}
}

func TestValidateRoom(t *testing.T) {
	for _, ok := range []string{"a", "lobby", "team-1/general", "x.y:z_w", strings.Repeat("a", 64)} {
		if err := ValidateRoom(ok); err != nil {
			t.Errorf("ValidateRoom(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", " ", "a b", "é", "a\n", strings.Repeat("a", 65), "<script>"} {
		if err := ValidateRoom(bad); err == nil {
			t.Errorf("ValidateRoom(%q) accepted", bad)
		}
	}
}

func TestEncodeMessage(t *testing.T) {
	b := Encode(Message{Type: TypeMessage, Room: "r", Seq: 1, MID: "e-1", From: "ann", Text: "line1\nline2", TS: 5})
	if strings.Contains(string(b), "\n") {
		t.Fatal("an encoded frame contains a raw newline, which would break batch framing")
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil || m.Text != "line1\nline2" {
		t.Fatalf("round trip = %+v, %v", m, err)
	}
}

// BenchmarkDecodeSend measures the hot path: a valid send frame.
func BenchmarkDecodeSend(b *testing.B) {
	data := []byte(`{"type":"send","id":"s-1","room":"lobby","cid":"c-7f3a-1","text":"hello, how is everyone today?"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClientFrame(data); err != nil {
			b.Fatal(err)
		}
	}
}
