package roomlog

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/ringchat/ringchat/chatd/dedupe"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/store"
)

// Writes. An owner appends (Append) in its term; a replica follows its
// owner (Apply one message, AppendEntries a chunk, TruncateAfter where it
// diverged, Reset to start over), and so does a node that fetches a copy.
// Every replica write takes a done callback that reports durability: with a
// backing it runs later, on the store's goroutine; without one it runs
// before the write returns. A write that returns an error wrote nothing and
// never calls done.

// ErrGap is returned when a replicated message or chunk does not follow the
// copy's head: the replica missed something and needs a sync.
var ErrGap = errors.New("roomlog: replicated message does not follow the head")

// ErrConflict is returned by Apply when the copy already holds another
// message at the replicated message's sequence number. Within one epoch and
// term that cannot happen unless two owners wrote the room at once, which
// the fencing rule exists to prevent: it is refused, loudly, never
// overwritten.
var ErrConflict = errors.New("roomlog: another message already holds this sequence number")

// Promote makes the copy an owner's: it builds the dedupe window from the
// newest DedupeWindow messages, so resends of messages the previous owner
// acknowledged are answered with their original ack.
func (l *Log) Promote() error {
	l.dedupe = dedupe.NewWindow[protocol.Message](l.cfg.DedupeWindow)
	n := min(uint64(l.cfg.DedupeWindow), l.head-l.Oldest()+1)
	if l.head+1 == l.Oldest() || n == 0 {
		return nil
	}
	entries, err := l.Read(l.head-n+1, int(n))
	if err != nil {
		return fmt.Errorf("room %s: rebuild the dedupe window: %w", l.room, err)
	}
	for _, e := range entries {
		l.remember(e.Msg)
	}
	return nil
}

// remember puts m's (sender, cid) in the dedupe window. The entry only
// needs what an ack carries; dropping the text keeps the window cheap.
func (l *Log) remember(m protocol.Message) {
	if l.dedupe == nil || m.Target != 0 {
		return // a deletion has no client id to resend
	}
	ackOnly := m
	ackOnly.Text = ""
	l.dedupe.Put(dedupe.Key{Sender: m.From, ID: m.CID}, ackOnly)
}

// SetTerm records that the copy now follows the log of an owner of term t
// (a new owner taking the room over, or a replica synced by one). Terms
// never go back.
func (l *Log) SetTerm(t uint64, done func(error)) error {
	if t <= l.term {
		return callDone(done)
	}
	if l.back != nil {
		if err := l.ensureStored(); err != nil {
			return err
		}
		if err := l.back.SetTerm(l.room, t, done); err != nil {
			return fmt.Errorf("room %s: set term %d: %w", l.room, t, err)
		}
		l.term = t
		return nil
	}
	l.term = t
	return callDone(done)
}

// ensureStored writes a new, empty log to the backing before its first
// write, so the store knows its epoch.
func (l *Log) ensureStored() error {
	if m, ok := l.back.Meta(l.room); ok && m.Epoch == l.epoch {
		return nil
	}
	err := l.back.Reset(l.room, store.RoomMeta{Epoch: l.epoch, Term: l.term, Head: l.head, Oldest: l.head + 1, Terms: cloneTerms(l.terms)}, nil)
	if err != nil {
		return fmt.Errorf("room %s: store the new log: %w", l.room, err)
	}
	return nil
}

// Append sequences a new message from sender with client id cid, in the
// copy's term (the owner's). When the same sender already sent cid within
// the dedupe window, it returns the original message and duplicate=true,
// and stores nothing. With a backing, the message is durable once
// Config.OnDurable reports its sequence number; when the backing refuses
// the write (a full disk, a failed store), Append returns its error and
// nothing is sequenced.
func (l *Log) Append(sender, cid, text string) (msg protocol.Message, duplicate bool, err error) {
	if l.dedupe == nil {
		l.dedupe = dedupe.NewWindow[protocol.Message](l.cfg.DedupeWindow)
	}
	if prev, ok := l.dedupe.Get(dedupe.Key{Sender: sender, ID: cid}); ok {
		return prev, true, nil
	}
	msg = l.nextEntry(protocol.TypeMessage, sender)
	msg.CID, msg.Text = cid, text
	if err := l.appendOwn(msg); err != nil {
		return protocol.Message{}, false, err
	}
	l.remember(msg)
	return msg, false, nil
}

