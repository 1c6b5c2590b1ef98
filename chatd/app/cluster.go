package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/certs"
	"github.com/ringchat/ringchat/chatd/cluster"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/lifecycle"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// clusterParts are the networked pieces of a clustered node and the
// lifecycle that walks it through its membership states.
type clusterParts struct {
	members   *membership.Membership
	transport *transport.Transport
	node      *cluster.Node
	creds     *certs.Peer
	metrics   *metrics.Metrics
	keyring   keyringWatch // owned by watch's goroutine
	life      *lifecycle.Lifecycle
}

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
		ProtocolVersion:  rpc.Version,
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
		Meta:           membership.Meta{RPCAddr: tr.Addr(), HTTPAddr: httpAddr, State: membership.StateJoining, Proto: rpc.Version},
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
		keyring: keyringWatch{path: cfg.GossipKeyringFile, loaded: keyringFile},
		life:    lifecycle.New(lifecycle.Config{}, ml, node, log.With("component", "lifecycle"))}
	parts.setCertGauges()
	return parts, nil
}

// nodeRooms is what a drain watches on the cluster node.
type nodeRooms struct{ node *cluster.Node }

func (r nodeRooms) OwnedRoomCount() int  { return len(r.node.Owners().OwnedRooms()) }
func (r nodeRooms) HasActivePeers() bool { return r.node.HasActivePeers() }

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
