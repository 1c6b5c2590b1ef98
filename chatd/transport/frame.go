package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame kinds.
const (
	kindPush     byte = 1
	kindRequest  byte = 2
	kindReplyOK  byte = 3
	kindReplyErr byte = 4
)

const (
	// frameBodyMin is the part of a frame counted by its length prefix that
	// is not payload: the kind and the request id.
	frameBodyMin = 1 + 8
	// frameHeaderLen is everything before the payload.
	frameHeaderLen = 4 + frameBodyMin
)

// Buffer sizes of the frame writer and reader. 64 KiB holds hundreds of
// small frames, so a busy stream costs one system call per few hundred
// frames in each direction.
const (
	writeBufferSize = 64 << 10
	readBufferSize  = 64 << 10
)

// errMalformed is wrapped by readFrame's errors for bytes that are not a
// valid frame, as opposed to I/O errors.
var errMalformed = errors.New("malformed frame")

// outFrame is a frame waiting in a peer's queue. The payload is the caller's
// slice, not a copy; the header is built when the frame is written.
type outFrame struct {
	payload []byte
	id      uint64
	kind    byte
}

// size is the frame's size on the wire, which is what queues are bounded by.
func (f *outFrame) size() int { return frameHeaderLen + len(f.payload) }

// writeFrame appends f to w. Errors are w's (the underlying socket's).
func writeFrame(w *bufio.Writer, f *outFrame) error {
	// The header is built in w's own buffer: a local array would escape to
	// the heap through the io.Writer that w may pass it to, costing an
	// allocation per frame.
	if w.Available() < frameHeaderLen {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	hdr := w.AvailableBuffer()
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(frameBodyMin+len(f.payload)))
	hdr = append(hdr, f.kind)
	hdr = binary.BigEndian.AppendUint64(hdr, f.id)
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	_, err := w.Write(f.payload)
	return err
}

// inFrame is a frame read from a stream; payload is freshly allocated.
type inFrame struct {
	payload []byte
	id      uint64
	kind    byte
}

// readFrame reads one frame, validating it before allocating its payload,
// so a hostile or broken length cannot make us allocate more than
// maxPayload. A clean end of stream between frames is io.EOF; an end inside a
// frame is io.ErrUnexpectedEOF; invalid bytes wrap errMalformed. It also
// returns the frame's size on the wire, for metrics.
func readFrame(r *bufio.Reader, maxPayload int) (inFrame, int, error) {
	// Headers are read with Peek, in r's buffer, rather than into a local
	// array that would escape through io.ReadFull and cost an allocation per
	// frame. The length comes first and alone, so a bad one is rejected
	// before we wait for bytes that may never come.
	b, err := r.Peek(4)
	if err != nil {
		if len(b) > 0 {
			err = truncated(err)
		}
		return inFrame{}, 0, err
	}
	n := binary.BigEndian.Uint32(b)
	if n < frameBodyMin {
		return inFrame{}, 0, fmt.Errorf("%w: length %d is shorter than the %d-byte kind and id", errMalformed, n, frameBodyMin)
	}
	if uint64(n-frameBodyMin) > uint64(maxPayload) {
		return inFrame{}, 0, fmt.Errorf("%w: payload of %d bytes exceeds the %d-byte limit", errMalformed, n-frameBodyMin, maxPayload)
	}
	_, _ = r.Discard(4) // cannot fail: the bytes are buffered
	b, err = r.Peek(frameBodyMin)
	if err != nil {
		return inFrame{}, 0, truncated(err)
	}
	f := inFrame{kind: b[0], id: binary.BigEndian.Uint64(b[1:])}
	_, _ = r.Discard(frameBodyMin)
	switch f.kind {
	case kindPush:
		if f.id != 0 {
			return inFrame{}, 0, fmt.Errorf("%w: push with request id %d", errMalformed, f.id)
		}
	case kindRequest, kindReplyOK, kindReplyErr:
		if f.id == 0 {
			return inFrame{}, 0, fmt.Errorf("%w: kind %d with request id 0", errMalformed, f.kind)
		}
	default:
		return inFrame{}, 0, fmt.Errorf("%w: unknown kind %d", errMalformed, f.kind)
	}
	f.payload = make([]byte, n-frameBodyMin)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return inFrame{}, 0, truncated(err)
	}
	return f, 4 + int(n), nil
}

// truncated turns an EOF inside a frame into io.ErrUnexpectedEOF, so that a
// peer hanging up mid-frame is not mistaken for a clean close.
func truncated(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
