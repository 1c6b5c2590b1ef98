// Package membership tracks which nodes are in the cluster. It wraps
// hashicorp/memberlist (SWIM gossip with failure detection) and adds what
// memberlist leaves to its users:
//
//   - node metadata (RPC and HTTP addresses, lifecycle State, protocol
//     version) gossiped with every alive message, and changed with SetState;
//   - an immutable, versioned View of the live members, with subscriptions
//     that coalesce so a slow subscriber never blocks gossip;
//   - seeds given as DNS names resolved to every address (a Kubernetes
//     headless Service), joined with backoff at start and re-joined
//     periodically, because memberlist forgets unreachable nodes after a
//     partition and never looks for them again;
//   - a readiness answer that stays false, with a reason an operator can act
//     on, until the node has really joined a cluster and the view has
//     settled.
//
// Ownership is not decided here: the cluster layer picks owners among
// View.Active. The usual lifecycle of a node is New, Start, SetState(active)
// once it can serve; on termination SetState(draining), hand rooms off,
// Leave, Shutdown.
//
// # Decisions
//
// memberlist's LAN profile is used unchanged (probe every 1 s, suspicion
// 4×log(N) probes, push/pull every 30 s): it detects a failed node in about
// 5–7 s at up to 10 nodes, and tighter timings would trade false suspicions
// under GC or CPU pressure for little gain. The local profile exists for
// tests on loopback.
//
// Gossip alone spreads a change to a few random nodes per round with a small
// retransmit budget, and in a small cluster it regularly misses a node until
// the next push/pull, tens of seconds later. Nodes whose views disagree that
// long pick different owners. So after joining, changing state and leaving,
// a node push/pulls directly with up to peerSyncFanout members: views agree
// within a round trip, and the cost is a few small TCP exchanges per
// lifecycle event.
//
// A restarted StatefulSet pod keeps its name and gets a new IP. memberlist
// refuses a known name from a new address unless the old entry left cleanly
// or has been dead for DeadNodeReclaimTime (memberlist's default: never), so
// that is set (default 5 s), and members that refused the claim pull the
// claimant again once it can succeed, instead of waiting for the claimant's
// next periodic push/pull.
//
// ClusterLabel and Keys make memberlist drop foreign traffic. It does so
// quietly, in its own words; the log bridge raises those lines to Warn with
// a hint, and Ready tells an operator to check the key and label when a node
// with seeds has never seen another member.
//
// Readiness latches: once a node has been ready it stays ready until Leave or
// Shutdown, because flipping on ordinary churn would pull every pod out of
// its Service during a rolling update.
package membership
