package socketio

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// position is how far a socket has read one room: the room's client-visible
// name, the epoch of the last message delivered and its sequence number.
type position struct {
	room  string
	epoch string
	seq   uint64
}

// offsetVersion starts every offset; a server that does not know the
// version answers the recovery with recovered=false.
const offsetVersion = 1

// maxOffsetLen bounds a recovery offset a client presents (100 rooms of 64
// bytes, their epochs and sequence numbers fit easily).
const maxOffsetLen = 16 << 10

// appendOffset appends the recovery offset for positions: base64url (no
// padding) of a version byte, then per room its name, epoch (each preceded
// by a varint length) and sequence number (a varint), then a CRC-32 of all
// that. scratch is reused between calls and returned grown.
//
// The offset is opaque to clients but not signed: it grants nothing the
// credentials presented with it do not (every room in it is joined again
// under the reconnecting identity's permissions, and a position only asks
// for messages the identity may read anyway). The checksum catches damage,
// which then costs a recovery, never a wrong replay.
//
// Positions hold native room names; prefix (the namespace's) is taken off,
// so the offset names rooms as the client does.
func appendOffset(dst, scratch []byte, positions []position, prefix string) ([]byte, []byte) {
	raw := append(scratch[:0], offsetVersion)
	for _, p := range positions {
		room := p.room[len(prefix):]
		raw = binary.AppendUvarint(raw, uint64(len(room)))
		raw = append(raw, room...)
		raw = binary.AppendUvarint(raw, uint64(len(p.epoch)))
		raw = append(raw, p.epoch...)
		raw = binary.AppendUvarint(raw, p.seq)
	}
	raw = binary.BigEndian.AppendUint32(raw, crc32.ChecksumIEEE(raw))
	return base64.RawURLEncoding.AppendEncode(dst, raw), raw
}

// decodeOffset reads an offset made by appendOffset.
func decodeOffset(s string) ([]position, error) {
	if len(s) > maxOffsetLen {
		return nil, errors.New("offset too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("offset is not base64url")
	}
	if len(raw) < 5 {
		return nil, errors.New("offset too short")
	}
	body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errors.New("offset checksum mismatch")
	}
	if body[0] != offsetVersion {
		return nil, errors.New("unknown offset version")
	}
	body = body[1:]
	var out []position
	str := func() (string, bool) {
		n, k := binary.Uvarint(body)
		if k <= 0 || n > uint64(len(body)-k) {
			return "", false
		}
		s := string(body[k : k+int(n)])
		body = body[k+int(n):]
		return s, true
	}
	for len(body) > 0 {
		var p position
		var ok bool
		if p.room, ok = str(); !ok {
			return nil, errors.New("offset truncated")
		}
		if p.epoch, ok = str(); !ok {
			return nil, errors.New("offset truncated")
		}
		seq, k := binary.Uvarint(body)
		if k <= 0 {
			return nil, errors.New("offset truncated")
		}
		p.seq, body = seq, body[k:]
		out = append(out, p)
	}
	return out, nil
}
