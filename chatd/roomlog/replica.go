package roomlog

import (
	"errors"
	"fmt"

	"github.com/ringchat/ringchat/chatd/dedupe"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// ErrGap is returned by Apply when a replicated message does not follow the
// log's head: the replica missed something and needs a snapshot.
var ErrGap = errors.New("roomlog: replicated message does not follow the head")

// ErrConflict is returned by Apply when the copy already holds another
// message at the replicated message's sequence number. Within one epoch and
// term that cannot happen unless two owners wrote the room at once, which
// the fencing rule exists to prevent: it is refused, loudly, never
// overwritten.
var ErrConflict = errors.New("roomlog: another message already holds this sequence number")

// Apply appends a message that another node (the room's owner) sequenced.
// Replaying a message already applied is a no-op, so a retried replication is
// harmless; a different message at a sequence the copy holds is refused
// with ErrConflict. The dedupe window learns the message's (sender, cid), so
// a replica that becomes owner still answers resends with the original ack.
func (l *Log) Apply(m protocol.Message) error {
	if m.Seq <= l.ring.Head() {
		if held, ok := l.ring.At(m.Seq); ok && !sameMessage(held, m) {
			return fmt.Errorf("%w: room %s seq %d holds %s/%s, replicated %s/%s", ErrConflict, l.room, m.Seq, held.From, held.CID, m.From, m.CID)
		}
		return nil
	}
	if m.Seq != l.ring.Head()+1 {
		return fmt.Errorf("%w: seq %d after head %d in room %s", ErrGap, m.Seq, l.ring.Head(), l.room)
	}
	if err := l.ring.Append(m); err != nil {
		return err
	}
	ackOnly := m
	ackOnly.Text = ""
	l.dedupe.Put(dedupe.Key{Sender: m.From, ID: m.CID}, ackOnly)
	return nil
}

// sameMessage reports whether two copies of a sequence number are the same
// message: same id, sender, client id, text and time.
func sameMessage(a, b protocol.Message) bool {
	return a.MID == b.MID && a.From == b.From && a.CID == b.CID && a.Text == b.Text && a.TS == b.TS
}

// Snapshot is everything a node needs to carry on a room's log: its
// incarnation, the term of the owner whose log it is, its head and the
// messages kept.
type Snapshot struct {
	Room     string             `json:"room"`
	Epoch    string             `json:"epoch"`
	Term     uint64             `json:"term,omitempty"`
	Head     uint64             `json:"head"`
	Messages []protocol.Message `json:"messages,omitempty"`
}

// Snapshot copies the log's state.
func (l *Log) Snapshot() Snapshot {
	return Snapshot{Room: l.room, Epoch: l.epoch, Term: l.term, Head: l.ring.Head(), Messages: l.ring.All()}
}

// Restore builds a log from a snapshot. The dedupe window is rebuilt from the
// kept messages, so it covers at most the history size.
func Restore(s Snapshot, cfg Config) (*Log, error) {
	l := New(s.Room, cfg)
	l.epoch = s.Epoch
	l.term = s.Term
	start := s.Head
	if len(s.Messages) > 0 {
		start = s.Messages[0].Seq - 1
	}
	l.ring.Restart(start)
	for _, m := range s.Messages {
		if err := l.Apply(m); err != nil {
			return nil, fmt.Errorf("restore room %s: %w", s.Room, err)
		}
	}
	if l.ring.Head() != s.Head {
		return nil, fmt.Errorf("restore room %s: messages end at %d, snapshot head is %d", s.Room, l.ring.Head(), s.Head)
	}
	return l, nil
}
