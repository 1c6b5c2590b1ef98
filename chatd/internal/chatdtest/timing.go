package chatdtest

import (
	"math"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipTiming is the failure detection of the "local" gossip profile, the
// one Cluster and ProcessCluster run (--gossip-profile local, memberlist's
// DefaultLocalConfig), worked out for a cluster of a given size, so that
// tests derive their waits from what the nodes are configured to do instead
// of from constants.
type GossipTiming struct {
	// ProbeInterval is how often a member probes another one; it probes
	// them in turn, so a given member is probed by each other one every
	// (n-1) intervals.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a probe waits for its answer.
	ProbeTimeout time.Duration
	// SuspicionMin is how long a member stays suspected, once the other
	// members have confirmed the suspicion, before it is declared dead; a
	// node frozen for less than this is never declared dead.
	SuspicionMin time.Duration
	// SuspicionMax is how long a suspicion lasts when nobody confirms it.
	SuspicionMax time.Duration
	// Detection is how long the other members take to declare a silent
	// member dead when they confirm each other's suspicion: the longest wait
	// for a probe, its timeout, then SuspicionMin. Measured on loopback:
	// about 4.7 s for 3 nodes, where this says 5.2 s.
	Detection time.Duration
}

// LocalGossipTiming returns the failure detection of the local gossip
// profile in a cluster of n nodes.
func LocalGossipTiming(n int) GossipTiming {
	mc := memberlist.DefaultLocalConfig()
	// memberlist's suspicionTimeout: SuspicionMult × max(1, log10(n))
	// probe intervals, up to SuspicionMaxTimeoutMult times that.
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	suspicion := time.Duration(float64(mc.SuspicionMult) * scale * float64(mc.ProbeInterval))
	g := GossipTiming{
		ProbeInterval: mc.ProbeInterval,
		ProbeTimeout:  mc.ProbeTimeout,
		SuspicionMin:  suspicion,
		SuspicionMax:  time.Duration(mc.SuspicionMaxTimeoutMult) * suspicion,
	}
	g.Detection = time.Duration(max(n-1, 1))*g.ProbeInterval + g.ProbeTimeout + g.SuspicionMin
	return g
}
