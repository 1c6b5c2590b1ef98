// Package wsframe frames server-to-client WebSocket messages (RFC 6455
// §5.2: final, unmasked) for the writers that write their socket
// themselves, and lends them the buffers to frame into.
//
// Why: gorilla/websocket's message writer costs one system call per
// message. The /ws sessions (chatd/session) and the Socket.IO endpoint
// (chatd/socketio) frame everything one wake-up takes from a connection's
// queue into one buffer and write it at once; gorilla still does the
// upgrade, the reading and the control frames, each of which is also a
// single write, so the socket's write lock keeps every frame whole.
package wsframe

import (
	"encoding/binary"
	"sync"
)

// Append appends one final, unmasked frame with opcode op and payload to b.
func Append(b []byte, op int, payload []byte) []byte {
	return append(AppendHeader(b, op, len(payload)), payload...)
}

// AppendHeader appends the header of a final, unmasked frame of opcode op
// whose payload is size bytes long; the caller appends the payload.
func AppendHeader(b []byte, op, size int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case size < 126:
		return append(b, byte(size))
	case size < 1<<16:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(size))
	default:
		return binary.BigEndian.AppendUint64(append(b, 127), uint64(size))
	}
}

// buffers lends batch buffers to writers only while they write, so an idle
// connection holds none.
var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooled keeps an exceptional batch's buffer out of the pool.
const maxPooled = 256 << 10

// Buffer lends an empty buffer; give it back with Release once written.
func Buffer() *[]byte {
	return buffers.Get().(*[]byte) // Release pools buffers emptied
}

// Release takes back a buffer lent by Buffer, holding buf, what was framed
// into it (possibly grown); one grown past 256 KiB is left to the collector.
func Release(bp *[]byte, buf []byte) {
	if cap(buf) <= maxPooled {
		*bp = buf[:0]
		buffers.Put(bp)
	}
}
