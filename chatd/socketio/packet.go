package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Engine.IO v4 packet types (the first character of a text packet).
const (
	eioOpen    = '0'
	eioClose   = '1'
	eioPing    = '2'
	eioPong    = '3'
	eioMessage = '4'
	eioUpgrade = '5'
	eioNoop    = '6'
)

// recordSeparator joins packets in a long-polling payload (Engine.IO v4).
const recordSeparator = 0x1e

// Socket.IO v5 packet types (the first character of an Engine.IO message).
const (
	sioConnect      = 0
	sioDisconnect   = 1
	sioEvent        = 2
	sioAck          = 3
	sioConnectError = 4
	sioBinaryEvent  = 5
	sioBinaryAck    = 6
)

// Packet is one decoded Socket.IO packet.
type Packet struct {
	// Type is one of the sio* constants.
	Type int
	// Namespace is "/" unless the packet names another.
	Namespace string
	// AckID is the acknowledgement id, or -1 when the packet has none.
	AckID int64
	// Attachments is the number of binary attachments announced by a binary
	// packet (they follow as separate Engine.IO messages).
	Attachments int
	// Data is the packet's JSON payload, nil when it has none.
	Data json.RawMessage
	// Event and Args are set for events: the event name and its arguments
	// (the elements of Data after the name).
	Event string
	Args  []json.RawMessage
}

// Limits of a packet header: ack ids fit in a JavaScript safe integer and
// namespaces are short (they become part of room names).
const (
	maxAckID         = 1<<53 - 1
	maxNamespaceLen  = 32
	maxAttachments   = 64
	maxEventNameLen  = 64
	maxEventArgCount = 16
)

// errBinary is the error for binary packets, which this endpoint refuses.
var errBinary = errors.New("binary packets are not supported: send JSON arguments (docs/socketio.md)")

// DecodePacket parses the payload of an Engine.IO message packet as a
// Socket.IO v5 packet. Binary packets are decoded (so their attachments can
// be skipped) and reported with errBinary; every other malformed input gets
// an error that says what is wrong. It never panics.
func DecodePacket(s []byte) (Packet, error) {
	p := Packet{AckID: -1, Namespace: "/"}
	if len(s) == 0 {
		return p, errors.New("empty packet")
	}
	if !utf8.Valid(s) {
		return p, errors.New("packet is not valid UTF-8")
	}
	if s[0] < '0' || s[0] > '6' {
		return p, fmt.Errorf("unknown packet type %q", s[0])
	}
	p.Type = int(s[0] - '0')
	i := 1
	if p.Type == sioBinaryEvent || p.Type == sioBinaryAck {
		j := bytes.IndexByte(s[i:], '-')
		if j <= 0 || j > 3 {
			return p, errors.New("binary packet without a valid attachment count")
		}
		n, err := strconv.Atoi(string(s[i : i+j]))
		if err != nil || n < 0 || n > maxAttachments {
			return p, errors.New("binary packet without a valid attachment count")
		}
		p.Attachments = n
		i += j + 1
	}
	if i < len(s) && s[i] == '/' {
		j := bytes.IndexByte(s[i:], ',')
		if j < 0 {
			j = len(s) - i
		}
		p.Namespace = string(s[i : i+j])
		i += j
		if i < len(s) {
			i++ // the comma
		}
		if len(p.Namespace) > maxNamespaceLen {
			return p, fmt.Errorf("namespace longer than %d bytes", maxNamespaceLen)
		}
	}
	if i < len(s) && s[i] >= '0' && s[i] <= '9' {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		id, err := strconv.ParseInt(string(s[i:j]), 10, 64)
		if err != nil || id > maxAckID {
			return p, errors.New("ack id out of range")
		}
		p.AckID = id
		i = j
	}
	if i < len(s) {
		p.Data = json.RawMessage(s[i:])
		if !json.Valid(p.Data) {
			return p, errors.New("packet data is not valid JSON")
		}
	}
	switch p.Type {
	case sioConnect:
		if p.Data != nil && !isObject(p.Data) {
			return p, errors.New("CONNECT data must be an object")
		}
	case sioDisconnect:
		if p.Data != nil {
			return p, errors.New("DISCONNECT carries no data")
		}
	case sioEvent, sioAck:
		if !isArray(p.Data) {
			return p, errors.New("EVENT and ACK data must be an array")
		}
		if p.Type == sioEvent {
			if err := p.splitEvent(); err != nil {
				return p, err
			}
		}
	case sioConnectError:
		return p, errors.New("CONNECT_ERROR is sent by servers only")
	case sioBinaryEvent, sioBinaryAck:
		return p, errBinary
	}
	return p, nil
}

// splitEvent reads the event name and arguments out of Data.
func (p *Packet) splitEvent() error {
	var elems []json.RawMessage
	if err := json.Unmarshal(p.Data, &elems); err != nil {
		return errors.New("EVENT data must be an array")
	}
	if len(elems) == 0 {
		return errors.New("EVENT without a name")
	}
	if len(elems) > maxEventArgCount+1 {
		return fmt.Errorf("EVENT with more than %d arguments", maxEventArgCount)
	}
	if err := json.Unmarshal(elems[0], &p.Event); err != nil || p.Event == "" {
		return errors.New("EVENT name must be a non-empty string")
	}
	if len(p.Event) > maxEventNameLen {
		return fmt.Errorf("EVENT name longer than %d bytes", maxEventNameLen)
	}
	p.Args = elems[1:]
	return nil
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

func isObject(b []byte) bool { return firstNonSpace(b) == '{' }
func isArray(b []byte) bool  { return firstNonSpace(b) == '[' }

// appendPacketHead appends a Socket.IO packet's type, namespace (when not
// the main one) and ack id.
func appendPacketHead(b []byte, typ int, ns string, ackID int64) []byte {
	b = append(b, byte('0'+typ))
	if ns != "/" && ns != "" {
		b = append(b, ns...)
		b = append(b, ',')
	}
	if ackID >= 0 {
		b = strconv.AppendInt(b, ackID, 10)
	}
	return b
}

// splitPayload splits a long-polling payload into its Engine.IO packets.
func splitPayload(body []byte) [][]byte {
	return bytes.Split(body, []byte{recordSeparator})
}
