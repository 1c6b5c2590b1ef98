// Package roomlog is one copy of a room's log, as its owner or a replica
// keeps it: it assigns sequence numbers (on the owner), applies them (on a
// replica), remembers recent client message ids so a resend is answered with
// the original acknowledgement, and keeps the history.
//
// Every copy carries the ownership term of the owner whose log it follows
// (see chatd/owner for the fencing rule), and the first sequence number of
// each term it holds (Terms, Kafka's leader-epoch cache): two copies with
// the same term are prefixes of one owner's log, between copies of
// different terms the higher term holds every acknowledged message, and
// Match finds where a copy departs from another so only what differs is
// sent.
//
// A log lives in memory only (its ring is all the history kept, the
// newest Config.HistorySize messages) or on a Backing, the node's durable
// store (chatd/store): then every write goes to the store too, reads older
// than the ring come from it, and the ring is a cache of the newest
// messages. Writes to the store are durable later (group commit): an
// owner's own appends report it through Config.OnDurable, a replica's
// writes through their done callback.
//
// A Log is the unit that a cluster moves between nodes and replicates; it
// knows nothing about connections, which is the hub's business. It is not
// safe for concurrent use: its owner (a room's lock) serialises every call.
package roomlog

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ringchat/ringchat/chatd/dedupe"
	"github.com/ringchat/ringchat/chatd/history"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/store"
)

// TermStart records the first sequence number of a term in a copy.
type TermStart = store.TermStart

// Entry is one message with the term of the owner that sequenced it.
type Entry struct {
	Term uint64           `json:"term"`
	Msg  protocol.Message `json:"msg"`
}

// MaxTerms bounds the term starts a copy remembers (the store's bound).
const MaxTerms = store.MaxTermHistory

// Meta describes a copy: what Match compares and what a new copy starts
// from.
type Meta struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	// Term is the term of the owner whose log the copy follows.
	Term uint64 `json:"term"`
	// Head is the newest sequence number; Oldest the oldest one kept
	// (Head+1 when none is).
	Head   uint64      `json:"head"`
	Oldest uint64      `json:"oldest"`
	Terms  []TermStart `json:"terms,omitempty"`
	// Streamed is the copy's event stream cursor (chatd/eventstream): the
	// backend has every entry of Epoch up to it. It travels with the log
	// so a copy made from this one goes on from there.
	Streamed uint64 `json:"streamed,omitempty"`
}

// Log orders and stores the messages of one room.
type Log struct {
	room  string
	epoch string
	term  uint64
	terms []TermStart
	head  uint64
	// oldest is the oldest sequence number kept, in memory or on the
	// backing (whose retention may move it forward: see Oldest).
	oldest uint64
	// ring holds the newest messages: all the history in memory mode, a
	// cache of it on a backing.
	ring *history.Ring
	// streamed is the event stream cursor in epoch (see Streamed).
	streamed uint64
	// dedupe answers resends; only an owner's log keeps one (Promote).
	dedupe *dedupe.Window[protocol.Message]
	back   Backing
	// durable is the newest sequence number known durable here.
	durable uint64
	cfg     Config
}

// Backing is the durable store a log writes through, for one node: its
// methods are those of *store.Store (see there for the contract: writes are
// readable at once, durable when done is called, from the store's own
// goroutine).
type Backing interface {
	Append(room string, entries []store.Entry, done func(error)) error
	SetTerm(room string, term uint64, done func(error)) error
	Reset(room string, m store.RoomMeta, done func(error)) error
	TruncateAfter(room string, seq uint64, done func(error)) error
	Delete(room string, done func(error)) error
	Sync(done func(error)) error
	Meta(room string) (store.RoomMeta, bool)
	Read(room string, from uint64, limit int) (store.Page, error)
	ReadBefore(room string, before uint64, limit int) (store.Page, error)
	Last(room string, n int) (store.Page, error)
	Cursor(room string) (store.Cursor, bool)
	SetCursor(room string, c store.Cursor) error
}

// Config sizes a Log.
type Config struct {
	// HistorySize is the number of messages kept in memory: the whole
	// history without a backing, the newest of it with one.
	HistorySize int
	// DedupeWindow is the number of recent (sender, cid) pairs remembered
	// by an owner.
	DedupeWindow int
	// Backing, when set, is where the log is stored.
	Backing Backing
	// OnDurable, with a backing, is told when the owner's appends up to a
	// sequence number are durable (or failed): called from the store's
	// goroutine, never inside Append. Nil ignores it.
	OnDurable func(upTo uint64, err error)
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// ErrTooOld is returned by reads below the oldest message kept.
var ErrTooOld = errors.New("roomlog: messages older than the history kept")

func (c *Config) defaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HistorySize < 1 {
		c.HistorySize = 1
	}
}

