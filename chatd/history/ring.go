// Package history keeps the most recent messages of a room in memory, in a
// bounded ring, and answers the two questions the protocol asks of it: "what
// came after sequence N" (resume) and "what came before sequence N" (paging
// back).
package history

import (
	"fmt"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Ring holds the last Limit messages of one room in sequence order. It is not
// safe for concurrent use: a room serialises access to its ring.
//
// Sequences in a ring are gapless: Append only accepts head+1. That invariant
// is what lets Since and Before answer by index arithmetic instead of search.
type Ring struct {
	buf   []protocol.Message
	limit int
	start int    // index in buf of the oldest message
	n     int    // number of messages held
	head  uint64 // sequence of the newest message; 0 before the first
}

// NewRing returns a ring that keeps up to limit messages. The buffer grows on
// demand, so a room with three messages costs three slots, not limit.
func NewRing(limit int) *Ring {
	if limit < 1 {
		limit = 1
	}
	return &Ring{limit: limit}
}

// Limit reports how many messages the ring keeps at most.
func (r *Ring) Limit() int { return r.limit }

// Head returns the sequence of the newest message (0 when none was appended).
func (r *Ring) Head() uint64 { return r.head }

// Oldest returns the sequence of the oldest message kept, or Head()+1 when
// none is kept.
func (r *Ring) Oldest() uint64 { return r.head - uint64(r.n) + 1 }

// Len returns the number of messages kept.
func (r *Ring) Len() int { return r.n }

// Append adds the next message of the room. Its sequence must be Head()+1;
// anything else is a bug in the caller's sequencing and is refused.
func (r *Ring) Append(m protocol.Message) error {
	if m.Seq != r.head+1 {
		return fmt.Errorf("history: append seq %d after head %d breaks the sequence", m.Seq, r.head)
	}
	if len(r.buf) < r.limit {
		// Still growing: the ring has never wrapped, so start is 0.
		r.buf = append(r.buf, m)
		r.n++
	} else {
		end := (r.start + r.n) % r.limit
		r.buf[end] = m
		if r.n == r.limit {
			r.start = (r.start + 1) % r.limit
		} else {
			r.n++
		}
	}
	r.head = m.Seq
	return nil
}

// index is where the message with sequence seq, which must be kept, is in
// buf.
func (r *Ring) index(seq uint64) int {
	return (r.start + int(seq-r.Oldest())) % len(r.buf)
}

// at returns the message with sequence seq, which must be kept.
func (r *Ring) at(seq uint64) protocol.Message { return r.buf[r.index(seq)] }

// At returns the message with sequence seq, if the ring keeps it.
func (r *Ring) At(seq uint64) (protocol.Message, bool) {
	if r.n == 0 || seq < r.Oldest() || seq > r.head {
		return protocol.Message{}, false
	}
	return r.at(seq), true
}

// Redact marks the message at seq deleted and drops its text, if the ring
// keeps it (a deletion, the entry whose Target it is, is appended apart).
// It reports whether the ring held such a message.
func (r *Ring) Redact(seq uint64) bool {
	if r.n == 0 || seq < r.Oldest() || seq > r.head {
		return false
	}
	i := r.index(seq)
	if r.buf[i].Target != 0 {
		return false
	}
	r.buf[i].Deleted, r.buf[i].Text = true, ""
	return true
}

// Since returns every message with a sequence above seq, in order. ok is false
// when some of them are no longer kept (the gap is older than the history),
// in which case nothing is returned.
func (r *Ring) Since(seq uint64) (msgs []protocol.Message, ok bool) {
	if seq >= r.head {
		return nil, true
	}
	if seq+1 < r.Oldest() {
		return nil, false
	}
	out := make([]protocol.Message, 0, r.head-seq)
	for s := seq + 1; s <= r.head; s++ {
		out = append(out, r.at(s))
	}
	return out, true
}

// Before returns up to limit messages with a sequence below before (0 means
// "below head+1", i.e. the newest), in ascending order, and whether older
// messages are still kept.
func (r *Ring) Before(before uint64, limit int) (msgs []protocol.Message, more bool) {
	if before == 0 || before > r.head+1 {
		before = r.head + 1
	}
	oldest := r.Oldest()
	if r.n == 0 || before <= oldest || limit <= 0 {
		return nil, false
	}
	from := oldest
	if before-oldest > uint64(limit) {
		from = before - uint64(limit)
	}
	out := make([]protocol.Message, 0, before-from)
	for s := from; s < before; s++ {
		out = append(out, r.at(s))
	}
	return out, from > oldest
}

// DropBefore forgets the messages below seq (retention removed them
// elsewhere): Oldest becomes at least seq.
func (r *Ring) DropBefore(seq uint64) {
	for r.n > 0 && r.Oldest() < seq {
		var zero protocol.Message
		r.buf[r.start] = zero
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
	if r.n == 0 {
		r.start = 0
		r.buf = r.buf[:0]
	}
}

// Restart empties the ring and makes head the sequence of the last message
// seen, so that the next Append must be head+1. A node that takes over a
// room from a snapshot whose oldest kept message is not 1 starts this way.
func (r *Ring) Restart(head uint64) {
	clear(r.buf)
	r.buf, r.start, r.n, r.head = r.buf[:0], 0, 0, head
}

// All returns every kept message in order.
func (r *Ring) All() []protocol.Message {
	msgs, _ := r.Since(r.Oldest() - 1)
	return msgs
}
