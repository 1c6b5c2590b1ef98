package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/certs"
	"github.com/ringchat/ringchat/chatd/cluster"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/transport"
)

// clusterParts are the networked pieces of a clustered node.
type clusterParts struct {
	members   *membership.Membership
	transport *transport.Transport
	node      *cluster.Node
	creds     *certs.Peer
	metrics   *metrics.Metrics
	keyring   keyringWatch // owned by watch's goroutine

	// stateMu orders the announcements of the ACTIVE and DRAINING states,
	// so that an activation that finishes late cannot undo a drain.
	stateMu  sync.Mutex
	stopping bool // guarded by stateMu

	// mu guards what readiness reads about the link check.
	mu        sync.Mutex
	active    bool     // this node announced ACTIVE
	linkFails int      // link checks that reached no member
	linkErr   error    // the last one's error
	linkTried []string // the members it asked
}

// linkHint says what to check when no member answers over the transport.
const linkHint = "check that every node's certificate (--peer-tls-cert-file) names the node and chains to a CA the others trust (--peer-tls-ca-file), that every node speaks the same inter-node protocol version, and that the inter-node ports are reachable"

// Link check timings: each attempt asks a few members at once and waits
// linkPingTimeout at most; failed attempts are retried with a backoff from
// linkRetryMin doubling to linkRetryMax.
const (
	linkPingTimeout = 2 * time.Second
	linkRetryMin    = 200 * time.Millisecond
	linkRetryMax    = 5 * time.Second
	linkFanout      = 3
)

// startCluster creates the transport and the membership of a clustered node
// (cfg.GossipAddr set) and attaches them to node. Joining runs in the
// background: the HTTP server starts at once and /readyz reports progress.
func startCluster(ctx context.Context, cfg config.Config, node *cluster.Node, m *metrics.Metrics, httpAddr string, log *slog.Logger) (*clusterParts, error) {
	gHost, gPort, err := splitHostPort(cfg.GossipAddr, "--gossip-addr")
	if err != nil {
		return nil, err
	}
	advHost, advPort := gHost, gPort
	if cfg.GossipAdvertiseAddr != "" {
		if advHost, advPort, err = splitHostPort(cfg.GossipAdvertiseAddr, "--gossip-advertise-addr"); err != nil {
			return nil, err
		}
	}
	if advHost == "" || net.ParseIP(advHost).IsUnspecified() {
		// Bound to every interface: advertise the address others can reach,
		// as memberlist itself would pick it.
		if advHost, err = privateIP(); err != nil {
			return nil, fmt.Errorf("choose an address to advertise (set --gossip-advertise-addr): %w", err)
		}
	}
	rpcAddr := cfg.RPCAddr
	if rpcAddr == "" {
		rpcAddr = net.JoinHostPort(gHost, strconv.Itoa(gPort+1))
	}
	rpcHost, rpcPort, err := splitHostPort(rpcAddr, "--rpc-addr")
	if err != nil {
		return nil, err
	}
	rpcAdvertise := cfg.RPCAdvertiseAddr
	if rpcAdvertise == "" {
		host := rpcHost
		if host == "" || net.ParseIP(host).IsUnspecified() {
			host = advHost
		}
		rpcAdvertise = net.JoinHostPort(host, strconv.Itoa(rpcPort))
	}
	creds, err := certs.NewPeer(certs.PeerFiles{Cert: cfg.PeerTLSCertFile, Key: cfg.PeerTLSKeyFile, CA: cfg.PeerTLSCAFile},
		cfg.NodeName, cfg.ClusterReloadInterval, log.With("component", "peer-tls"))
	if err != nil {
		return nil, fmt.Errorf("inter-node TLS (--peer-tls-cert-file, --peer-tls-key-file, --peer-tls-ca-file): %w", err)
	}
	keyringFile, err := os.ReadFile(cfg.GossipKeyringFile)
	if err != nil {
		return nil, fmt.Errorf("read --gossip-keyring-file: %w", err)
	}
	gossipKeys, err := membership.ParseKeyring(keyringFile)
	if err != nil {
		return nil, fmt.Errorf("--gossip-keyring-file %s: %w", cfg.GossipKeyringFile, err)
	}

	tr, err := transport.New(transport.Config{
		NodeName:         cfg.NodeName,
		ListenAddr:       rpcAddr,
		AdvertiseAddr:    rpcAdvertise,
		Credentials:      creds,
		ProtocolVersion:  cluster.WireProto,
		ClusterLabel:     cfg.ClusterLabel,
		ReverifyInterval: cfg.ClusterReloadInterval,
		Logger:           log.With("component", "transport"),
		Metrics:          metrics.TransportMetrics{M: m},
	}, node)
	if err != nil {
		return nil, fmt.Errorf("start inter-node transport: %w", err)
	}
	node.SetPeers(tr)

	var seeds []string
	for _, s := range strings.Split(cfg.Join, ",") {
		if s = strings.TrimSpace(s); s != "" {
			seeds = append(seeds, s)
		}
	}
	ml, err := membership.New(membership.Config{
		NodeName:       cfg.NodeName,
		BindAddr:       gHost,
		BindPort:       gPort,
		AdvertiseAddr:  advHost,
		AdvertisePort:  advPort,
		Meta:           membership.Meta{RPCAddr: tr.Addr(), HTTPAddr: httpAddr, State: membership.StateJoining, Proto: cluster.WireProto},
		Seeds:          seeds,
		RejoinInterval: cfg.RejoinInterval,
		ClusterLabel:   cfg.ClusterLabel,
		Keys:           gossipKeys,
		Bootstrap:      cfg.Bootstrap || len(seeds) == 0,
		Profile:        cfg.GossipProfile,
		Logger:         log.With("component", "membership"),
	})
	if err != nil {
		_ = tr.Close()
		return nil, fmt.Errorf("start membership: %w", err)
	}
	m.GossipKeys.Set(float64(len(gossipKeys)))
	parts := &clusterParts{members: ml, transport: tr, node: node, creds: creds, metrics: m,
		keyring: keyringWatch{path: cfg.GossipKeyringFile, loaded: keyringFile}}
	parts.setCertGauges()
	return parts, nil
}

