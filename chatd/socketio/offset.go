package socketio

import (
	"errors"
	"strconv"
	"strings"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// position is how far a socket has read one room: the room's native name
// (client-visible in offsets), the epoch of the last message delivered and
// its sequence number.
type position struct {
	room  string
	epoch string
	seq   uint64
}

// offsetVersion starts every offset; a server that does not know the
// version answers the recovery with recovered=false.
const offsetVersion = "r1"

// maxOffsetLen bounds a recovery offset a client presents (100 rooms of 64
// bytes, their epochs and sequence numbers fit easily).
const maxOffsetLen = 16 << 10

// appendOffset appends the recovery offset for positions:
//
//	r1;<room>,<epoch>,<seq>;…;<checksum>
//
// rooms named as the client names them (prefix, the namespace's, taken off),
// the checksum an FNV-1a of everything before it, in hex. Room names,
// epochs and numbers never hold ',' or ';' nor need escaping in JSON, so the
// offset is cheap to write on every event (this runs once per delivery).
//
// The offset is opaque to clients but not signed: it grants nothing the
// credentials presented with it do not (every room in it is joined again
// under the reconnecting identity's permissions, and a position only asks
// for messages the identity may read anyway). The checksum catches damage,
// which then costs a recovery, never a wrong replay.
func appendOffset(dst []byte, positions []position, prefix string) []byte {
	start := len(dst)
	dst = append(dst, offsetVersion...)
	for _, p := range positions {
		dst = append(dst, ';')
		dst = append(dst, p.room[len(prefix):]...)
		dst = append(dst, ',')
		dst = append(dst, p.epoch...)
		dst = append(dst, ',')
		dst = strconv.AppendUint(dst, p.seq, 10)
	}
	sum := fnv32a(dst[start:])
	dst = append(dst, ';')
	return strconv.AppendUint(dst, uint64(sum), 16)
}

// fnv32a is FNV-1a, 32 bits.
func fnv32a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// decodeOffset reads an offset made by appendOffset.
func decodeOffset(s string) ([]position, error) {
	if len(s) > maxOffsetLen {
		return nil, errors.New("offset too long")
	}
	i := strings.LastIndexByte(s, ';')
	if i < 0 {
		return nil, errors.New("offset without checksum")
	}
	sum, err := strconv.ParseUint(s[i+1:], 16, 32)
	if err != nil || uint32(sum) != fnv32a([]byte(s[:i])) {
		return nil, errors.New("offset checksum mismatch")
	}
	fields := strings.Split(s[:i], ";")
	if fields[0] != offsetVersion {
		return nil, errors.New("unknown offset version")
	}
	out := make([]position, 0, len(fields)-1)
	for _, f := range fields[1:] {
		parts := strings.Split(f, ",")
		if len(parts) != 3 || parts[1] == "" {
			return nil, errors.New("offset entry malformed")
		}
		if err := protocol.ValidateRoom(parts[0]); err != nil {
			return nil, errors.New("offset names an invalid room")
		}
		seq, err := strconv.ParseUint(parts[2], 10, 64)
		if err != nil {
			return nil, errors.New("offset entry malformed")
		}
		out = append(out, position{room: parts[0], epoch: parts[1], seq: seq})
	}
	return out, nil
}
