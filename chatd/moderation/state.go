// Package moderation keeps a node's copy of the cluster's bans and mutes
// and enforces them. They are entries of one system room's log (Room):
// written through its owner like any message, so they are replicated,
// fenced and, with --data-dir, durable exactly as chat history is; every
// node follows that room as a subscriber (Follower), folds its entries into
// a State, refuses joins and sends through the hub's Gate, and makes the
// affected local connections leave (room bans) or disconnects them
// (cluster-wide bans) when a new ban arrives (docs/architecture.md,
// Moderation).
package moderation

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Room is the system room whose log holds the moderation entries. Its '#'
// is a character the client protocol refuses in a room name, so no client
// can join it, send to it or read its history, and the server API refuses
// it too: only this package writes it.
const Room = "#moderation"

// Sender is the sender of the entries written to Room.
const Sender = "system:moderation"

// Entry operations.
const (
	OpBan    = "ban"
	OpUnban  = "unban"
	OpMute   = "mute"
	OpUnmute = "unmute"
)

// Entry is one moderation decision, the text of one message of Room.
type Entry struct {
	// Op is what is decided (OpBan, OpUnban, OpMute, OpUnmute).
	Op string `json:"op"`
	// User is who it is about.
	User string `json:"user"`
	// Room is the room it applies to; empty: every room (cluster-wide).
	Room string `json:"room,omitempty"`
	// Until is when a ban or mute stops applying, in Unix milliseconds;
	// 0: never.
	Until int64 `json:"until,omitempty"`
	// Reason says why, for the user.
	Reason string `json:"reason,omitempty"`
	// At is when the decision was made, in Unix milliseconds.
	At int64 `json:"at"`
}

// Encode returns e as an entry's text.
func (e Entry) Encode() string {
	b, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("moderation: encoding an entry: %v", err)) // a plain struct cannot fail
	}
	return string(b)
}

// Decode reads an entry's text.
func Decode(text string) (Entry, error) {
	var e Entry
	if err := json.Unmarshal([]byte(text), &e); err != nil {
		return Entry{}, fmt.Errorf("moderation entry: %w", err)
	}
	switch e.Op {
	case OpBan, OpUnban, OpMute, OpUnmute:
	default:
		return Entry{}, fmt.Errorf("moderation entry: unknown op %q", e.Op)
	}
	if e.User == "" {
		return Entry{}, errors.New("moderation entry: no user")
	}
	return e, nil
}

// active reports whether a ban or mute is in force at now (ms).
func (e Entry) active(now int64) bool { return e.Until == 0 || now < e.Until }

type key struct{ user, room string }

// State is the bans and mutes in force, as folded from Room's log. Its
// methods are safe for concurrent use.
type State struct {
	now func() time.Time

	mu     sync.RWMutex
	loaded bool
	bans   map[key]Entry
	mutes  map[key]Entry
}

// NewState returns an empty State, not loaded; now nil means time.Now.
func NewState(now func() time.Time) *State {
	if now == nil {
		now = time.Now
	}
	return &State{now: now, bans: map[key]Entry{}, mutes: map[key]Entry{}}
}

// Apply folds one entry in.
func (s *State) Apply(e Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{e.User, e.Room}
	switch e.Op {
	case OpBan:
		s.bans[k] = e
	case OpUnban:
		delete(s.bans, k)
	case OpMute:
		s.mutes[k] = e
	case OpUnmute:
		delete(s.mutes, k)
	}
}

// replace swaps in the state folded from entries, the whole log, at once:
// a check made meanwhile sees the old state or the new one, never a
// partial one. It returns the active bans the state did not hold before:
// a reload can be how this node first learns of a ban (the log's epoch
// changed under the subscription, or the live entry never reached it),
// and such a ban must be enforced on the node's connections as a live one
// is.
func (s *State) replace(entries []Entry) (learned []Entry) {
	next := NewState(s.now)
	for _, e := range entries {
		next.Apply(e)
	}
	now := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	// In log order, each ban once: the entry that stands for its key.
	seen := map[key]bool{}
	for _, e := range entries {
		k := key{e.User, e.Room}
		if e.Op != OpBan || seen[k] || next.bans[k] != e || !e.active(now) {
			continue
		}
		seen[k] = true
		if old, ok := s.bans[k]; !ok || old != e {
			learned = append(learned, e)
		}
	}
	s.bans, s.mutes, s.loaded = next.bans, next.mutes, true
	return learned
}

// Loaded reports whether the node has read the whole log: before that, a
// ban older than the node's start is not known here yet.
func (s *State) Loaded() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.loaded
}

// lookup finds the entry in force for user in room: the room's own, or
// the cluster-wide one, whichever ends last.
func lookup(m map[key]Entry, user, room string, now int64) (Entry, bool) {
	var found Entry
	ok := false
	for _, k := range []key{{user, room}, {user, ""}} {
		if e, in := m[k]; in && e.active(now) {
			if !ok || e.Until == 0 || (found.Until != 0 && e.Until > found.Until) {
				found, ok = e, true
			}
		}
	}
	return found, ok
}

// Banned returns the ban of user from room in force, if any.
func (s *State) Banned(user, room string) (Entry, bool) {
	now := s.now().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return lookup(s.bans, user, room, now)
}

// Muted returns the mute of user in room in force, if any.
func (s *State) Muted(user, room string) (Entry, bool) {
	now := s.now().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return lookup(s.mutes, user, room, now)
}

// List returns the bans (mutes with mutes set) in force, sorted by user
// then room; with room set, only that room's own.
func (s *State) List(mutes bool, room string, filter bool) []Entry {
	now := s.now().UnixMilli()
	s.mu.RLock()
	m := s.bans
	if mutes {
		m = s.mutes
	}
	out := make([]Entry, 0, len(m))
	for k, e := range m {
		if e.active(now) && (!filter || k.room == room) {
			out = append(out, e)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int {
		if c := strings.Compare(a.User, b.User); c != 0 {
			return c
		}
		return strings.Compare(a.Room, b.Room)
	})
	return out
}

// Refuse implements hub.Gate: a join (or a resume) of a banned user is
// refused with banned; a send too, and a muted user's send with muted.
// Room itself is never refused (this package's own follower joins it).
func (s *State) Refuse(user, room string, send bool) *protocol.Error {
	if room == Room {
		return nil
	}
	if e, ok := s.Banned(user, room); ok {
		return refusal(protocol.CodeBanned, "you are banned", e)
	}
	if send {
		if e, ok := s.Muted(user, room); ok {
			return refusal(protocol.CodeMuted, "you are muted", e)
		}
	}
	return nil
}

func refusal(code, what string, e Entry) *protocol.Error {
	msg := what
	if e.Room == "" {
		msg += " from every room"
	} else {
		msg += " in this room"
	}
	if e.Until != 0 {
		msg += " until " + time.UnixMilli(e.Until).UTC().Format(time.RFC3339)
	}
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	pe := protocol.NewError(code, "", msg)
	pe.Until = e.Until
	return pe
}