// join runs the initial join, checks the inter-node transport (checkLink)
// and marks the node active. It returns when the node is active or ctx is
// done; its caller owns the goroutine and cancels ctx at shutdown.
func (c *clusterParts) join(ctx context.Context, log *slog.Logger) {
	if err := c.members.Start(ctx); err != nil {
		if ctx.Err() == nil {
			log.Error("joining the cluster failed", "err", err)
		}
		return
	}
	if !c.checkLink(ctx, log) {
		return
	}
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.stopping || ctx.Err() != nil {
		return
	}
	if err := c.members.SetState(membership.StateActive); err != nil {
		log.Error("could not announce the active state", "err", err)
		return
	}
	c.mu.Lock()
	c.active = true
	c.mu.Unlock()
	log.Info("joined the cluster", "members", len(c.members.View().Members))
}

// checkLink waits until this node has exchanged one request and reply with
// another member over the inter-node transport, which proves that they
// trust each other's certificates, or until no other member is alive (a
// node that bootstrapped alone). Gossip and the transport are
// authenticated separately (gossip keyring and label; certificates), so a
// node whose certificate the others refuse joins gossip perfectly well;
// were it to go active, it would own rooms nobody can reach. It retries until it succeeds or ctx ends, and
// reports false in that case.
func (c *clusterParts) checkLink(ctx context.Context, log *slog.Logger) bool {
	backoff := linkRetryMin
	for {
		peers := linkCandidates(c.members.View())
		if len(peers) == 0 {
			return true // alone: nobody to talk to, nothing to check
		}
		start := time.Now()
		who, err := c.pingAny(ctx, peers)
		if err == nil {
			c.mu.Lock()
			fails := c.linkFails
			c.mu.Unlock()
			log.Info("inter-node connection authenticated", "peer", who, "took", time.Since(start).Round(time.Microsecond).String(), "failed_attempts", fails)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		names := make([]string, len(peers))
		for i, p := range peers {
			names[i] = p.Name
		}
		c.mu.Lock()
		c.linkFails++
		c.linkErr, c.linkTried = err, names
		attempts := c.linkFails
		c.mu.Unlock()
		delay := membership.Jitter(backoff)
		log.Warn("no authenticated inter-node connection to another member; staying joining",
			"tried", names, "attempt", attempts, "retry_in", delay.Round(time.Millisecond).String(), "err", err,
			"hint", linkHint)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		backoff = min(2*backoff, linkRetryMax)
	}
}

// linkCandidates picks up to linkFanout other members to ping: active ones
// first (they are settled), then the others (in a cluster starting all at
// once every node is joining, and joining nodes answer too), at random
// within each group so that a member that cannot answer is not asked by
// every newcomer first.
func linkCandidates(v membership.View) []transport.Peer {
	var active, other []transport.Peer
	for _, mem := range v.Members {
		if mem.Name == v.Self || mem.Meta.RPCAddr == "" {
			continue
		}
		p := transport.Peer{Name: mem.Name, Addr: mem.Meta.RPCAddr}
		if mem.Meta.State == membership.StateActive {
			active = append(active, p)
		} else {
			other = append(other, p)
		}
	}
	rand.Shuffle(len(active), func(i, j int) { active[i], active[j] = active[j], active[i] })
	rand.Shuffle(len(other), func(i, j int) { other[i], other[j] = other[j], other[i] })
	all := append(active, other...)
	return all[:min(len(all), linkFanout)]
}

// pingAny pings peers at once and returns the name of the first that
// answers, or every error once all have failed.
func (c *clusterParts) pingAny(ctx context.Context, peers []transport.Peer) (string, error) {
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(peers)) // late answers never block
	for _, p := range peers {
		c.node.Ping(p.Name, p.Addr, linkPingTimeout, func(err error) { results <- result{p.Name, err} })
	}
	var errs []error
	for range peers {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case r := <-results:
			if r.err == nil {
				return r.name, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		}
	}
	return "", errors.Join(errs...)
}