// nextEntry is the frame of the log's next entry, of type typ from
// sender: its seq, id and time.
func (l *Log) nextEntry(typ, sender string) protocol.Message {
	seq := l.head + 1
	return protocol.Message{
		Type: typ,
		Room: l.room,
		Seq:  seq,
		MID:  l.epoch + "-" + strconv.FormatUint(seq, 10),
		From: sender,
		TS:   l.cfg.Now().UnixMilli(),
	}
}

// appendOwn writes msg, the next entry, in the copy's term: to the backing
// (durable once Config.OnDurable reports its seq) and to memory. When the
// backing refuses it, nothing is sequenced.
func (l *Log) appendOwn(msg protocol.Message) error {
	if l.back != nil {
		if err := l.ensureStored(); err != nil {
			return err
		}
		onDurable, seq := l.cfg.OnDurable, msg.Seq
		entry := []store.Entry{storeEntry(Entry{Term: l.term, Msg: msg})}
		if err := l.back.Append(l.room, entry, func(err error) {
			if onDurable != nil {
				onDurable(seq, err)
			}
		}); err != nil {
			return fmt.Errorf("room %s: store seq %d: %w", l.room, seq, err)
		}
	}
	l.push(l.term, msg)
	return nil
}

// ErrNotDeletable is returned by Delete for a seq that holds no message
// that can be deleted: not kept (removed by retention, or not written
// yet), already deleted, or itself a deletion.
var ErrNotDeletable = errors.New("roomlog: no message to delete at this seq")

// ErrAlreadyDeleted is the ErrNotDeletable of a message deleted before: a
// retried deletion meets it, and may count it as done.
var ErrAlreadyDeleted = fmt.Errorf("%w: the message is already deleted", ErrNotDeletable)

// Delete appends a deletion of the message at target, by the user by (a
// moderator's name or the system's), in the copy's term, and removes that
// message's text from memory and from the backing in the same write. The
// deletion is the returned entry, with the next seq; with a backing it is
// durable once Config.OnDurable reports that seq.
func (l *Log) Delete(by string, target uint64) (protocol.Message, error) {
	held, ok := l.at(target)
	switch {
	case !ok:
		return protocol.Message{}, fmt.Errorf("%w: room %s keeps seqs %d-%d, not %d", ErrNotDeletable, l.room, l.Oldest(), l.head, target)
	case held.Target != 0:
		return protocol.Message{}, fmt.Errorf("%w: room %s seq %d is a deletion", ErrNotDeletable, l.room, target)
	case held.Deleted:
		return protocol.Message{}, fmt.Errorf("%w: room %s seq %d", ErrAlreadyDeleted, l.room, target)
	}
	msg := l.nextEntry(protocol.TypeDeleted, by)
	msg.Target = target
	if err := l.appendOwn(msg); err != nil {
		return protocol.Message{}, fmt.Errorf("delete seq %d: %w", target, err)
	}
	l.ring.Redact(target)
	return msg, nil
}

// Sync calls done once every write made so far is durable (at once without
// a backing).
func (l *Log) Sync(done func(error)) error {
	if l.back == nil {
		return callDone(done)
	}
	if err := l.back.Sync(done); err != nil {
		return fmt.Errorf("room %s: sync: %w", l.room, err)
	}
	return nil
}

// SetOnDurable replaces Config.OnDurable (an owner sets it once the room
// that owns the log exists).
func (l *Log) SetOnDurable(f func(upTo uint64, err error)) { l.cfg.OnDurable = f }

// MarkDurable records that the copy is durable up to seq (the owner calls
// it from its Config.OnDurable, under the room's lock).
func (l *Log) MarkDurable(upTo uint64) {
	l.durable = max(l.durable, min(upTo, l.head))
}

