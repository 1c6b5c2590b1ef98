package store

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// MaxRoomLen is the longest room name the store accepts, in bytes.
const MaxRoomLen = 128

// Key layout. Every key starts with a one-byte kind, so the kinds never
// interleave:
//
//	0x00 'F'                       the store's format version (inside Pebble)
//	0x00 'W'                       write number and metadata digest (see guard.go)
//	0x01 room                      a room's metadata
//	0x02 len(room) room seq(8, BE) one message
//	0x03 room                      a room's event stream cursor (cursor.go)
//
// A message key carries the room's length before its name, so no room's
// keys can be a prefix of another's ("a" and "ab" differ at the length
// byte), and a room's messages form one contiguous range ordered by
// sequence number.
const (
	kindSystem  = 0x00
	kindMeta    = 0x01
	kindMessage = 0x02
	kindCursor  = 0x03
)

var (
	keyFormat    = []byte{kindSystem, 'F'}
	keyWriteMark = []byte{kindSystem, 'W'}
	// metaLower and metaUpper bound every metadata key.
	metaLower = []byte{kindMeta}
	metaUpper = []byte{kindMeta + 1}
	// msgLower and msgUpper bound every message key.
	msgLower = []byte{kindMessage}
	msgUpper = []byte{kindMessage + 1}
	// cursorLower and cursorUpper bound every cursor key.
	cursorLower = []byte{kindCursor}
	cursorUpper = []byte{kindCursor + 1}
)

// validRoom checks a room name: 1 to MaxRoomLen bytes of valid UTF-8.
func validRoom(room string) error {
	if room == "" {
		return fmt.Errorf("%w: empty room name", ErrInvalid)
	}
	if len(room) > MaxRoomLen {
		return fmt.Errorf("%w: room name of %d bytes (at most %d)", ErrInvalid, len(room), MaxRoomLen)
	}
	if !utf8.ValidString(room) {
		return fmt.Errorf("%w: room name %q is not valid UTF-8", ErrInvalid, room)
	}
	return nil
}

func metaKey(room string) []byte {
	k := make([]byte, 0, 1+len(room))
	k = append(k, kindMeta)
	return append(k, room...)
}

// msgPrefix is the common prefix of every message key of room.
func msgPrefix(room string) []byte {
	k := make([]byte, 0, 2+len(room)+8)
	k = append(k, kindMessage, byte(len(room)))
	return append(k, room...)
}

func msgKey(room string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(msgPrefix(room), seq)
}

// msgRoomUpper is greater than every message key of room and smaller than
// any key of another room that sorts after it: the prefix followed by nine
// bytes (message keys carry eight after it).
func msgRoomUpper(room string) []byte {
	k := msgPrefix(room)
	return append(k, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
}

// parseMsgKey splits a message key into its room and sequence number.
func parseMsgKey(k []byte) (room string, seq uint64, ok bool) {
	if len(k) < 2+8 || k[0] != kindMessage || int(k[1]) != len(k)-2-8 {
		return "", 0, false
	}
	return string(k[2 : 2+k[1]]), binary.BigEndian.Uint64(k[len(k)-8:]), true
}

// seqOfMsgKey returns the sequence number of a message key of a room whose
// prefix length is known.
func seqOfMsgKey(k []byte) uint64 {
	return binary.BigEndian.Uint64(k[len(k)-8:])
}
