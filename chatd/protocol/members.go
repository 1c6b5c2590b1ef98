package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// typeSet is a set of client frame types, one bit each.
type typeSet uint16

const (
	inHello typeSet = 1 << iota
	inJoin
	inLeave
	inSend
	inHistory
	inDM
	inTyping
	inPing
	// inEvery marks the members every frame has, whatever its type (even
	// an unknown one): "type" and "id".
	inEvery typeSet = 1<<16 - 1
)

// typeBits maps a client frame type to its bit; unknown types have none.
var typeBits = map[string]typeSet{
	TypeHello: inHello, TypeJoin: inJoin, TypeLeave: inLeave, TypeSend: inSend,
	TypeHistory: inHistory, TypeDM: inDM, TypeTyping: inTyping, TypePing: inPing,
}

// member is one member of ClientFrame: its JSON name, the frame types it
// applies to (docs/protocol.md §4.1) and where it is stored.
type member struct {
	name  string
	types typeSet
	field func(*ClientFrame) any
}

// members lists every member of ClientFrame. A member outside its types is
// ignored, whatever its JSON type (§2: "members that do not apply to the
// frame's type are ignored").
var members = []member{
	{"type", inEvery, func(f *ClientFrame) any { return &f.Type }},
	{"id", inEvery, func(f *ClientFrame) any { return &f.ID }},
	{"token", inHello, func(f *ClientFrame) any { return &f.Token }},
	{"name", inHello, func(f *ClientFrame) any { return &f.Name }},
	{"protocol", inHello, func(f *ClientFrame) any { return &f.Protocol }},
	{"room", inJoin | inLeave | inSend | inHistory | inTyping, func(f *ClientFrame) any { return &f.Room }},
	{"since", inJoin, func(f *ClientFrame) any { return &f.Since }},
	{"epoch", inJoin, func(f *ClientFrame) any { return &f.Epoch }},
	{"before", inHistory, func(f *ClientFrame) any { return &f.Before }},
	{"limit", inHistory, func(f *ClientFrame) any { return &f.Limit }},
	{"to", inDM, func(f *ClientFrame) any { return &f.To }},
	{"cid", inSend | inDM, func(f *ClientFrame) any { return &f.CID }},
	{"text", inSend | inDM, func(f *ClientFrame) any { return &f.Text }},
}

// clearInapplicable zeroes the members that do not apply to f's type, so an
// ignored member is never acted on nor echoed (a rate_limited refusal echoes
// the room of a valid frame: a ping's "room" must not be reflected).
func (f *ClientFrame) clearInapplicable() {
	bits := typeBits[f.Type]
	for i := range members {
		if members[i].types == inEvery || members[i].types&bits != 0 {
			continue
		}
		switch p := members[i].field(f).(type) {
		case *string:
			*p = ""
		case *int:
			*p = 0
		case *uint64:
			*p = 0
		case **uint64:
			*p = nil
		}
	}
}

// memberNamed finds the member a JSON key decodes into, the way
// encoding/json matches keys to fields: the exact name first, then a
// case-insensitive match. It returns nil for unknown keys.
func memberNamed(key string) *member {
	for i := range members {
		if members[i].name == key {
			return &members[i]
		}
	}
	for i := range members {
		if strings.EqualFold(members[i].name, key) {
			return &members[i]
		}
	}
	return nil
}

// entry is one key and raw value of a JSON object, in document order.
type entry struct {
	key   string
	value json.RawMessage
}

// decodeApplicable decodes data, a JSON object that encoding/json has
// already read as a whole, member by member: "type" and "id" first, then
// the members that apply to that type, each strictly. Members that do not
// apply are skipped unread. Keys are taken in document order, so a repeated
// member ends with its last value, as with encoding/json.
func decodeApplicable(data []byte, f *ClientFrame) *Error {
	entries, ok := objectEntries(data)
	if !ok {
		return NewError(CodeBadFrame, "", "frame is not a JSON object")
	}
	for _, pass := range []func(m *member) bool{
		func(m *member) bool { return m.types == inEvery },
		func(m *member) bool { return m.types != inEvery && m.types&typeBits[f.Type] != 0 },
	} {
		for _, e := range entries {
			m := memberNamed(e.key)
			if m == nil || !pass(m) {
				continue
			}
			if err := json.Unmarshal(e.value, m.field(f)); err != nil {
				return NewError(CodeBadFrame, "", fmt.Sprintf("member %q has the wrong type", m.name))
			}
		}
	}
	return nil
}

// objectEntries splits the JSON value at the start of data into its keys
// and raw values; ok is false when that value is not an object (an array
// or a string decodes into a struct as a type mismatch, too).
func objectEntries(data []byte) (entries []entry, ok bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, _ := tok.(string) // object keys are strings
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, false
		}
		entries = append(entries, entry{key, value})
	}
	return entries, true
}
