package cluster

import (
	"strconv"
	"time"

	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/rpc"
)

// countForward records a message sent to another node.
func (n *Node) countForward(payload []byte) {
	if n.metrics == nil || len(payload) == 0 {
		return
	}
	n.metrics.Forwards.WithLabelValues(rpc.Op(payload[0]).String()).Inc()
}

// observer maps the owner service's events onto metrics.
type observer struct{ m *metrics.Metrics }

func (o observer) Replicated(d time.Duration) { o.m.ReplicationTime.Observe(d.Seconds()) }
func (o observer) Held()                      { o.m.HeldRequests.Inc() }
func (o observer) Fenced()                    { o.m.Fenced.Inc() }
func (o observer) Conflict()                  { o.m.Conflicts.Inc() }
func (o observer) Claimed(d time.Duration, fetched bool) {
	o.m.ClaimTime.WithLabelValues(strconv.FormatBool(fetched)).Observe(d.Seconds())
}
func (o observer) Handoff(out bool, err error) {
	dir, result := "in", "ok"
	if out {
		dir = "out"
	}
	if err != nil {
		result = "failed"
	}
	o.m.Handoffs.WithLabelValues(dir, result).Inc()
}

// updateGauges refreshes the membership and room gauges.
func (n *Node) updateGauges(m *membership.Membership) {
	if n.metrics == nil {
		return
	}
	if m != nil {
		for state, count := range m.View().CountByState() {
			n.metrics.Members.WithLabelValues(string(state)).Set(float64(count))
		}
	} else {
		n.metrics.Members.WithLabelValues(string(membership.StateActive)).Set(1)
	}
	n.metrics.RoomsOwned.Set(float64(len(n.owners.OwnedRooms())))
	n.metrics.RoomsReplicated.Set(float64(len(n.owners.ReplicaRooms())))
	n.metrics.RoomsOutOfSync.Set(float64(n.owners.OutOfSync()))
}
