package deliverycheck

import (
	"fmt"
	"time"
)

// content is what a sequence number of a room carries: who sent it, under
// which client id, and its text. Two different contents at one (room,
// epoch, seq) are a conflict.
type content struct {
	From, CID, Text string
}

func (c content) String() string { return fmt.Sprintf("%s/%s %q", c.From, c.CID, c.Text) }

// slotKey names one sequence number of one incarnation of a room.
type slotKey struct {
	room, epoch string
	seq         uint64
}

func (s slotKey) String() string {
	return fmt.Sprintf("room %s seq %d (epoch %s)", s.room, s.seq, s.epoch)
}

// cidKey names one message of one incarnation of a room by its sender and
// client id.
type cidKey struct {
	room, epoch, from, cid string
}

// epochKey names one incarnation of a room.
type epochKey struct{ room, epoch string }

// slot is the first content seen at a sequence number, by whom, and the
// other contents seen there since.
type slot struct {
	first   content
	firstBy string
	others  map[content]string
}

// ackRec is one ack a publisher received.
type ackRec struct {
	at        time.Time
	actor     string
	url       string
	key       slotKey
	c         content
	duplicate bool
}

// epochSeen is an incarnation of a room, in the order clients saw them.
type epochSeen struct {
	epoch string
	at    time.Time
}

// restart is a client being told that a room started again under a new
// epoch.
type restart struct {
	room, from, to string
	at             time.Time
	by             string
}

// ledger is everything the clients recorded, across clients; it is
// guarded by MultiRoom.mu.
type ledger struct {
	slots map[slotKey]*slot
	acks  []ackRec
	// roomAcks counts non-duplicate acks per room, for WaitProgress.
	roomAcks map[string]int
	// acked is the set of distinct messages acknowledged, by room, sender
	// and client id (a resend acknowledged as a duplicate is the same one).
	acked map[[3]string]bool
	// ackSeq and deliveredSeq hold, per message, the seq of its first ack
	// and first delivery: another seq later is the message stored twice.
	ackSeq       map[cidKey]uint64
	deliveredSeq map[cidKey]uint64
	// storedTwice holds the messages already reported delivered under a
	// second seq, so that each counts once, not once per subscriber.
	storedTwice map[[2]any]bool
	// early holds the acks counted by noteEarlyAck and not recorded yet.
	early    map[string]bool
	maxSeq   map[epochKey]uint64
	epochs   map[string][]epochSeen
	restarts []restart
	// gaps counts joined frames with recovered:false in the same epoch.
	gaps int
	// refusals counts the errors answered to sends and joins that the
	// clients retried, by code.
	refusals map[string]int
	find     findings
}

func newLedger() *ledger {
	return &ledger{slots: map[slotKey]*slot{}, roomAcks: map[string]int{}, acked: map[[3]string]bool{},
		ackSeq: map[cidKey]uint64{}, deliveredSeq: map[cidKey]uint64{}, storedTwice: map[[2]any]bool{}, early: map[string]bool{}, maxSeq: map[epochKey]uint64{},
		epochs: map[string][]epochSeen{}, refusals: map[string]int{}, find: newFindings()}
}

// noteSlot records that who saw c at key, and reports a conflict the first
// time another content shows up there.
func (l *ledger) noteSlot(key slotKey, c content, who string) {
	s, ok := l.slots[key]
	if !ok {
		l.slots[key] = &slot{first: c, firstBy: who}
		return
	}
	if s.first == c {
		return
	}
	if s.others == nil {
		s.others = map[content]string{}
	}
	if _, seen := s.others[c]; !seen {
		s.others[c] = who
		l.find.example(CheckConflict, fmt.Sprintf("%s: %s %s, but %s %s", key, s.firstBy, s.first, who, c))
	}
}

// noteEpoch records an incarnation of room the first time a client sees it.
func (l *ledger) noteEpoch(room, epoch string, at time.Time) {
	for _, e := range l.epochs[room] {
		if e.epoch == epoch {
			return
		}
	}
	l.epochs[room] = append(l.epochs[room], epochSeen{epoch: epoch, at: at})
}

// latestEpoch is the incarnation of room seen last ("" if none).
func (l *ledger) latestEpoch(room string) string {
	es := l.epochs[room]
	if len(es) == 0 {
		return ""
	}
	return es[len(es)-1].epoch
}

// maxAcked is the highest acknowledged seq of one incarnation of room.
func (l *ledger) maxAcked(room, epoch string) uint64 { return l.maxSeq[epochKey{room, epoch}] }

// ackedMessages is the number of distinct messages acknowledged.
func (l *ledger) ackedMessages() int { return len(l.acked) }

// noteRestart records that by was told room restarted from epoch from to
// epoch to; the analysis counts what the old incarnation took with it.
func (l *ledger) noteRestart(room, from, to string, at time.Time, by string) {
	for _, r := range l.restarts {
		if r.room == room && r.from == from && r.to == to {
			return
		}
	}
	l.restarts = append(l.restarts, restart{room: room, from: from, to: to, at: at, by: by})
}

// noteDelivered records the seq a message was delivered at, and reports a
// message stored twice (delivered under two seqs).
func (l *ledger) noteDelivered(key slotKey, c content, who string) {
	ck := cidKey{key.room, key.epoch, c.From, c.CID}
	prev, ok := l.deliveredSeq[ck]
	if !ok {
		l.deliveredSeq[ck] = key.seq
		return
	}
	if twice := [2]any{ck, key.seq}; prev != key.seq && !l.storedTwice[twice] {
		l.storedTwice[twice] = true
		l.find.example(CheckDuplicated, fmt.Sprintf("%s got %s at seq %d and again at seq %d of room %s (epoch %s): stored twice", who, c, prev, key.seq, key.room, key.epoch))
	}
}

// noteEarlyAck counts an ack that came before its message right away (for
// WaitProgress and the count of messages acknowledged); noteAck records it
// in full once its epoch is known.
func (l *ledger) noteEarlyAck(r ackRec) {
	l.acked[[3]string{r.key.room, r.c.From, r.c.CID}] = true
	l.roomAcks[r.key.room]++
	l.early[r.key.room+"\x00"+r.c.CID] = true
}

// noteAck records an ack (received on node) and checks it against the
// seqs and contents seen.
func (l *ledger) noteAck(r ackRec, node string) {
	l.acks = append(l.acks, r)
	l.acked[[3]string{r.key.room, r.c.From, r.c.CID}] = true
	if early := r.key.room + "\x00" + r.c.CID; l.early[early] {
		delete(l.early, early) // counted already
	} else if !r.duplicate {
		l.roomAcks[r.key.room]++
	}
	ek := epochKey{r.key.room, r.key.epoch}
	l.maxSeq[ek] = max(l.maxSeq[ek], r.key.seq)
	who := fmt.Sprintf("acked to %s on %s as", r.actor, node)
	if r.duplicate {
		who = fmt.Sprintf("acked (duplicate) to %s on %s as", r.actor, node)
	}
	l.noteSlot(r.key, r.c, who)
	ck := cidKey{r.key.room, r.key.epoch, r.c.From, r.c.CID}
	if prev, ok := l.ackSeq[ck]; !ok {
		l.ackSeq[ck] = r.key.seq
	} else if prev != r.key.seq {
		l.find.example(CheckConflict, fmt.Sprintf("%s: %s acked at seq %d and again at seq %d of room %s (epoch %s)", r.actor, r.c.CID, prev, r.key.seq, r.key.room, r.key.epoch))
	}
}
