// Package protocol defines ringchat's client protocol, version 1: the JSON
// frames exchanged over a WebSocket at /ws, their validation, the stable error
// codes and the close codes. docs/protocol.md is the prose version of this
// file; the two must agree.
//
// Every frame is a JSON object with a "type" member. A client sends exactly
// one frame per WebSocket text message. The server may pack several frames into
// one text message, separated by a newline ("\n"), so that a busy room costs
// one write per batch instead of one per frame; clients split on newlines.
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Version is the protocol version this package implements. The server
// announces it in the welcome frame; a hello that asks for another version is
// refused with CloseUnsupportedVersion.
const Version = 1

// Frame types sent by clients.
const (
	TypeHello   = "hello"
	TypeJoin    = "join"
	TypeLeave   = "leave"
	TypeSend    = "send"
	TypeHistory = "history"
	TypeDM      = "dm"
	TypeTyping  = "typing"
	TypePing    = "ping"
)

// Frame types sent by the server (TypeHistory, TypeDM and TypeTyping are also
// used in that direction).
const (
	TypeWelcome = "welcome"
	TypeJoined  = "joined"
	TypeLeft    = "left"
	TypeAck     = "ack"
	TypeMessage = "message"
	// TypeDeleted is a deletion in a room's log (a Message whose Target is
	// the deleted message's seq): it takes its own seq, so a client
	// resuming after it is told too.
	TypeDeleted  = "deleted"
	TypePresence = "presence"
	TypePong     = "pong"
	TypeError    = "error"
)

// ClientFrame is the union of every frame a client may send. Decoding into a
// single struct keeps the hot path to one json.Unmarshal call; Validate checks
// that the members the type needs are present.
type ClientFrame struct {
	// Type selects the operation.
	Type string `json:"type"`
	// ID is the client's request id, echoed in the reply and in errors.
	ID string `json:"id,omitempty"`

	// Token is a JWT (hello).
	Token string `json:"token,omitempty"`
	// Name is the anonymous display name (hello, when the server allows it).
	Name string `json:"name,omitempty"`
	// Protocol is the version the client speaks (hello); 0 means Version.
	Protocol int `json:"protocol,omitempty"`

	// Room names the room (join, leave, send, history, typing).
	Room string `json:"room,omitempty"`
	// Since asks join to replay every message with a sequence above it.
	Since *uint64 `json:"since,omitempty"`
	// Epoch is the room epoch the client last saw (join); a resume in
	// another epoch cannot be served from history.
	Epoch string `json:"epoch,omitempty"`
	// Before asks history for messages with a sequence below it; 0 means the head.
	Before uint64 `json:"before,omitempty"`
	// Limit caps the number of history messages returned.
	Limit int `json:"limit,omitempty"`

	// To is the recipient user id (dm).
	To string `json:"to,omitempty"`
	// CID is the client-chosen message id that makes a send idempotent.
	CID string `json:"cid,omitempty"`
	// Text is the message body (send, dm).
	Text string `json:"text,omitempty"`
}

// Limits that do not depend on configuration.
const (
	MaxRoomLen    = 64
	MaxIDLen      = 64
	MaxCIDLen     = 64
	MaxUserLen    = 128
	MaxHistoryReq = 200
	// MaxEpochLen bounds a join's "epoch": the server's epochs are 8
	// characters; anything longer cannot be one.
	MaxEpochLen = 32
	// MaxSeq is the largest sequence number a client may name ("since",
	// "before"): 2^53 − 1, the largest integer every JSON implementation
	// holds exactly (a JavaScript number), far above any sequence number a
	// room reaches.
	MaxSeq = 1<<53 - 1
)

// DecodeClientFrame parses one client frame. The returned *Error carries
// CodeBadFrame for malformed JSON and CodeUnknownType for an unknown type; in
// both cases the connection stays up.
//
// Members that do not apply to the frame's type are ignored whatever their
// JSON type (a "text" on a join), and are left zero in the result; members
// that apply must have their documented type. The common case, a frame whose
// members all decode, costs one pass; only a frame with a member of the
// wrong type is looked at member by member, to tell the two apart.
func DecodeClientFrame(data []byte) (ClientFrame, *Error) {
	var f ClientFrame
	if !utf8.Valid(data) {
		return f, NewError(CodeBadFrame, "", "frame is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&f)
	// Decode returns a type mismatch unwrapped; a plain assertion, unlike
	// errors.As, costs no allocation on the hot path.
	_, mistyped := err.(*json.UnmarshalTypeError)
	switch {
	case mistyped:
		// The decoder read the whole object and stopped at nothing but a
		// type mismatch; whether that member matters depends on the type.
		f = ClientFrame{}
		if perr := decodeApplicable(data, &f); perr != nil {
			return ClientFrame{}, perr
		}
	case err != nil:
		return ClientFrame{}, NewError(CodeBadFrame, "", "frame is not a JSON object: "+shortJSONError(err))
	default:
		f.clearInapplicable()
	}
	// Anything but whitespace after the object (another value, a stray
	// bracket) makes the frame ambiguous.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ClientFrame{}, NewError(CodeBadFrame, f.ID, "one JSON object per frame")
	}
	if err := f.Validate(); err != nil {
		return f, err
	}
	return f, nil
}

func shortJSONError(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	}
	return "invalid JSON"
}

