package moderation

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/backoff"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Hub is what a Follower needs of the node's hub: to subscribe to Room
// like a client, and to act on the local connections a new ban concerns.
type Hub interface {
	Join(c hub.Conn, req hub.JoinRequest)
	Kick(room, user, reason string) int
	DisconnectUser(user string, code int, reason string) int
}

// History reads pages of a room from its owner (the cluster node).
type History interface {
	History(room string, before uint64, limit int, reply func(protocol.HistoryPage, error))
}

// pageSize is the page a Follower reads Room's log with.
const pageSize = protocol.MaxHistoryReq

// joinID marks the Follower's own join requests.
const joinID = "moderation"

// CheckInterval is how often a Follower compares its copy with the log's
// owner (one history page of one message) and reads the log again when it
// is behind. Live entries normally arrive at once; this bounds how long a
// node can miss some when a restart or a move of the room left its
// subscription on a copy that did not have them.
const CheckInterval = 5 * time.Second

// Follower keeps a State current with Room's log. It is a hub connection
// of its own (a subscriber of Room like any client's): Enqueue only queues
// frames, and Run, its one goroutine, reads them, loads the whole log
// through History when it joins or learns of a gap, applies new entries
// in order and enforces new bans on this node's connections.
type Follower struct {
	state   *State
	hub     Hub
	history History
	log     *slog.Logger

	mu    sync.Mutex
	queue [][]byte
	wake  chan struct{}

	// Run's own.
	epoch   string
	applied uint64
	joined  bool
}

// NewFollower returns a Follower that keeps state, not yet running.
func NewFollower(state *State, h Hub, history History, log *slog.Logger) *Follower {
	return &Follower{state: state, hub: h, history: history, log: log, wake: make(chan struct{}, 1)}
}

// SessionID implements hub.Conn.
func (f *Follower) SessionID() string { return "system-moderation" }

// Transport implements hub.Described: the follower is the server itself.
func (f *Follower) Transport() string { return hub.TransportSystem }

// UserID implements hub.Conn.
func (f *Follower) UserID() string { return Sender }

// Enqueue implements hub.Conn: it queues the frame for Run, never blocks
// and never calls the hub.
func (f *Follower) Enqueue(frame []byte) {
	f.mu.Lock()
	f.queue = append(f.queue, frame)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *Follower) take() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queue
	f.queue = nil
	return q
}

// Run follows Room until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	retry := backoff.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: backoff.Full}
	var again <-chan time.Time
	check := time.NewTicker(CheckInterval)
	defer check.Stop()
	f.hub.Join(f, hub.JoinRequest{ID: joinID, Room: Room})
	for {
		select {
		case <-ctx.Done():
			return
		case <-again:
			again = nil
			f.hub.Join(f, hub.JoinRequest{ID: joinID, Room: Room})
		case <-check.C:
			if f.joined {
				f.check(ctx)
			}
		case <-f.wake:
		}
		for _, batch := range f.take() {
			for _, frame := range bytes.Split(batch, []byte{'\n'}) {
				if len(frame) == 0 {
					continue
				}
				if failed := f.handle(ctx, frame); failed && again == nil {
					again = time.After(retry.Next())
				} else if f.joined {
					retry.Reset()
				}
			}
		}
	}
}

// handle applies one frame of Room; it reports a failed join, to be
// retried.
func (f *Follower) handle(ctx context.Context, frame []byte) (joinFailed bool) {
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(frame, &head) != nil {
		return false
	}
	switch head.Type {
	case protocol.TypeJoined:
		var j protocol.Joined
		if json.Unmarshal(frame, &j) != nil || j.Room != Room {
			return false
		}
		// Our join's answer, or the hub telling us of a gap or a new
		// epoch: read the log again from its start.
		if j.ID == joinID || (j.Recovered != nil && !*j.Recovered) || j.Epoch != f.epoch {
			f.joined = true
			f.reload(ctx, j.Epoch, j.Head)
		}
	case protocol.TypeMessage:
		var m protocol.Message
		if json.Unmarshal(frame, &m) != nil || m.Room != Room {
			return false
		}
		switch {
		case m.Seq <= f.applied:
		case m.Seq == f.applied+1:
			f.applied = m.Seq
			f.apply(m)
		default:
			f.log.Warn("moderation log: a gap, reading it again", "applied", f.applied, "got", m.Seq)
			f.reload(ctx, f.epoch, m.Seq)
		}
	case protocol.TypeError:
		var e protocol.Error
		if json.Unmarshal(frame, &e) == nil && e.ID == joinID {
			f.log.Warn("cannot follow the moderation log yet; retrying", "code", e.Code, "err", e.Message)
			f.joined = false
			return true
		}
	}
	return false
}

