package membership

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profile names accepted in Config.Profile.
const (
	// ProfileLAN uses memberlist's DefaultLANConfig: failure detection in
	// about 5–7 s for small clusters, suited to one data centre or one
	// Kubernetes cluster.
	ProfileLAN = "lan"
	// ProfileLocal uses memberlist's DefaultLocalConfig: shorter timeouts
	// for loopback, used by tests.
	ProfileLocal = "local"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultSeedPort is the gossip port assumed for a seed given without
	// one (memberlist's conventional port).
	DefaultSeedPort = 7946
	// DefaultRejoinInterval is how often seeds that are not members are
	// re-resolved and joined.
	DefaultRejoinInterval = 30 * time.Second
	// DefaultSettleTime is how long the view must stay unchanged after
	// joining before the node reports ready.
	DefaultSettleTime = 2 * time.Second
	// DefaultDeadNodeReclaimTime is how long a node must have been declared
	// dead before another process may take over its name from a different
	// address. See Config.DeadNodeReclaimTime.
	DefaultDeadNodeReclaimTime = 5 * time.Second
)

// updateNodeTimeout bounds how long SetState waits for its broadcast to go
// out. The state is applied locally at once; this only limits the wait.
const updateNodeTimeout = 5 * time.Second

// seedLookupTimeout bounds one DNS lookup of a seed name, so a dead resolver
// cannot stall the rejoin loop (or Shutdown, which waits for it).
const seedLookupTimeout = 5 * time.Second

// Config configures a Membership.
type Config struct {
	// NodeName is this node's unique name in the cluster (required). In
	// Kubernetes, use the pod name: it is stable across restarts of a
	// StatefulSet pod, which DeadNodeReclaimTime relies on.
	NodeName string
	// BindAddr is the address gossip listens on (TCP and UDP); empty means
	// all interfaces (0.0.0.0).
	BindAddr string
	// BindPort is the gossip port; 0 picks a free port (tests).
	BindPort int
	// AdvertiseAddr is the IP other nodes should use to reach this one;
	// empty lets memberlist pick a private address of this host. It must be
	// an IP address, not a name (in Kubernetes, the pod IP).
	AdvertiseAddr string
	// AdvertisePort is the port other nodes should use; 0 means BindPort.
	AdvertisePort int
	// Meta is this node's initial metadata; its State is usually
	// StateJoining (the default when empty).
	Meta Meta
	// Seeds are the nodes to join: "host:port", "[v6]:port", "name:port" or
	// a bare name (port DefaultSeedPort). A name is resolved to all its A
	// and AAAA records, so a Kubernetes headless Service (with
	// publishNotReadyAddresses: true, or pods would not be listed until they
	// are ready) names every pod. Listing this node itself is harmless.
	Seeds []string
	// RejoinInterval is how often seeds are re-resolved and those that are
	// not members are joined, and how often a joined node push/pulls with
	// one random member. memberlist forgets nodes it could not reach for a
	// while and never looks for them again; this is what heals a partition
	// and merges nodes that bootstrapped separately. The push/pull is for a
	// node the others declared dead while it was cut off, and that sees
	// them all again: nothing but a push/pull tells it to refute its death,
	// and memberlist's own comes only every 15-30 s. Default 30s.
	RejoinInterval time.Duration
	// ClusterLabel is memberlist's Label: traffic from a node with another
	// label is dropped, so two clusters never merge through a reused IP or a
	// mistyped seed. Empty means no label (and accepts only unlabelled
	// peers). At most 255 bytes.
	ClusterLabel string
	// Keys is the gossip keyring, primary first: gossip is encrypted and
	// authenticated with AES-GCM under the primary key, and accepted under
	// any of them, which is what lets the keys rotate (SetKeys). Each key
	// must be 16, 24 or 32 bytes. Without keys, gossip is neither
	// encrypted nor authenticated (tests only: chatd requires a key).
	Keys [][]byte
	// Bootstrap allows this node to start a new cluster alone when no seed
	// answers (the first node). Others wait for a seed.
	Bootstrap bool
	// SettleTime is how long the view must stay unchanged after joining (or
	// bootstrapping) before Ready reports true. Default 2s.
	SettleTime time.Duration
	// Profile selects memberlist's timing defaults: ProfileLAN (default) or
	// ProfileLocal.
	Profile string
	// DeadNodeReclaimTime is how long after a node was declared dead its
	// name may be taken by a node at another address. A StatefulSet pod
	// that crashes comes back with the same name and a new IP; without this
	// (memberlist's default is never) the cluster would refuse it as a name
	// conflict for as long as the dead entry is remembered. A node that left
	// cleanly can always be replaced at once. Members that refused a claim
	// pull the claimant again once the reclaim time can have passed, so the
	// restarted node is admitted within about failure detection plus this,
	// not at memberlist's next periodic push/pull. Default 5s: long enough
	// for the death to have spread, short next to a pod's restart; negative
	// disables reclaiming.
	DeadNodeReclaimTime time.Duration
	// Logger receives this package's logs and memberlist's (bridged: its
	// debug and info lines at Debug, warnings and errors at Warn, marked
	// origin=memberlist). The caller names the component. Nil discards them.
	Logger *slog.Logger

	// tuneMemberlist, when set, edits memberlist's configuration last: the
	// package's tests use it to put a transport that can be cut in place
	// and to switch memberlist's own healing paths off one at a time.
	tuneMemberlist func(*memberlist.Config)
}

// seedAddr is a seed split into host and port; host may be an IP or a name.
type seedAddr struct {
	host string
	port int
}

