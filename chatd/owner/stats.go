package owner

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RoomStat describes a room this node owns, for the admin API. Everything in
// it is what the owner itself holds, so it costs one lock per room and no
// network.
type RoomStat struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	// Head is the newest sequence number in the log; Committed the newest
	// one fanned out and acknowledged. Pending counts the messages between
	// them, waiting for a replica.
	Head      uint64 `json:"head"`
	Committed uint64 `json:"committed"`
	Pending   int    `json:"pending"`
	// State is "serving", "awaiting_handoff" (this node is the new owner
	// and claims the room: it waits for the previous owner's handoff, or
	// for the members' promises and the newest copy), "settling" (claimed;
	// its replicas are being brought to the log in the new term) or
	// "moving" (being handed to another node).
	State string `json:"state"`
	// Replicas are the nodes the owner replicates to (nil when none).
	Replicas []string `json:"replicas,omitempty"`
	// Term is the ownership term the owner serves the room in.
	Term uint64 `json:"term"`
	// InSync is true when the room is served and every replica the view
	// names holds the whole log: the room has its full number of copies.
	InSync bool `json:"in_sync"`
	// Nodes is the number of nodes with subscribers in the room, this node
	// included when it has some; Users the distinct users present across
	// them.
	Nodes int `json:"nodes"`
	Users int `json:"users"`
	// WaitingFor says, while the room is claimed or settling, what it
	// waits for (a member's answer, a handoff notice, a replica's copy),
	// and StateSeconds for how long it has been in that state: a room
	// that stays there holds its requests.
	WaitingFor   string  `json:"waiting_for,omitempty"`
	StateSeconds float64 `json:"state_seconds,omitempty"`
}

// inSyncLocked reports whether r is served and every replica the view names
// for it holds its whole log. Callers hold r.mu.
func (r *room) inSyncLocked() bool {
	return r.state == stateReady && slices.Equal(r.replicas, r.svc.view.Replicas(r.name)) && r.replicatedUpTo() >= r.log.Head()
}

// OutOfSync counts the rooms this node owns that are not InSync (see
// RoomStat): being claimed or handed over, or waiting for a replica's copy.
func (s *Service) OutOfSync() int {
	n := 0
	for _, r := range s.ownedList() {
		r.mu.Lock()
		if !r.dead && !r.inSyncLocked() {
			n++
		}
		r.mu.Unlock()
	}
	return n
}

// Counts returns how many rooms this node owns and how many it keeps a
// replica of.
func (s *Service) Counts() (owned, replicas int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms), len(s.replicas)
}

// RoomStats describes every room this node owns, sorted by name.
func (s *Service) RoomStats() []RoomStat {
	rooms := s.ownedList()
	out := make([]RoomStat, 0, len(rooms))
	for _, r := range rooms {
		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			continue
		}
		st := RoomStat{
			Room:      r.name,
			Epoch:     r.log.Epoch(),
			Head:      r.log.Head(),
			Committed: r.committed,
			Pending:   len(r.pending),
			State:     r.state.String(),
			Replicas:  slices.Clone(r.replicas),
			Term:      r.term,
			InSync:    r.inSyncLocked(),
			Nodes:     len(r.nodes),
			Users:     len(r.users),
		}
		if r.state == stateWaiting || r.state == stateSettling {
			st.WaitingFor = r.waitReasonLocked()
			st.StateSeconds = s.cfg.Now().Sub(r.stateSince).Round(time.Millisecond).Seconds()
		}
		r.mu.Unlock()
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b RoomStat) int { return cmp.Compare(a.Room, b.Room) })
	return out
}

// String names the state as the admin API shows it.
func (st roomState) String() string {
	switch st {
	case stateReady:
		return "serving"
	case stateWaiting:
		return "awaiting_handoff"
	case stateMoving:
		return "moving"
	case stateSettling:
		return "settling"
	}
	return "unknown"
}

// waitReasonLocked says what a room being claimed or settling waits for.
// Callers hold r.mu.
func (r *room) waitReasonLocked() string {
	switch r.state {
	case stateWaiting:
		return r.waitingFor
	case stateSettling:
		var behind []string
		for _, rep := range r.replicas {
			if r.acked[rep] >= r.settleHead {
				continue
			}
			how := "no catch-up running"
			if _, ok := r.syncs[rep]; ok {
				how = "catching up"
			} else if _, ok := r.repair[rep]; ok {
				how = "its catch-up failed; retried after a pause"
			}
			behind = append(behind, fmt.Sprintf("%s holds %d (%s)", rep, r.acked[rep], how))
		}
		if len(behind) > 0 {
			return fmt.Sprintf("its replicas to hold the log up to %d in term %d: %s", r.settleHead, r.term, strings.Join(behind, "; "))
		}
		if !r.svc.cfg.Verified() {
			return "this node to claim its rooms again after a pause"
		}
		return fmt.Sprintf("a commit up to %d (committed %d, this copy durable to %d)", r.settleHead, r.committed, r.replicatedUpTo())
	}
	return ""
}

// slowClaim is how long a claim or settle may take before it is logged as
// slow, and then how often it is logged again: twice the handoff grace
// (a claim may wait one grace for the previous owner's notice, and its
// rounds of promises and fetches take a few call timeouts).
func (s *Service) slowClaim() time.Duration { return max(2*s.cfg.HandoffGrace, time.Second) }

// reportSlowLocked logs, at most once per slowClaim, a room whose claim or
// settle has lasted longer than slowClaim, with what it waits for: a room
// in that state holds its requests, and its senders only see timeouts.
// Callers hold r.mu.
func (r *room) reportSlowLocked(now time.Time) {
	if r.dead || (r.state != stateWaiting && r.state != stateSettling) {
		return
	}
	after := r.svc.slowClaim()
	if now.Sub(r.stateSince) < after || now.Sub(r.slowLogged) < after {
		return
	}
	r.slowLogged = now
	r.svc.log.Warn("a room this node owns is still not served; its requests are held",
		"room", r.name, "state", r.state.String(), "for", now.Sub(r.stateSince).Round(time.Millisecond).String(),
		"waiting_for", r.waitReasonLocked(), "held_requests", len(r.held))
}

// Present reports, when this node owns and serves room in its view, the
// number of distinct users present in it (on every node) and the first
// limit of them by name. It reads what the owner holds and starts no
// claim: a room that is not served here answers owned false.
func (s *Service) Present(roomName string, limit int) (owned bool, count int, users []string) {
	if s.view.Owner(roomName) != s.cfg.Self {
		return false, 0, nil
	}
	s.mu.Lock()
	r := s.rooms[roomName]
	s.mu.Unlock()
	if r == nil {
		return false, 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || r.state != stateReady {
		return false, 0, nil
	}
	users = make([]string, 0, len(r.users))
	for u := range r.users {
		users = append(users, u)
	}
	slices.Sort(users)
	return true, len(users), users[:min(len(users), max(limit, 0))]
}