// ready is the node's readiness, membership's first: joined and settled
// (membership.Ready), then gone active, which a node with other members
// does only once its inter-node transport has been proved to work.
func (c *clusterParts) ready() (bool, string) {
	if ok, why := c.members.Ready(); !ok {
		return false, why
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.active:
		return true, ""
	case c.linkFails == 0:
		return false, "joining: checking the inter-node connection to other members"
	}
	return false, fmt.Sprintf("no authenticated inter-node connection yet: %s (asked %s; %d attempts; last error: %s)",
		linkHint, strings.Join(c.linkTried, ", "), c.linkFails, strings.Join(strings.Fields(c.linkErr.Error()), " "))
}

// drain hands this node's rooms to the others: it announces DRAINING, then
// waits until it owns no room (or the deadline).
func (c *clusterParts) drain(node *cluster.Node, deadline time.Time, log *slog.Logger) {
	c.stateMu.Lock()
	c.stopping = true
	if err := c.members.SetState(membership.StateDraining); err != nil {
		log.Warn("could not announce the draining state", "err", err)
	}
	c.stateMu.Unlock()
	for time.Now().Before(deadline) {
		if len(node.Owners().OwnedRooms()) == 0 {
			log.Info("every room handed off")
			return
		}
		if !node.HasActivePeers() {
			log.Warn("no active node left to take the rooms; they go with this node", "rooms", len(node.Owners().OwnedRooms()))
			return
		}
		time.Sleep(50 * time.Millisecond) // polling the hand-off progress
	}
	log.Warn("drain deadline reached with rooms still owned", "rooms", len(node.Owners().OwnedRooms()))
}

// leave says goodbye to the cluster and stops the networked parts.
func (c *clusterParts) leave(timeout time.Duration, log *slog.Logger) {
	if err := c.members.Leave(timeout); err != nil {
		log.Warn("leaving the cluster", "err", err)
	}
	if err := c.members.Shutdown(); err != nil {
		log.Warn("stopping membership", "err", err)
	}
	if err := c.transport.Close(); err != nil {
		log.Warn("stopping the transport", "err", err)
	}
}

func splitHostPort(addr, flag string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("%s %q: bad port", flag, addr)
	}
	return host, p, nil
}

// privateIP returns the first IPv4 address of an interface that is up and not
// loopback, preferring private ranges (a pod's or container's address).
func privateIP() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	var fallback string
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			if ipn.IP.IsPrivate() {
				return ipn.IP.String(), nil
			}
			if fallback == "" {
				fallback = ipn.IP.String()
			}
		}
	}
	if fallback == "" {
		return "", errors.New("no usable network interface")
	}
	return fallback, nil
}