// withDefaults returns cfg with zero fields replaced by their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.RejoinInterval == 0 {
		cfg.RejoinInterval = DefaultRejoinInterval
	}
	if cfg.SettleTime == 0 {
		cfg.SettleTime = DefaultSettleTime
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileLAN
	}
	if cfg.DeadNodeReclaimTime == 0 {
		cfg.DeadNodeReclaimTime = DefaultDeadNodeReclaimTime
	}
	if cfg.Meta.State == "" {
		cfg.Meta.State = StateJoining
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if cfg.AdvertisePort == 0 {
		cfg.AdvertisePort = cfg.BindPort
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// validate checks a defaulted config and parses its seeds.
func (cfg Config) validate() ([]seedAddr, error) {
	var errs []error
	if cfg.NodeName == "" {
		errs = append(errs, errors.New("NodeName is required"))
	}
	if cfg.BindPort < 0 || cfg.BindPort > 65535 {
		errs = append(errs, fmt.Errorf("BindPort %d out of range", cfg.BindPort))
	}
	if cfg.AdvertisePort < 0 || cfg.AdvertisePort > 65535 {
		errs = append(errs, fmt.Errorf("AdvertisePort %d out of range", cfg.AdvertisePort))
	}
	if net.ParseIP(cfg.BindAddr) == nil {
		errs = append(errs, fmt.Errorf("BindAddr %q is not an IP address", cfg.BindAddr))
	}
	if cfg.AdvertiseAddr != "" && net.ParseIP(cfg.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("AdvertiseAddr %q is not an IP address", cfg.AdvertiseAddr))
	}
	if cfg.RejoinInterval < 0 {
		errs = append(errs, fmt.Errorf("RejoinInterval %s is negative", cfg.RejoinInterval))
	}
	if cfg.SettleTime < 0 {
		errs = append(errs, fmt.Errorf("SettleTime %s is negative", cfg.SettleTime))
	}
	if cfg.Profile != ProfileLAN && cfg.Profile != ProfileLocal {
		errs = append(errs, fmt.Errorf("unknown Profile %q (want %q or %q)", cfg.Profile, ProfileLAN, ProfileLocal))
	}
	if len(cfg.ClusterLabel) > memberlist.LabelMaxSize {
		errs = append(errs, fmt.Errorf("ClusterLabel is %d bytes, limit is %d", len(cfg.ClusterLabel), memberlist.LabelMaxSize))
	}
	if err := checkKeys(cfg.Keys); len(cfg.Keys) > 0 && err != nil {
		errs = append(errs, err)
	}
	seeds := make([]seedAddr, 0, len(cfg.Seeds))
	for _, s := range cfg.Seeds {
		sa, err := parseSeed(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		seeds = append(seeds, sa)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("membership: invalid config: %w", err)
	}
	return seeds, nil
}

// parseSeed splits a seed into host and port, defaulting the port.
func parseSeed(s string) (seedAddr, error) {
	if s == "" {
		return seedAddr{}, errors.New("empty seed")
	}
	if ip := net.ParseIP(s); ip != nil { // a bare IP, including an unbracketed IPv6 one
		return seedAddr{host: ip.String(), port: DefaultSeedPort}, nil
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare name. SplitHostPort's "missing port" is the
		// only error we turn into a default; anything else is malformed.
		var ae *net.AddrError
		if errors.As(err, &ae) && ae.Err == "missing port in address" {
			return seedAddr{host: s, port: DefaultSeedPort}, nil
		}
		return seedAddr{}, fmt.Errorf("seed %q: %w", s, err)
	}
	if host == "" {
		return seedAddr{}, fmt.Errorf("seed %q: empty host", s)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return seedAddr{}, fmt.Errorf("seed %q: invalid port %q", s, portStr)
	}
	return seedAddr{host: host, port: port}, nil
}

// memberlistConfig builds memberlist's configuration from ours.
// The caller has validated cfg.
func (cfg Config) memberlistConfig(d *delegates, logger *log.Logger) *memberlist.Config {
	var mc *memberlist.Config
	switch cfg.Profile {
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
	default:
		mc = memberlist.DefaultLANConfig()
	}
	mc.Name = cfg.NodeName
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.AdvertisePort = cfg.AdvertisePort
	mc.Label = cfg.ClusterLabel
	if len(cfg.Keys) > 0 {
		// Copied so a caller reusing its slices cannot change our keys.
		keys := cloneKeys(cfg.Keys)
		// Cannot fail: the keys were checked.
		mc.Keyring, _ = memberlist.NewKeyring(keys[1:], keys[0])
	}
	if cfg.DeadNodeReclaimTime > 0 {
		mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	}
	mc.Delegate = d
	mc.Events = d
	mc.Conflict = d
	mc.Logger = logger
	if cfg.tuneMemberlist != nil {
		cfg.tuneMemberlist(mc)
	}
	return mc
}

// FailureDetection is about how long the others take to declare a silent
// member dead under profile (lan or local): the next probe, its timeout,
// and the suspicion timeout memberlist applies before it gives up on a
// suspect (SuspicionMult probe intervals at fewer than ten members; more,
// logarithmically, beyond). It is a lower bound: with many members and no
// confirmations the suspicion lasts longer. Windows that must outlast a
// node being declared dead (tests, the pause detector) derive from it.
func FailureDetection(profile string, members int) time.Duration {
	mc := memberlist.DefaultLANConfig()
	if profile == ProfileLocal {
		mc = memberlist.DefaultLocalConfig()
	}
	scale := max(1, math.Log10(float64(max(members, 1))))
	suspicion := time.Duration(float64(mc.SuspicionMult) * scale * float64(mc.ProbeInterval))
	return mc.ProbeInterval + mc.ProbeTimeout + suspicion
}