// check reads the log's newest page and reads the whole log again when
// this copy is behind it or of another epoch.
func (f *Follower) check(ctx context.Context) {
	ch := make(chan protocol.HistoryPage, 1)
	f.history.History(Room, 0, 1, func(p protocol.HistoryPage, err error) {
		if err == nil {
			ch <- p
		} else {
			close(ch)
		}
	})
	select {
	case <-ctx.Done():
	case p, ok := <-ch:
		if ok && (p.Epoch != f.epoch || p.Head > f.applied) && p.Head > 0 {
			f.log.Warn("moderation log: this node's copy is behind the owner's; reading it again", "epoch", f.epoch, "applied", f.applied, "owner_epoch", p.Epoch, "owner_head", p.Head)
			f.reload(ctx, p.Epoch, p.Head)
		}
	}
}

// apply folds one new message of Room into the state and enforces a new
// ban on this node's connections.
func (f *Follower) apply(m protocol.Message) {
	e, err := Decode(m.Text)
	if err != nil {
		f.log.Warn("moderation log: an entry that does not decode is skipped", "seq", m.Seq, "err", err)
		return
	}
	f.state.Apply(e)
	if e.Op != OpBan || !e.active(time.Now().UnixMilli()) {
		return
	}
	f.enforce(e)
}

// enforce acts on this node's connections for a ban it has just learned
// of: a room ban makes the user's connections leave the room, a
// cluster-wide ban closes them.
func (f *Follower) enforce(e Entry) {
	reason := e.Reason
	if reason == "" {
		reason = "banned"
	}
	if e.Room != "" {
		f.hub.Kick(e.Room, e.User, reason)
		return
	}
	f.hub.DisconnectUser(e.User, protocol.CloseDisconnectedNoReconnect, reason)
}

// reload reads Room's whole log through History and rebuilds the state
// from it, retrying until it succeeds or ctx ends. What it reads must be
// the log the hub's copy follows: of epoch (when known) and reaching head
// at least. Around a restart or a move of the room, a page may come from a
// node that is not (or no longer) its owner and knows nothing of it;
// taking that empty page would forget every ban until the next gap, so it
// is read again instead. Live messages that arrive meanwhile wait in the
// queue and are skipped or applied by seq.
func (f *Follower) reload(ctx context.Context, epoch string, head uint64) {
	retry := backoff.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: backoff.Full}
	for {
		msgs, got, gotHead, err := f.readAll(ctx)
		if err == nil && head > 0 && (got != epoch || gotHead < head) {
			err = fmt.Errorf("the log read (epoch %q, head %d) is behind the subscription's (epoch %q, head %d)", got, gotHead, epoch, head)
		}
		if err == nil {
			entries := make([]Entry, 0, len(msgs))
			for _, m := range msgs {
				e, err := Decode(m.Text)
				if err != nil {
					f.log.Warn("moderation log: an entry that does not decode is skipped", "seq", m.Seq, "err", err)
					continue
				}
				entries = append(entries, e)
			}
			// A ban learned by reading the log (the subscription moved to
			// a new epoch, or this copy was behind) is enforced as a live
			// one would have been.
			for _, b := range f.state.replace(entries) {
				f.enforce(b)
			}
			// Retention may have removed the oldest entries, never the
			// head: new entries follow gotHead.
			f.epoch, f.applied = got, gotHead
			f.log.Info("moderation log loaded", "entries", len(entries), "epoch", got, "head", gotHead)
			return
		}
		f.log.Warn("cannot read the moderation log yet; retrying", "err", err)
		t := time.NewTimer(retry.Next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// readAll reads every kept message of Room, oldest first, with the log's
// epoch and head (as the newest page says).
func (f *Follower) readAll(ctx context.Context) ([]protocol.Message, string, uint64, error) {
	type answer struct {
		page protocol.HistoryPage
		err  error
	}
	var (
		pages [][]protocol.Message
		epoch string
		head  uint64
	)
	before := uint64(0)
	for first := true; ; first = false {
		ch := make(chan answer, 1)
		f.history.History(Room, before, pageSize, func(p protocol.HistoryPage, err error) { ch <- answer{p, err} })
		var a answer
		select {
		case <-ctx.Done():
			return nil, "", 0, ctx.Err()
		case a = <-ch:
		}
		if a.err != nil {
			return nil, "", 0, fmt.Errorf("moderation log page before %d: %w", before, a.err)
		}
		if first {
			epoch, head = a.page.Epoch, a.page.Head
		} else if a.page.Epoch != epoch {
			return nil, "", 0, fmt.Errorf("moderation log: the epoch changed while reading it (%s, then %s)", epoch, a.page.Epoch)
		}
		pages = append(pages, a.page.Messages)
		if !a.page.More || len(a.page.Messages) == 0 {
			break
		}
		before = a.page.Messages[0].Seq
	}
	slices.Reverse(pages)
	return slices.Concat(pages...), epoch, head, nil
}
