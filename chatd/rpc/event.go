package rpc

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// An owner's events are the one payload that is not all JSON: a small JSON
// header, then the client frame raw, so a message is neither escaped nor
// re-encoded on every hop.

// eventHeader is a feed.Event without its frame. A message event carries
// no copy of the message: the frame is the message, encoded once by the
// owner, and the receiver decodes it from there.
type eventHeader struct {
	Kind    feed.Kind `json:"k"`
	Room    string    `json:"r"`
	Epoch   string    `json:"e,omitempty"`
	Seq     uint64    `json:"s,omitempty"`
	Joined  []string  `json:"j,omitempty"`
	Left    []string  `json:"l,omitempty"`
	Present []string  `json:"p,omitempty"`
	Count   int       `json:"c,omitempty"`
}

// EncodeEvent returns the OpEvent payload of ev: the op, the header's
// length (uvarint), the header, then ev.Frame as it is.
func EncodeEvent(ev feed.Event) []byte {
	h := eventHeader{Kind: ev.Kind, Room: ev.Room, Epoch: ev.Epoch, Seq: ev.Seq, Joined: ev.Joined, Left: ev.Left, Present: ev.Present, Count: ev.Count}
	hb, _ := json.Marshal(h)
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(hb)+len(ev.Frame))
	out = append(out, byte(OpEvent))
	out = binary.AppendUvarint(out, uint64(len(hb)))
	out = append(out, hb...)
	return append(out, ev.Frame...)
}

// DecodeEvent decodes an OpEvent body (the payload after the op byte). The
// event's Frame aliases b; a message event's Message is decoded from it.
func DecodeEvent(b []byte) (feed.Event, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return feed.Event{}, errors.New("rpc: truncated event header")
	}
	var h eventHeader
	if err := json.Unmarshal(b[k:k+int(n)], &h); err != nil {
		return feed.Event{}, fmt.Errorf("rpc: event header: %w", err)
	}
	ev := feed.Event{Kind: h.Kind, Room: h.Room, Epoch: h.Epoch, Seq: h.Seq, Joined: h.Joined, Left: h.Left, Present: h.Present, Count: h.Count}
	ev.Frame = b[k+int(n):]
	if ev.Kind == feed.KindMessage {
		var m protocol.Message
		if err := json.Unmarshal(ev.Frame, &m); err != nil {
			return feed.Event{}, fmt.Errorf("rpc: event message: %w", err)
		}
		ev.Message = &m
	}
	return ev, nil
}
