// Package roomlog is one copy of a room's log, as its owner or a replica
// keeps it: it assigns sequence numbers (on the owner), applies them (on a
// replica), remembers recent client message ids so a resend is answered with
// the original acknowledgement, and keeps the history.
//
// Every copy carries the ownership term of the owner whose log it follows
// (see chatd/owner for the fencing rule): two copies with the same term are
// prefixes of one owner's log, and between copies of different terms the
// higher term holds every acknowledged message. A Log is the unit that a
// cluster moves between nodes and replicates; it knows nothing about
// connections, which is the hub's business.
package roomlog

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"time"

	"github.com/ringchat/ringchat/chatd/dedupe"
	"github.com/ringchat/ringchat/chatd/history"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Log orders and stores the messages of one room. It is not safe for
// concurrent use; the room that owns it holds its lock around every call.
type Log struct {
	room  string
	epoch string
	// term is the ownership term of the owner whose log this copy follows.
	term    uint64
	ring    *history.Ring
	dedupe  *dedupe.Window[protocol.Message]
	nowFunc func() time.Time
}

// Config sizes a Log.
type Config struct {
	// HistorySize is the number of messages kept for resume and paging.
	HistorySize int
	// DedupeWindow is the number of recent (sender, cid) pairs remembered.
	DedupeWindow int
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// New starts the log of a room with a fresh epoch. The epoch changes whenever
// a room is recreated after being forgotten, which is how a resuming client
// learns that sequence numbers started over.
func New(room string, cfg Config) *Log {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Log{
		room:    room,
		epoch:   newEpoch(),
		ring:    history.NewRing(cfg.HistorySize),
		dedupe:  dedupe.NewWindow[protocol.Message](cfg.DedupeWindow),
		nowFunc: now,
	}
}

var epochEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newEpoch() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	return epochEncoding.EncodeToString(b[:])
}

// Room returns the room name.
func (l *Log) Room() string { return l.room }

// Epoch identifies this incarnation of the room's sequence numbers.
func (l *Log) Epoch() string { return l.epoch }

// Term is the ownership term of the owner whose log this copy follows.
func (l *Log) Term() uint64 { return l.term }

// SetTerm records that the copy now follows the log of an owner of term t,
// which a new owner does when it takes the room over. Terms never go back.
func (l *Log) SetTerm(t uint64) {
	if t > l.term {
		l.term = t
	}
}

// Newer reports whether copy a holds a newer log than copy b: a higher term
// wins (its owner started from a copy holding every acknowledged message,
// then went on), and within a term the longer copy wins (both are prefixes
// of the same owner's log). It is Raft's "more up-to-date" rule, with the
// copy's term in place of the last entry's.
func Newer(aTerm, aHead, bTerm, bHead uint64) bool {
	if aTerm != bTerm {
		return aTerm > bTerm
	}
	return aHead > bHead
}

// Head returns the sequence of the newest message.
func (l *Log) Head() uint64 { return l.ring.Head() }

// Oldest returns the sequence of the oldest message kept.
func (l *Log) Oldest() uint64 { return l.ring.Oldest() }

// Append sequences a new message from sender with client id cid. When the
// same sender already sent cid within the dedupe window, it returns the
// original message and duplicate=true, and stores nothing.
func (l *Log) Append(sender, cid, text string) (msg protocol.Message, duplicate bool) {
	if prev, ok := l.dedupe.Get(dedupe.Key{Sender: sender, ID: cid}); ok {
		return prev, true
	}
	seq := l.ring.Head() + 1
	msg = protocol.Message{
		Type: protocol.TypeMessage,
		Room: l.room,
		Seq:  seq,
		MID:  l.epoch + "-" + strconv.FormatUint(seq, 10),
		From: sender,
		CID:  cid,
		Text: text,
		TS:   l.nowFunc().UnixMilli(),
	}
	if err := l.ring.Append(msg); err != nil {
		// The log computes seq from the ring's own head, so this cannot
		// happen; a panic here means the invariant was broken elsewhere.
		panic(err)
	}
	// The dedupe entry only needs what an ack carries; dropping the text keeps
	// the window cheap.
	ackOnly := msg
	ackOnly.Text = ""
	l.dedupe.Put(dedupe.Key{Sender: sender, ID: cid}, ackOnly)
	return msg, false
}

// Since returns the messages after seq for a client resuming in epoch. ok is
// false when the client cannot be brought up to date from what is kept: the
// epoch differs or the gap is older than the history.
func (l *Log) Since(epoch string, seq uint64) (msgs []protocol.Message, ok bool) {
	if epoch != l.epoch {
		return nil, false
	}
	return l.ring.Since(seq)
}

// Before pages back through history; see history.Ring.Before.
func (l *Log) Before(before uint64, limit int) ([]protocol.Message, bool) {
	return l.ring.Before(before, limit)
}
