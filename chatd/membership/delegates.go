package membership

import (
	"github.com/hashicorp/memberlist"
)

// delegates implements memberlist's callback interfaces on behalf of a
// Membership. It is a separate type so that Membership's exported method
// set stays ours, not memberlist's.
//
// memberlist calls the event and conflict methods while holding its node
// lock, so none of them may call back into memberlist (that would deadlock);
// they only touch Membership's own state.
type delegates struct {
	m *Membership
}

var (
	_ memberlist.Delegate         = (*delegates)(nil)
	_ memberlist.EventDelegate    = (*delegates)(nil)
	_ memberlist.ConflictDelegate = (*delegates)(nil)
)

// NodeMeta returns this node's encoded metadata for alive messages.
func (d *delegates) NodeMeta(limit int) []byte {
	b := d.m.encodedMeta()
	if len(b) > limit {
		// Unreachable: every path that sets meta checks MaxMetaSize, and
		// memberlist passes that same limit. Guarded anyway because
		// memberlist panics on oversized meta, and an empty meta (read by
		// peers as "joining") is far better than a crash.
		d.m.log.Error("node metadata exceeds memberlist's limit; advertising none", "size", len(b), "limit", limit)
		return nil
	}
	return b
}

// NotifyMsg is unused: rooms travel over the inter-node RPC transport, not
// over gossip.
func (d *delegates) NotifyMsg([]byte) {}

// GetBroadcasts is unused; see NotifyMsg.
func (d *delegates) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState is unused; see NotifyMsg.
func (d *delegates) LocalState(join bool) []byte { return nil }

// MergeRemoteState is unused; see NotifyMsg.
func (d *delegates) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin records a node that became alive (new, or back from dead).
func (d *delegates) NotifyJoin(n *memberlist.Node) { d.m.applyNode(eventJoin, n) }

// NotifyLeave records a node that left or was declared dead.
func (d *delegates) NotifyLeave(n *memberlist.Node) { d.m.applyNode(eventLeave, n) }

// NotifyUpdate records a node whose metadata changed.
func (d *delegates) NotifyUpdate(n *memberlist.Node) { d.m.applyNode(eventUpdate, n) }

// NotifyConflict is called when another process claims a node name that is
// already alive at a different address. memberlist keeps the existing entry;
// we only explain it, since the usual cause is operational (two pods with
// one name, or a restarted pod whose old entry is not dead yet).
func (d *delegates) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name == d.m.cfg.NodeName {
		// We are the claimant: the cluster still remembers a previous
		// instance of this node at another address. Peers that refused us
		// retry on their side (noteConflict), so there is nothing to do.
		d.m.log.Warn("this node's name is still held by a previous instance; waiting for the cluster to declare it dead",
			"name", existing.Name,
			"this_addr", existing.Address(),
			"previous_addr", other.Address(),
			"hint", "expected after a restart with a new IP; persisting means two running nodes share this name",
		)
		return
	}
	d.m.log.Warn("node name conflict: another node claims a member's name; keeping the existing entry for now",
		"name", existing.Name,
		"existing_addr", existing.Address(),
		"claimant_addr", other.Address(),
		"hint", "if a pod restarted with a new IP, it is admitted once its old entry has been dead for DeadNodeReclaimTime; otherwise two nodes share a name",
	)
	d.m.noteConflict(other.Address())
}
