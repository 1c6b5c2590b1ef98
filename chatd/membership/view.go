package membership

import (
	"cmp"
	"slices"
)

// Member is one node of the cluster as this node sees it.
type Member struct {
	// Name is the node's unique name (memberlist's node name).
	Name string
	// GossipAddr is the host:port the node gossips on.
	GossipAddr string
	// Meta is what the node advertises about itself.
	Meta Meta
}

// View is an immutable snapshot of the cluster as this node sees it. Views
// are shared between callers and subscribers without copying, so the
// Members slice must not be modified.
type View struct {
	// Version increases on every change this node observes. It is local to
	// this node: two nodes with the same member list may have different
	// versions.
	Version uint64
	// Self is this node's name.
	Self string
	// Members are the live members, this node included (until it leaves),
	// sorted by Name. Members memberlist only suspects are still listed:
	// dropping them on one missed probe would move rooms back and forth.
	Members []Member
}

// Active returns the members in StateActive, sorted by Name; room owners are
// chosen among these only.
func (v View) Active() []Member {
	var out []Member
	for _, m := range v.Members {
		if m.Meta.State == StateActive {
			out = append(out, m)
		}
	}
	return out
}

// Get returns the member called name, if it is in the view.
func (v View) Get(name string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(v.Members, name, func(m Member, n string) int {
		return cmp.Compare(m.Name, n)
	})
	if !ok {
		return Member{}, false
	}
	return v.Members[i], true
}

// Names returns the members' names in order; handy for logs and comparisons.
func (v View) Names() []string {
	out := make([]string, len(v.Members))
	for i, m := range v.Members {
		out[i] = m.Name
	}
	return out
}

// CountByState counts the members in each state, for metrics. Every known
// state is present, with 0 if no member is in it, so a gauge per state drops
// back to zero instead of keeping a stale value.
func (v View) CountByState() map[State]int {
	out := map[State]int{StateJoining: 0, StateActive: 0, StateDraining: 0}
	for _, m := range v.Members {
		out[m.Meta.State]++
	}
	return out
}
