package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Record formats. Every stored value starts with a format byte so that a
// later version can change the layout and still read what this one wrote.
const (
	entryFormatV1 = 1
	// entryFormatV2 adds flags (and a target) for deletions: a deleted
	// message and the deletion entry itself. Plain messages keep V1, so a
	// store in which nothing was ever deleted stays readable by a build
	// that knows only V1.
	entryFormatV2 = 2
	metaFormatV1  = 1
	markFormatV1  = 1
)

// MaxTermHistory is how many TermStart entries a room's metadata keeps. The
// oldest are dropped beyond it: a copy whose divergence point lies before
// the oldest kept term start cannot be repaired by truncation and must be
// replaced whole (Reset, then Append the source's messages).
const MaxTermHistory = 64

// Entry is one stored message. The room, the message type and the message
// id (<epoch>-<seq>) are derivable and not stored.
type Entry struct {
	// Seq is the message's sequence number in its room (1, 2, ...).
	Seq uint64
	// Term is the ownership term of the owner that sequenced it.
	Term uint64
	// From is the sender's user id.
	From string
	// CID is the client's id for the message (idempotent resends).
	CID string
	// Text is the message body.
	Text string
	// TS is the time the owner sequenced it, in Unix milliseconds.
	TS int64
	// Deleted marks a message a moderator deleted; its Text is empty.
	Deleted bool
	// Target, when not zero, makes the entry a deletion of the message at
	// that seq. Appending it also marks that message Deleted and removes
	// its text, in the same atomic write.
	Target uint64
}

// Entry flags of entryFormatV2.
const (
	entryFlagDeleted = 1 << 0
	entryFlagTarget  = 1 << 1
)

// TermStart records the first sequence number written in a term: the
// leader-epoch cache two copies compare to find where they diverge.
type TermStart struct {
	Term uint64 `json:"term"`
	Seq  uint64 `json:"seq"`
}

// RoomMeta is what the store keeps about one room besides its messages.
type RoomMeta struct {
	// Epoch is the incarnation of the room's sequence numbers.
	Epoch string
	// Term is the ownership term of the owner whose log this copy follows
	// (the last writer's term).
	Term uint64
	// Promised is the highest ownership term this node has promised for
	// the room. It never goes backwards.
	Promised uint64
	// Head is the last sequence number stored (0 when none ever was).
	Head uint64
	// Oldest is the first sequence number still kept; Head+1 when none is.
	Oldest uint64
	// Terms lists the first sequence number of each term, ascending, at
	// most MaxTermHistory of them (the newest). Treat it as read-only: the
	// store shares it between callers.
	Terms []TermStart
}

// Count is the number of messages the room keeps.
func (m RoomMeta) Count() uint64 {
	if m.Head < m.Oldest {
		return 0
	}
	return m.Head - m.Oldest + 1
}

// lastEntryTerm is the term of the entry at Head as far as Terms tells.
func (m RoomMeta) lastEntryTerm() uint64 {
	if len(m.Terms) == 0 {
		return 0
	}
	return m.Terms[len(m.Terms)-1].Term
}

// validate checks the invariants every stored metadata keeps.
func (m RoomMeta) validate() error {
	if m.Oldest == 0 || m.Oldest > m.Head+1 {
		return fmt.Errorf("%w: oldest %d with head %d (want 1 ≤ oldest ≤ head+1)", ErrInvalid, m.Oldest, m.Head)
	}
	if len(m.Terms) > MaxTermHistory {
		return fmt.Errorf("%w: %d term starts (at most %d)", ErrInvalid, len(m.Terms), MaxTermHistory)
	}
	for i, t := range m.Terms {
		if t.Seq > m.Head+1 {
			return fmt.Errorf("%w: term %d starts at seq %d, after head %d", ErrInvalid, t.Term, t.Seq, m.Head)
		}
		if i > 0 && (t.Term <= m.Terms[i-1].Term || t.Seq < m.Terms[i-1].Seq) {
			return fmt.Errorf("%w: term starts not ascending at index %d", ErrInvalid, i)
		}
	}
	return nil
}

func (m RoomMeta) clone() RoomMeta {
	m.Terms = slices.Clone(m.Terms)
	return m
}

// errShort is returned by the decoders for a record that ends too early.
var errShort = errors.New("record too short")

