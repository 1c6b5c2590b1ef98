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
	f.hub.Join(f, hub.JoinRequest{ID: joinID, Room: Room})
	for {
		select {
		case <-ctx.Done():
			return
		case <-again:
			again = nil
			f.hub.Join(f, hub.JoinRequest{ID: joinID, Room: Room})
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
			f.reload(ctx)
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
			f.reload(ctx)
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
// from it, retrying until it succeeds or ctx ends. Live messages that
// arrive meanwhile wait in the queue and are skipped or applied by seq.
func (f *Follower) reload(ctx context.Context) {
	retry := backoff.Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: backoff.Full}
	for {
		msgs, epoch, err := f.readAll(ctx)
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
			f.state.replace(entries)
			f.epoch, f.applied = epoch, 0
			if len(msgs) > 0 {
				f.applied = msgs[len(msgs)-1].Seq
			}
			f.log.Info("moderation log loaded", "entries", len(entries), "epoch", epoch)
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

// readAll reads every kept message of Room, oldest first.
func (f *Follower) readAll(ctx context.Context) ([]protocol.Message, string, error) {
	type answer struct {
		page protocol.HistoryPage
		err  error
	}
	var (
		pages [][]protocol.Message
		epoch string
	)
	before := uint64(0)
	for {
		ch := make(chan answer, 1)
		f.history.History(Room, before, pageSize, func(p protocol.HistoryPage, err error) { ch <- answer{p, err} })
		var a answer
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case a = <-ch:
		}
		if a.err != nil {
			return nil, "", fmt.Errorf("moderation log page before %d: %w", before, a.err)
		}
		if epoch == "" {
			epoch = a.page.Epoch
		} else if a.page.Epoch != epoch {
			return nil, "", fmt.Errorf("moderation log: the epoch changed while reading it (%s, then %s)", epoch, a.page.Epoch)
		}
		pages = append(pages, a.page.Messages)
		if !a.page.More || len(a.page.Messages) == 0 {
			break
		}
		before = a.page.Messages[0].Seq
	}
	slices.Reverse(pages)
	return slices.Concat(pages...), epoch, nil
}
