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
