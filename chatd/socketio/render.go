package socketio

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// render writes a native frame queued to the socket as Socket.IO packets:
// a reply to an event that asked for an acknowledgement becomes that ACK
// (its argument the frame's members without type and id; an error's
// members under "error"), anything else an event named after the frame's
// type. A join's or leave's ACK is followed by a joined or left event; with
// recovery on, every event carries the offset as its last argument, so the
// offset the client keeps always knows its rooms.
func (s *socket) render(frame []byte, scratch *[]byte, emit func([]byte)) {
	typ, id, rest, ok := splitFrame(frame)
	if !ok {
		return
	}
	s.track(typ, frame)
	ack := int64(-1)
	if len(id) > 0 {
		if n, ok := parseAckID(id); ok {
			ack = n
		}
	}
	b := (*scratch)[:0]
	if ack >= 0 {
		b = appendPacketHead(append(b, eioMessage), sioAck, s.ns.Name, ack)
		b = append(b, '[')
		if string(typ) == protocol.TypeError {
			b = append(b, `{"error":`...)
			b = s.appendBody(b, rest)
			b = append(b, '}')
		} else {
			b = s.appendBody(b, rest)
		}
		b = append(b, ']')
		emit(b)
		// A join's or a leave's answer is also an event, whether or not
		// recovery is on (docs/socketio.md: after every join and leave);
		// with recovery on it carries the offset of the new set of rooms.
		if string(typ) != protocol.TypeJoined && string(typ) != protocol.TypeLeft {
			*scratch = b
			return
		}
		b = b[:0]
	}
	b = appendPacketHead(append(b, eioMessage), sioEvent, s.ns.Name, -1)
	b = append(b, `["`...)
	b = append(b, typ...)
	b = append(b, `",`...)
	b = s.appendBody(b, rest)
	if s.offsets {
		b = append(b, `,"`...)
		b = appendOffset(b, s.positions, s.prefix)
		b = append(b, '"')
	}
	b = append(b, ']')
	emit(b)
	*scratch = b
}

// splitFrame reads a native frame's type and id (both always first, as
// protocol.Encode writes them) and returns what follows them: "}" or
// ",<members>}".
func splitFrame(frame []byte) (typ, id, rest []byte, ok bool) {
	const head = `{"type":"`
	if !bytes.HasPrefix(frame, []byte(head)) {
		return nil, nil, nil, false
	}
	r := frame[len(head):]
	q := bytes.IndexByte(r, '"')
	if q < 0 {
		return nil, nil, nil, false
	}
	typ, rest = r[:q], r[q+1:]
	const idHead = `,"id":"`
	if bytes.HasPrefix(rest, []byte(idHead)) {
		r = rest[len(idHead):]
		if q = bytes.IndexByte(r, '"'); q < 0 {
			return nil, nil, nil, false
		}
		id, rest = r[:q], r[q+1:]
	}
	return typ, id, rest, len(rest) > 0
}

// appendBody appends the object made of rest's members, with native room
// names shown as the namespace's client sees them.
func (s *socket) appendBody(b, rest []byte) []byte {
	start := len(b)
	b = append(b, '{')
	if rest[0] == ',' {
		b = append(b, rest[1:]...)
	} else {
		b = append(b, '}')
	}
	if s.prefix != "" {
		// encoding/json escapes every quote inside a string, so this
		// sequence only ever matches a "room" member's opening.
		from := []byte(`"room":"` + s.prefix)
		if bytes.Contains(b[start:], from) {
			body := bytes.ReplaceAll(b[start:], from, []byte(`"room":"`))
			b = append(b[:start], body...)
		}
	}
	return b
}

// track keeps the socket's positions as the client is sent its frames.
// Only the writer calls it, in queue order.
func (s *socket) track(typ, frame []byte) {
	switch string(typ) {
	case protocol.TypeMessage, protocol.TypeDeleted:
		room, seq, ok := messageRoomSeq(frame)
		if !ok {
			return
		}
		for i := range s.positions {
			if string(room) == s.positions[i].room {
				if seq > s.positions[i].seq {
					s.positions[i].seq = seq
				}
				return
			}
		}
	case protocol.TypeJoined:
		var j protocol.Joined
		if json.Unmarshal(frame, &j) != nil {
			return
		}
		seq := j.Head
		if since, asked := s.takeSince(j.Room); asked && j.Recovered != nil && *j.Recovered {
			seq = since // the replay follows
		}
		for i := range s.positions {
			if s.positions[i].room == j.Room {
				s.positions[i].epoch, s.positions[i].seq = j.Epoch, seq
				return
			}
		}
		s.positions = append(s.positions, position{room: j.Room, epoch: j.Epoch, seq: seq})
	case protocol.TypeLeft:
		var l protocol.Left
		if json.Unmarshal(frame, &l) != nil {
			return
		}
		for i := range s.positions {
			if s.positions[i].room == l.Room {
				s.positions = append(s.positions[:i], s.positions[i+1:]...)
				return
			}
		}
	}
}

// parseAckID reads an id the socket gave a request: its ack id in decimal.
func parseAckID(id []byte) (int64, bool) {
	if len(id) == 0 || len(id) > 16 {
		return 0, false
	}
	var n int64
	for _, c := range id {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// The starts of the frames of a room log's entries: a message and a
// deletion, each of which takes a seq.
var (
	messageHead = []byte(`{"type":"message","room":"`)
	deletedHead = []byte(`{"type":"deleted","room":"`)
)

// isLogEntry reports whether frame is a message or a deletion frame.
func isLogEntry(frame []byte) bool {
	return bytes.HasPrefix(frame, messageHead) || bytes.HasPrefix(frame, deletedHead)
}

// messageRoomSeq reads room and seq from a message or deletion frame
// ({"type":"message","room":"…","seq":N,…}) without decoding it.
func messageRoomSeq(frame []byte) ([]byte, uint64, bool) {
	if !isLogEntry(frame) {
		return nil, 0, false
	}
	r := frame[len(messageHead):] // both heads have the same length
	q := bytes.IndexByte(r, '"')
	if q < 0 {
		return nil, 0, false
	}
	room := r[:q]
	r = r[q+1:]
	const seqHead = `,"seq":`
	if !bytes.HasPrefix(r, []byte(seqHead)) {
		return nil, 0, false
	}
	r = r[len(seqHead):]
	var seq uint64
	n := 0
	for n < len(r) && r[n] >= '0' && r[n] <= '9' {
		seq = seq*10 + uint64(r[n]-'0')
		n++
	}
	return room, seq, n > 0
}

// messageTS reads a message frame's ts (its last member).
func messageTS(frame []byte) (int64, bool) {
	i := bytes.LastIndex(frame, []byte(`"ts":`))
	if i < 0 {
		return 0, false
	}
	r := frame[i+5:]
	n := 0
	for n < len(r) && r[n] >= '0' && r[n] <= '9' {
		n++
	}
	ts, err := strconv.ParseInt(string(r[:n]), 10, 64)
	return ts, err == nil
}
