package owner

import (
	"cmp"
	"slices"
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
	// State is "serving", "awaiting_handoff" (this node is the new owner and
	// waits for the previous one's snapshot) or "moving" (being handed to
	// another node).
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