// encodeEntry appends e's value (without its sequence number, which is in
// the key) to dst.
//
//	format(1) uvarint(term) varint(ts) uvarint(len from) from uvarint(len cid) cid text
//	format(2) uvarint(flags) [uvarint(target)] uvarint(term) varint(ts) ... (as format 1)
func encodeEntry(dst []byte, e *Entry) []byte {
	if e.Deleted || e.Target != 0 {
		dst = append(dst, entryFormatV2)
		var flags uint64
		if e.Deleted {
			flags |= entryFlagDeleted
		}
		if e.Target != 0 {
			flags |= entryFlagTarget
		}
		dst = binary.AppendUvarint(dst, flags)
		if e.Target != 0 {
			dst = binary.AppendUvarint(dst, e.Target)
		}
	} else {
		dst = append(dst, entryFormatV1)
	}
	dst = binary.AppendUvarint(dst, e.Term)
	dst = binary.AppendVarint(dst, e.TS)
	dst = binary.AppendUvarint(dst, uint64(len(e.From)))
	dst = append(dst, e.From...)
	dst = binary.AppendUvarint(dst, uint64(len(e.CID)))
	dst = append(dst, e.CID...)
	return append(dst, e.Text...)
}

func entrySize(e *Entry) int {
	return 1 + 5*binary.MaxVarintLen64 + len(e.From) + len(e.CID) + len(e.Text)
}

func decodeEntry(seq uint64, v []byte) (Entry, error) {
	e := Entry{Seq: seq}
	if len(v) == 0 || (v[0] != entryFormatV1 && v[0] != entryFormatV2) {
		return e, fmt.Errorf("%w: message %d has format %v (this build reads %d and %d)", ErrCorrupt, seq, firstByte(v), entryFormatV1, entryFormatV2)
	}
	r := reader{b: v[1:]}
	if v[0] == entryFormatV2 {
		flags := r.uvarint()
		if flags&^(entryFlagDeleted|entryFlagTarget) != 0 {
			return e, fmt.Errorf("%w: message %d has unknown flags %#x", ErrCorrupt, seq, flags)
		}
		e.Deleted = flags&entryFlagDeleted != 0
		if flags&entryFlagTarget != 0 {
			e.Target = r.uvarint()
			if r.err == nil && (e.Target == 0 || e.Target >= seq) {
				return e, fmt.Errorf("%w: deletion %d targets seq %d (want 1 ≤ target < %d)", ErrCorrupt, seq, e.Target, seq)
			}
		}
	}
	e.Term = r.uvarint()
	e.TS = r.varint()
	e.From = r.str()
	e.CID = r.str()
	if r.err != nil {
		return e, fmt.Errorf("%w: message %d: %v", ErrCorrupt, seq, r.err)
	}
	e.Text = string(r.b)
	return e, nil
}

// encodeMeta encodes a room's metadata.
//
//	format(1) uvarint(len epoch) epoch uvarint(term) uvarint(promised)
//	uvarint(head) uvarint(oldest) uvarint(n) n × (uvarint(term) uvarint(seq))
func encodeMeta(dst []byte, m *RoomMeta) []byte {
	dst = append(dst, metaFormatV1)
	dst = binary.AppendUvarint(dst, uint64(len(m.Epoch)))
	dst = append(dst, m.Epoch...)
	for _, v := range []uint64{m.Term, m.Promised, m.Head, m.Oldest, uint64(len(m.Terms))} {
		dst = binary.AppendUvarint(dst, v)
	}
	for _, t := range m.Terms {
		dst = binary.AppendUvarint(dst, t.Term)
		dst = binary.AppendUvarint(dst, t.Seq)
	}
	return dst
}

func decodeMeta(v []byte) (RoomMeta, error) {
	var m RoomMeta
	if len(v) == 0 || v[0] != metaFormatV1 {
		return m, fmt.Errorf("metadata format %v (this build reads %d)", firstByte(v), metaFormatV1)
	}
	r := reader{b: v[1:]}
	m.Epoch = r.str()
	m.Term = r.uvarint()
	m.Promised = r.uvarint()
	m.Head = r.uvarint()
	m.Oldest = r.uvarint()
	n := r.uvarint()
	if r.err == nil && n > MaxTermHistory {
		return m, fmt.Errorf("%d term starts (at most %d)", n, MaxTermHistory)
	}
	if n > 0 {
		m.Terms = make([]TermStart, n)
		for i := range m.Terms {
			m.Terms[i] = TermStart{Term: r.uvarint(), Seq: r.uvarint()}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return m, r.err
	}
	return m, m.validate()
}

func firstByte(v []byte) any {
	if len(v) == 0 {
		return "none"
	}
	return v[0]
}

// reader decodes varints and length-prefixed strings, remembering the
// first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