// push adds the next message to memory and to the term starts.
func (l *Log) push(term uint64, m protocol.Message) {
	if err := l.ring.Append(m); err != nil {
		// Callers check the sequence first; a panic here means the
		// invariant was broken elsewhere.
		panic(err)
	}
	if len(l.terms) == 0 || l.terms[len(l.terms)-1].Term < term {
		l.terms = append(l.terms, TermStart{Term: term, Seq: m.Seq})
		if len(l.terms) > MaxTerms {
			l.terms = append([]TermStart(nil), l.terms[len(l.terms)-MaxTerms:]...)
		}
	}
	l.term = max(l.term, term)
	l.head = m.Seq
	if l.back == nil {
		l.durable = l.head
	}
}

// Apply appends one message that the owner of term sequenced. Replaying a
// message already applied is a no-op (done reports it once it is durable);
// a different message at a sequence the copy holds is refused with
// ErrConflict; one that does not follow the head with ErrGap.
func (l *Log) Apply(term uint64, m protocol.Message, done func(error)) error {
	if m.Seq <= l.head {
		if held, ok := l.at(m.Seq); ok && !sameMessage(held, m) {
			return fmt.Errorf("%w: room %s seq %d holds %s/%s, replicated %s/%s", ErrConflict, l.room, m.Seq, held.From, held.CID, m.From, m.CID)
		}
		if l.back != nil && m.Seq > l.durable {
			return l.back.Sync(done)
		}
		return callDone(done)
	}
	return l.AppendEntries([]Entry{{Term: term, Msg: m}}, done)
}

// AppendEntries appends a run of messages (a chunk of another copy) that
// must follow the head without a gap.
func (l *Log) AppendEntries(entries []Entry, done func(error)) error {
	if len(entries) == 0 {
		return callDone(done)
	}
	for i, e := range entries {
		if e.Msg.Seq != l.head+1+uint64(i) {
			return fmt.Errorf("%w: seq %d after head %d in room %s", ErrGap, e.Msg.Seq, l.head+uint64(i), l.room)
		}
		if i > 0 && e.Term < entries[i-1].Term {
			return fmt.Errorf("room %s: seq %d has term %d after term %d", l.room, e.Msg.Seq, e.Term, entries[i-1].Term)
		}
	}
	if last := l.lastTerm(); entries[0].Term < last {
		return fmt.Errorf("room %s: seq %d has term %d after term %d", l.room, entries[0].Msg.Seq, entries[0].Term, last)
	}
	if l.back != nil {
		if err := l.ensureStored(); err != nil {
			return err
		}
		se := make([]store.Entry, len(entries))
		for i, e := range entries {
			se[i] = storeEntry(e)
		}
		last := entries[len(entries)-1].Msg.Seq
		if err := l.back.Append(l.room, se, done); err != nil {
			return fmt.Errorf("room %s: store seqs %d-%d: %w", l.room, entries[0].Msg.Seq, last, err)
		}
		done = nil
	}
	for _, e := range entries {
		m := e.Msg
		m.Type, m.Room = protocol.TypeMessage, l.room
		if m.Target != 0 {
			m.Type, m.Deleted, m.Text = protocol.TypeDeleted, false, ""
		} else if m.Deleted {
			m.Text = ""
		}
		m.MID = l.epoch + "-" + strconv.FormatUint(m.Seq, 10)
		l.push(e.Term, m)
		l.remember(m)
		if m.Target != 0 {
			l.ring.Redact(m.Target)
		}
	}
	return callDone(done)
}

// storeEntry is the stored form of an entry (the backing redacts a
// deletion's target itself).
func storeEntry(e Entry) store.Entry {
	se := store.Entry{Seq: e.Msg.Seq, Term: e.Term, From: e.Msg.From, CID: e.Msg.CID, Text: e.Msg.Text, TS: e.Msg.TS, Deleted: e.Msg.Deleted, Target: e.Msg.Target}
	if se.Target != 0 {
		se.Deleted, se.Text, se.CID = false, "", ""
	} else if se.Deleted {
		se.Text = ""
	}
	return se
}