// Validate checks that a decoded frame has what its type needs. Limits that
// depend on configuration (text length, rooms per connection) are checked by
// the server.
func (f *ClientFrame) Validate() *Error {
	if len(f.ID) > MaxIDLen {
		return NewError(CodeBadRequest, "", fmt.Sprintf("id longer than %d bytes", MaxIDLen))
	}
	switch f.Type {
	case TypeHello, TypePing:
		// Any integer "protocol" is a version: one the server does not
		// speak is answered by closing with CloseUnsupportedVersion.
		return nil
	case TypeJoin:
		if err := f.validateRoom(); err != nil {
			return err
		}
		var msg string
		switch {
		case f.Since != nil && f.Epoch == "":
			msg = "a resume (\"since\") needs the room's \"epoch\" from the last joined frame"
		case f.Since != nil && *f.Since > MaxSeq:
			msg = fmt.Sprintf("since must be at most %d", uint64(MaxSeq))
		case len(f.Epoch) > MaxEpochLen:
			msg = fmt.Sprintf("epoch longer than %d bytes", MaxEpochLen)
		default:
			return nil
		}
		e := NewError(CodeBadRequest, f.ID, msg)
		e.Room = f.Room
		return e
	case TypeLeave, TypeTyping:
		return f.validateRoom()
	case TypeHistory:
		if err := f.validateRoom(); err != nil {
			return err
		}
		if f.Limit < 0 || f.Limit > MaxHistoryReq {
			return NewError(CodeBadRequest, f.ID, fmt.Sprintf("limit must be between 1 and %d (0 or absent: the server's default)", MaxHistoryReq))
		}
		if f.Before > MaxSeq {
			return NewError(CodeBadRequest, f.ID, fmt.Sprintf("before must be at most %d", uint64(MaxSeq)))
		}
		return nil
	case TypeSend:
		if err := f.validateRoom(); err != nil {
			return err
		}
		return f.validateMessage()
	case TypeDM:
		if f.To == "" || len(f.To) > MaxUserLen {
			return NewError(CodeBadRequest, f.ID, "dm needs a recipient \"to\" of at most 128 bytes")
		}
		return f.validateMessage()
	case "":
		return NewError(CodeBadFrame, f.ID, "frame has no \"type\"")
	default:
		return NewError(CodeUnknownType, f.ID, fmt.Sprintf("unknown frame type %q", truncate(f.Type, 32)))
	}
}

func (f *ClientFrame) validateRoom() *Error {
	if err := ValidateRoom(f.Room); err != nil {
		// The invalid name is not echoed back: reflecting arbitrary input
		// into frames (and logs) helps nobody.
		return NewError(CodeInvalidRoom, f.ID, err.Error())
	}
	return nil
}

func (f *ClientFrame) validateMessage() *Error {
	if f.CID == "" || len(f.CID) > MaxCIDLen {
		return NewError(CodeBadRequest, f.ID, "a message needs a client id \"cid\" of 1 to 64 bytes")
	}
	if f.Text == "" {
		return NewError(CodeBadRequest, f.ID, "a message needs a non-empty \"text\"")
	}
	return nil
}

// ValidateRoom checks a room name: 1 to 64 bytes of ASCII letters, digits and
// the separators '-', '_', '.', ':' and '/'. The charset is narrow on purpose:
// room names appear in URLs, metrics labels and logs.
func ValidateRoom(room string) error {
	if room == "" {
		return errors.New("room name is empty")
	}
	if len(room) > MaxRoomLen {
		return fmt.Errorf("room name longer than %d bytes", MaxRoomLen)
	}
	for i := 0; i < len(room); i++ {
		c := room[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == ':' || c == '/':
		default:
			return fmt.Errorf("room name has an invalid character at byte %d (allowed: letters, digits, - _ . : /)", i)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