// New starts the log of a room with a fresh epoch, empty, in memory. It is
// written to the backing at its first write.
func New(room string, cfg Config) *Log {
	cfg.defaults()
	return &Log{
		room:   room,
		epoch:  newEpoch(),
		oldest: 1,
		ring:   history.NewRing(cfg.HistorySize),
		back:   cfg.Backing,
		cfg:    cfg,
	}
}

// Load opens the copy of room the backing holds, with the newest
// HistorySize messages in memory. ok is false when the backing holds no
// copy of it (nothing, or only a promise).
func Load(room string, cfg Config) (l *Log, ok bool, err error) {
	cfg.defaults()
	if cfg.Backing == nil {
		return nil, false, nil
	}
	m, ok := cfg.Backing.Meta(room)
	if !ok || m.Epoch == "" {
		return nil, false, nil
	}
	l = &Log{room: room, epoch: m.Epoch, term: m.Term, terms: cloneTerms(m.Terms), head: m.Head, oldest: m.Oldest,
		ring: history.NewRing(cfg.HistorySize), back: cfg.Backing, durable: m.Head, cfg: cfg}
	if c, ok := cfg.Backing.Cursor(room); ok && c.Epoch == m.Epoch {
		l.streamed = c.Seq
	}
	page, err := cfg.Backing.Last(room, cfg.HistorySize)
	if err != nil {
		return nil, false, fmt.Errorf("load room %s: %w", room, err)
	}
	start := m.Head
	if len(page.Entries) > 0 {
		start = page.Entries[0].Seq - 1
	}
	l.ring.Restart(start)
	for _, e := range page.Entries {
		if err := l.ring.Append(l.message(e)); err != nil {
			return nil, false, fmt.Errorf("load room %s: %w", room, err)
		}
	}
	if l.ring.Head() != m.Head {
		return nil, false, fmt.Errorf("load room %s: messages end at %d, metadata head is %d", room, l.ring.Head(), m.Head)
	}
	return l, true, nil
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

// Head returns the sequence of the newest message.
func (l *Log) Head() uint64 { return l.head }

// Durable returns the newest sequence number known durable here (the head,
// without a backing).
func (l *Log) Durable() uint64 {
	if l.back == nil {
		return l.head
	}
	return l.durable
}

// Oldest returns the sequence of the oldest message kept (Head+1 when
// none is). With a backing, retention moves it forward in the background.
func (l *Log) Oldest() uint64 {
	if l.back != nil {
		if m, ok := l.back.Meta(l.room); ok && m.Epoch == l.epoch && m.Oldest > l.oldest {
			l.oldest = min(m.Oldest, l.head+1)
		}
		return l.oldest
	}
	return l.ring.Oldest()
}

// Meta describes the copy.
func (l *Log) Meta() Meta {
	return Meta{Room: l.room, Epoch: l.epoch, Term: l.term, Head: l.head, Oldest: l.Oldest(), Terms: cloneTerms(l.terms), Streamed: l.streamed}
}

// Streamed is the copy's event stream cursor: the backend has every entry
// of the current epoch up to it (0: none yet).
func (l *Log) Streamed() uint64 { return l.streamed }

// SetStreamed moves the event stream cursor forward to seq (a lower seq
// is ignored) and, with a backing, stores it (durable with the next group
// commit; a lost cursor only means entries sent again).
func (l *Log) SetStreamed(seq uint64) error {
	if seq <= l.streamed {
		return nil
	}
	l.streamed = seq
	if l.back != nil {
		if err := l.back.SetCursor(l.room, store.Cursor{Epoch: l.epoch, Seq: seq}); err != nil {
			return fmt.Errorf("room %s: %w", l.room, err)
		}
	}
	return nil
}

// AdoptStreamed takes another copy's cursor of epoch, if it is ahead of
// this copy's in the same epoch.
func (l *Log) AdoptStreamed(epoch string, seq uint64) error {
	if epoch != l.epoch {
		return nil
	}
	return l.SetStreamed(seq)
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

// termAt is the term of the message at seq, as the term starts tell (0 when
// they do not reach back that far).
func (l *Log) termAt(seq uint64) uint64 {
	for i := len(l.terms) - 1; i >= 0; i-- {
		if l.terms[i].Seq <= seq {
			return l.terms[i].Term
		}
	}
	return 0
}

// message builds the client frame of a stored entry.
func (l *Log) message(e store.Entry) protocol.Message {
	m := protocol.Message{Type: protocol.TypeMessage, Room: l.room, Seq: e.Seq, MID: l.epoch + "-" + strconv.FormatUint(e.Seq, 10), From: e.From, CID: e.CID, Text: e.Text, TS: e.TS, Deleted: e.Deleted, Target: e.Target}
	if e.Target != 0 {
		m.Type = protocol.TypeDeleted
	}
	return m
}

// Since returns the messages after seq for a client resuming in epoch, from
// memory. ok is false when the client cannot be brought up to date from
// what is in memory: the epoch differs or the gap is older than the ring.
func (l *Log) Since(epoch string, seq uint64) (msgs []protocol.Message, ok bool) {
	if epoch != l.epoch {
		return nil, false
	}
	l.Trim()
	return l.ring.Since(seq)
}

// Recent returns the messages in memory, oldest first.
func (l *Log) Recent() []protocol.Message {
	l.Trim()
	return l.ring.All()
}

// Trim drops from memory the messages the backing's retention removed, and
// reports whether it dropped any (the oldest kept moved).
func (l *Log) Trim() bool {
	if l.back == nil {
		return false
	}
	oldest := l.Oldest()
	if l.ring.Len() == 0 || l.ring.Oldest() >= oldest {
		return false
	}
	l.ring.DropBefore(oldest)
	return true
}

// Before pages back through history: up to limit messages below before (0:
// the newest), ascending, and whether older ones are kept. Pages the ring
// does not hold are read from the backing.
func (l *Log) Before(before uint64, limit int) ([]protocol.Message, bool, error) {
	if before == 0 || before > l.head+1 {
		before = l.head + 1
	}
	oldest := l.Oldest()
	if limit <= 0 || before <= oldest {
		return nil, false, nil
	}
	from := oldest
	if before-oldest > uint64(limit) {
		from = before - uint64(limit)
	}
	if l.back == nil || from >= l.ring.Oldest() {
		msgs, _ := l.ring.Before(before, limit)
		return msgs, from > oldest, nil
	}
	page, err := l.back.ReadBefore(l.room, before, limit)
	if err != nil {
		return nil, false, fmt.Errorf("room %s: read before %d: %w", l.room, before, err)
	}
	msgs := make([]protocol.Message, len(page.Entries))
	for i, e := range page.Entries {
		msgs[i] = l.message(e)
	}
	more := len(msgs) > 0 && msgs[0].Seq > page.Oldest
	return msgs, more, nil
}

// Read returns up to limit entries from seq from upwards, for sending a
// copy to another node: from memory when the ring holds them, else from the
// backing. It fails with ErrTooOld below the oldest message kept.
func (l *Log) Read(from uint64, limit int) ([]Entry, error) {
	if from > l.head || limit <= 0 {
		return nil, nil
	}
	if from < l.Oldest() {
		return nil, fmt.Errorf("room %s: read from %d, oldest kept %d: %w", l.room, from, l.Oldest(), ErrTooOld)
	}
	to := min(l.head, from+uint64(limit)-1)
	if from >= l.ring.Oldest() {
		out := make([]Entry, 0, to-from+1)
		for s := from; s <= to; s++ {
			m, _ := l.ring.At(s)
			out = append(out, Entry{Term: l.termAt(s), Msg: m})
		}
		return out, nil
	}
	if l.back == nil {
		return nil, fmt.Errorf("room %s: read from %d, oldest in memory %d: %w", l.room, from, l.ring.Oldest(), ErrTooOld)
	}
	page, err := l.back.Read(l.room, from, int(to-from+1))
	if err != nil {
		return nil, fmt.Errorf("room %s: read from %d: %w", l.room, from, err)
	}
	if page.TooOld {
		return nil, fmt.Errorf("room %s: read from %d, oldest kept %d: %w", l.room, from, page.Oldest, ErrTooOld)
	}
	out := make([]Entry, len(page.Entries))
	for i, e := range page.Entries {
		out[i] = Entry{Term: e.Term, Msg: l.message(e)}
	}
	return out, nil
}

// at returns the message at seq if it is kept (memory, then backing).
func (l *Log) at(seq uint64) (protocol.Message, bool) {
	if m, ok := l.ring.At(seq); ok {
		return m, true
	}
	if l.back == nil || seq < l.Oldest() || seq > l.head {
		return protocol.Message{}, false
	}
	page, err := l.back.Read(l.room, seq, 1)
	if err != nil || len(page.Entries) != 1 || page.Entries[0].Seq != seq {
		return protocol.Message{}, false
	}
	return l.message(page.Entries[0]), true
}

func cloneTerms(t []TermStart) []TermStart {
	if len(t) == 0 {
		return nil
	}
	return append([]TermStart(nil), t...)
}