// lastTerm is the term of the newest message (0 when none).
func (l *Log) lastTerm() uint64 {
	if len(l.terms) == 0 {
		return 0
	}
	return l.terms[len(l.terms)-1].Term
}

// TruncateAfter drops the messages after seq: the copy diverged there from
// the log it follows (they were never acknowledged).
func (l *Log) TruncateAfter(seq uint64, done func(error)) error {
	if seq >= l.head {
		return callDone(done)
	}
	if seq+1 < l.Oldest() {
		return fmt.Errorf("room %s: truncate after %d, below the oldest kept %d: %w", l.room, seq, l.Oldest(), ErrTooOld)
	}
	if l.back != nil {
		if err := l.ensureStored(); err != nil {
			return err
		}
		if err := l.back.TruncateAfter(l.room, seq, done); err != nil {
			return fmt.Errorf("room %s: truncate after %d: %w", l.room, seq, err)
		}
		done = nil
	}
	kept := l.ring.All()
	l.ring.Restart(min(l.ring.Oldest()-1, seq))
	for _, m := range kept {
		if m.Seq > seq {
			break
		}
		if m.Seq > l.ring.Head() {
			_ = l.ring.Append(m)
		}
	}
	for len(l.terms) > 0 && l.terms[len(l.terms)-1].Seq > seq {
		l.terms = l.terms[:len(l.terms)-1]
	}
	l.head = seq
	l.durable = min(l.durable, seq)
	if l.dedupe != nil {
		l.dedupe = nil
		if err := l.Promote(); err != nil {
			return err
		}
	}
	return callDone(done)
}

// Reset empties the copy and starts it at m: epoch, term and term starts of
// the log it will follow, head m.Head (the next message is m.Head+1). A
// node that cannot bridge its copy to another's (another epoch, or a gap
// older than the other keeps) starts over this way, then appends.
func (l *Log) Reset(m Meta, done func(error)) error {
	// Term starts past the next message describe messages the copy does
	// not hold yet: they come back with those messages.
	terms := cloneTerms(m.Terms)
	for len(terms) > 0 && terms[len(terms)-1].Seq > m.Head+1 {
		terms = terms[:len(terms)-1]
	}
	m.Terms = terms
	kept := uint64(0) // the cursor survives a reset within its epoch
	if m.Epoch == l.epoch {
		kept = l.streamed
	}
	if l.back != nil {
		sm := store.RoomMeta{Epoch: m.Epoch, Term: m.Term, Head: m.Head, Oldest: m.Head + 1, Terms: cloneTerms(m.Terms)}
		if err := l.back.Reset(l.room, sm, done); err != nil {
			return fmt.Errorf("room %s: reset to epoch %s at %d: %w", l.room, m.Epoch, m.Head, err)
		}
		done = nil
	}
	l.epoch, l.term, l.terms = m.Epoch, m.Term, m.Terms
	l.head, l.oldest, l.durable = m.Head, m.Head+1, m.Head
	l.streamed = kept
	if err := l.SetStreamed(m.Streamed); err != nil {
		return err
	}
	l.ring.Restart(m.Head)
	if l.dedupe != nil {
		l.dedupe = dedupe.NewWindow[protocol.Message](l.cfg.DedupeWindow)
	}
	return callDone(done)
}

// Drop deletes the copy from the backing (nothing to do in memory).
func (l *Log) Drop(done func(error)) error {
	if l.back == nil {
		return callDone(done)
	}
	if err := l.back.Delete(l.room, done); err != nil {
		return fmt.Errorf("room %s: delete: %w", l.room, err)
	}
	return nil
}

// sameMessage reports whether two copies of a sequence number are the same
// message: same sender, client id, text and time, and the same target for
// a deletion. A copy whose text a deletion removed is the same message as
// one that still has it (the deletion may not have reached that copy yet).
func sameMessage(a, b protocol.Message) bool {
	same := a.From == b.From && a.CID == b.CID && a.TS == b.TS && a.Target == b.Target
	if a.Deleted || b.Deleted {
		return same
	}
	return same && a.Text == b.Text
}

func callDone(done func(error)) error {
	if done != nil {
		done(nil)
	}
	return nil
}
