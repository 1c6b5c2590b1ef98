// Package config turns chatd's command line and environment into the
// settings of each package. Every flag can also be set by an environment
// variable named CHATD_ followed by the flag name in upper case with dashes
// as underscores (--max-text-bytes → CHATD_MAX_TEXT_BYTES); a flag on the
// command line wins over the environment.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Config is chatd's whole configuration.
type Config struct {
	Listen   string
	NodeName string
	LogLevel string
	Version  bool

	// TLS: the certificate and key files, both or neither.
	TLSCertFile string
	TLSKeyFile  string

	// Auth
	JWTSecretFile    string
	JWTPublicKeyFile string
	JWTJWKSFile      string
	JWTIssuer        string
	JWTAudience      string
	JWTRoomsClaim    string
	JWTLeeway        time.Duration
	AllowAnonymous   bool

	// Admin listener: the admin API, /metrics and the probes, on an
	// address of their own. AdminTokenFile and JWTJWKSFile are re-read
	// every AuthReloadInterval.
	AdminListen         string
	AdminTokenFile      string
	MetricsRequireToken bool
	AuthReloadInterval  time.Duration
	// APIKeyFile holds the server API's keys (/api/v1/ on the admin
	// listener); empty: no server API. Re-read every AuthReloadInterval.
	APIKeyFile string
	// Hooks are the backend hooks (--hook-*).
	Hooks HookConfig

	// Limits
	AllowedOrigins      string
	TrustedProxies      string
	TrustedProxyHeader  string
	MaxConnections      int
	MaxConnectionsPerIP int
	MaxRoomsPerNode     int
	MaxFrameBytes       int
	MaxTextBytes        int
	MaxRooms            int
	RatePerSecond       float64
	RateBurst           int
	RateAbuseLimit      int
	SendQueue           int
	WriteCoalesce       time.Duration
	ParkIdleReaders     bool

	// Rooms
	HistorySize     int
	DedupeWindow    int
	PresenceListMax int
	RoomIdleTTL     time.Duration

	// Storage: DataDir empty means memory-only (history lives in the
	// owner's and replicas' memory, HistorySize messages per room).
	DataDir            string
	HistoryRetention   time.Duration
	HistoryMaxMessages uint64
	StorageReserve     int64

	// Cluster
	GossipAddr          string
	GossipAdvertiseAddr string
	RPCAddr             string
	RPCAdvertiseAddr    string
	Join                string
	Bootstrap           bool
	ClusterLabel        string
	// Peer TLS (the inter-node transport) and the gossip keyring: files,
	// re-read every ClusterReloadInterval.
	PeerTLSCertFile       string
	PeerTLSKeyFile        string
	PeerTLSCAFile         string
	GossipKeyringFile     string
	ClusterReloadInterval time.Duration
	ReplicationFactor     int
	RejoinInterval        time.Duration
	DrainTimeout          time.Duration
	DrainRate             int
	GossipProfile         string
	ExpectedNodes         int
	ExpectedNodesFile     string
	RouteTimeout          time.Duration

	// Socket.IO endpoint (/socket.io/).
	SocketIONamespaces     string
	SocketIOPingTimeout    time.Duration
	SocketIORecoveryWindow time.Duration
	SocketIOClientJS       string

	// Timings
	HelloTimeout     time.Duration
	PingInterval     time.Duration
	WriteTimeout     time.Duration
	HandshakeTimeout time.Duration
	ShutdownTimeout  time.Duration
}

// EnvPrefix starts every environment variable chatd reads.
const EnvPrefix = "CHATD_"

// EnvName returns the environment variable for a flag.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// NewFlagSet declares every flag on a new FlagSet bound to c, with defaults.
func NewFlagSet(c *Config, output io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.SetOutput(output)
	host, _ := os.Hostname()

	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "address to serve HTTP and WebSocket on")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", "", "PEM certificate (chain) to serve HTTPS and wss:// with; reloaded when the file changes (needs --tls-key-file)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
	fs.StringVar(&c.NodeName, "node-name", host, "name of this node (server id in welcome frames; memberlist name in a cluster)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")

	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", "", "file holding the HS256 shared secret (at least 32 bytes)")
	fs.StringVar(&c.JWTPublicKeyFile, "jwt-public-key-file", "", "PEM public key (RSA for RS256, ECDSA P-256 for ES256)")
	fs.StringVar(&c.JWTJWKSFile, "jwt-jwks-file", "", "JSON Web Key Set file: verification keys named by kid, so keys rotate; re-read every --auth-reload-interval")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "required \"iss\" claim, if set")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "required \"aud\" claim, if set")
	fs.StringVar(&c.JWTRoomsClaim, "jwt-rooms-claim", "rooms", "claim listing the room patterns a token may join (absent: any room)")
	fs.DurationVar(&c.JWTLeeway, "jwt-leeway", 30*time.Second, "clock skew tolerated on exp/nbf/iat, at hello and for the expiry of open connections")
	fs.BoolVar(&c.AllowAnonymous, "allow-anonymous", false, "let clients connect with just a name (development only)")

	fs.StringVar(&c.AdminListen, "admin-listen", "", "address of the admin listener: /admin/ API, /metrics, /healthz, /readyz (empty: none); beyond loopback it needs --admin-token-file")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "file of bearer tokens for the admin API, one per line (several let a token rotate); re-read every --auth-reload-interval")
	fs.BoolVar(&c.MetricsRequireToken, "metrics-require-token", false, "require an admin token on the admin listener's /metrics too (default: open to whoever reaches the admin listener)")
	fs.StringVar(&c.APIKeyFile, "api-key-file", "", "file of keys for the server API (/api/v1/ on --admin-listen), one per line (several let a key rotate); re-read every --auth-reload-interval; empty: no server API")
	fs.DurationVar(&c.AuthReloadInterval, "auth-reload-interval", 10*time.Second, "how often --jwt-jwks-file, --admin-token-file and --api-key-file are re-read (at most, when used)")

	fs.StringVar(&c.AllowedOrigins, "allowed-origins", "", "comma-separated browser origins allowed to connect, or *; empty allows the server's own host")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies whose --trusted-proxy-header names the client (empty: forwarded headers are ignored)")
	fs.StringVar(&c.TrustedProxyHeader, "trusted-proxy-header", "x-forwarded-for", "header the trusted proxies append the client address to: x-forwarded-for or forwarded (RFC 7239)")
	fs.IntVar(&c.MaxConnections, "max-connections", 50000, "maximum open connections on this node (0: unlimited)")
	fs.IntVar(&c.MaxConnectionsPerIP, "max-connections-per-ip", 1000, "maximum open connections per client IP (0: unlimited)")
	fs.IntVar(&c.MaxRoomsPerNode, "max-rooms-per-node", 100000, "rooms with clients on this node; a join that would add one more is refused with node_rooms_full (0: unlimited)")
	fs.IntVar(&c.MaxFrameBytes, "max-frame-bytes", 64<<10, "largest client frame; a larger one closes the connection with 1009")
	fs.IntVar(&c.MaxTextBytes, "max-text-bytes", 4096, "longest message text in bytes")
	fs.IntVar(&c.MaxRooms, "max-rooms", 100, "rooms one connection may join")
	fs.Float64Var(&c.RatePerSecond, "rate", 20, "client frames per second allowed per connection (token bucket refill)")
	fs.IntVar(&c.RateBurst, "rate-burst", 40, "token bucket size per connection")
	fs.IntVar(&c.RateAbuseLimit, "rate-abuse-limit", 50, "rate-limited frames within 10s after which the connection is closed with 1008")
	fs.IntVar(&c.SendQueue, "send-queue", 4096, "frames queued per connection before it is closed as a slow consumer (4008)")

	fs.DurationVar(&c.WriteCoalesce, "write-coalesce", 3*time.Millisecond, "the longest a busy connection's writer waits for more frames so one write carries them, while the node is busy writing (0: always write at once)")
	fs.BoolVar(&c.ParkIdleReaders, "park-idle-readers", runtime.GOOS == "linux", "an idle WebSocket connection waits for its next frame with no goroutine, its socket watched by epoll (Linux only; false: one goroutine per connection, blocked in its read)")
	fs.IntVar(&c.HistorySize, "history-size", 1000, "messages kept per room for resume and history")
	fs.IntVar(&c.DedupeWindow, "dedupe-window", 1024, "recent client message ids remembered per room for idempotent resend")
	fs.IntVar(&c.PresenceListMax, "presence-list-max", 100, "room size (users) above which presence is sent as counts")
	fs.DurationVar(&c.RoomIdleTTL, "room-idle-ttl", 5*time.Minute, "how long an empty room stays in memory; without --data-dir its history goes with it")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory of this node's message store (history survives restarts and idle rooms); empty keeps history in memory only")
	fs.DurationVar(&c.HistoryRetention, "history-retention", 30*24*time.Hour, "with --data-dir: messages older than this are removed (0: kept for ever)")
	fs.Uint64Var(&c.HistoryMaxMessages, "history-max-messages", 0, "with --data-dir: newest messages kept per room (0: no count limit)")
	fs.Int64Var(&c.StorageReserve, "storage-reserve-bytes", 256<<20, "with --data-dir: free space kept on the data directory's filesystem; below it new messages are refused (storage_full); 0: no reserve")

	fs.StringVar(&c.GossipAddr, "gossip-addr", "", "host:port for cluster gossip (memberlist, TCP and UDP); empty runs a cluster of one")
	fs.StringVar(&c.GossipAdvertiseAddr, "gossip-advertise-addr", "", "gossip address other nodes use to reach this one (default: --gossip-addr)")
	fs.StringVar(&c.RPCAddr, "rpc-addr", "", "host:port for inter-node traffic (default: gossip host, gossip port + 1)")
	fs.StringVar(&c.RPCAdvertiseAddr, "rpc-advertise-addr", "", "inter-node address other nodes dial (default: --rpc-addr, with the gossip advertise host when the host is unspecified)")
	fs.StringVar(&c.Join, "join", "", "comma-separated seeds: host:port or DNS names (all their addresses), e.g. a Kubernetes headless Service")
	fs.BoolVar(&c.Bootstrap, "bootstrap", false, "this node may start the cluster alone when no seed answers")
	fs.StringVar(&c.ClusterLabel, "cluster-label", "ringchat", "cluster name: nodes with another label never merge")
	fs.StringVar(&c.PeerTLSCertFile, "peer-tls-cert-file", "", "PEM certificate of this node for inter-node mutual TLS; its DNS names must include --node-name (required with --gossip-addr)")
	fs.StringVar(&c.PeerTLSKeyFile, "peer-tls-key-file", "", "PEM private key of --peer-tls-cert-file")
	fs.StringVar(&c.PeerTLSCAFile, "peer-tls-ca-file", "", "PEM bundle of the CAs other nodes' certificates must chain to (list the old and the new CA to rotate it)")
	fs.StringVar(&c.GossipKeyringFile, "gossip-keyring-file", "", "file of gossip encryption keys, one per line (base64, or raw 16/24/32 bytes), the first one primary (required with --gossip-addr)")
	fs.DurationVar(&c.ClusterReloadInterval, "cluster-reload-interval", 10*time.Second, "how often the --peer-tls-* files and the gossip keyring are re-read, so certificates and keys rotate without a restart")
	fs.IntVar(&c.ReplicationFactor, "replication-factor", 2, "nodes that store a message before it is acknowledged, the owner included")
	fs.DurationVar(&c.RejoinInterval, "rejoin-interval", 30*time.Second, "how often seeds are re-resolved and re-joined and a push/pull is made with one member (heals partitions)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 25*time.Second, "how long a draining node (SIGTERM) waits for its rooms to be handed off before it moves its clients")
	fs.IntVar(&c.DrainRate, "drain-rate", 500, "connections closed per second while draining (paced so clients do not reconnect in a storm)")
	fs.IntVar(&c.ExpectedNodes, "expected-nodes", 0, "cluster size; a node that sees no majority of it refuses new messages (split-brain protection; 0 disables, for a single node)")
	fs.StringVar(&c.ExpectedNodesFile, "expected-nodes-file", "", "file holding --expected-nodes, re-read every 2s so the cluster can be resized without restarting nodes (a mounted ConfigMap key)")
	fs.DurationVar(&c.RouteTimeout, "route-timeout", 10*time.Second, "how long a request keeps retrying while its room moves before the client gets \"unavailable\"")
	fs.StringVar(&c.GossipProfile, "gossip-profile", "lan", "memberlist timing profile: lan, or local for tests on one machine")
	fs.StringVar(&c.SocketIONamespaces, "socketio-namespaces", "/", "Socket.IO namespaces served at /socket.io/, comma-separated (e.g. /,/support,/staff:token; :token refuses anonymous clients); empty turns the endpoint off")
	fs.DurationVar(&c.SocketIOPingTimeout, "socketio-ping-timeout", 20*time.Second, "how long a Socket.IO client has to answer a ping (pings come every --ping-interval)")
	fs.DurationVar(&c.SocketIORecoveryWindow, "socketio-recovery-window", 2*time.Minute, "Socket.IO connection state recovery: how old a missed message may be for a reconnecting client to recover (0: recovery off)")
	fs.StringVar(&c.SocketIOClientJS, "socketio-client-js", "", "file served at /socket.io/socket.io.min.js for pages served by chatd (socket.io-client's dist/socket.io.min.js); empty serves none")
	fs.DurationVar(&c.HelloTimeout, "hello-timeout", 10*time.Second, "time a new connection has to send hello")
	fs.DurationVar(&c.PingInterval, "ping-interval", 25*time.Second, "server ping period; a peer silent for two periods is dropped")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", 10*time.Second, "deadline of one socket write")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 5*time.Second, "deadline of the HTTP headers and WebSocket upgrade")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 20*time.Second, "deadline of the graceful shutdown on SIGTERM")
	addHookFlags(fs, &c.Hooks)

	fs.VisitAll(func(f *flag.Flag) {
		f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, EnvName(f.Name))
	})
	return fs
}

// ErrHelp is returned when -h or --help was asked for; usage has been printed.
var ErrHelp = flag.ErrHelp

// Load parses args (without the program name) over the environment.
func Load(args []string, getenv func(string) string, output io.Writer) (Config, error) {
	var c Config
	fs := NewFlagSet(&c, output)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "chatd: ringchat's WebSocket chat server.\n\nUsage: chatd [flags]\n\nEvery flag can also be set by the environment variable shown.\n\n")
		fs.PrintDefaults()
	}
	if err := removedSettings(args, getenv); err != nil {
		return c, err
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(EnvName(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("environment %s=%q: %w", EnvName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.Version {
		return c, nil // --version needs no working configuration
	}
	return c, c.Validate()
}

// removed are settings chatd no longer has, with what replaced them: a
// deployment that still sets one gets told, rather than an unknown flag,
// or worse, a secret silently ignored.
var removed = []struct{ flag, env, instead string }{
	{"cluster-secret-file", "CHATD_CLUSTER_SECRET_FILE", "inter-node connections use mutual TLS: set --peer-tls-cert-file, --peer-tls-key-file and --peer-tls-ca-file"},
	{"", "CHATD_CLUSTER_SECRET", "inter-node connections use mutual TLS: set --peer-tls-cert-file, --peer-tls-key-file and --peer-tls-ca-file"},
	{"cluster-insecure", "CHATD_CLUSTER_INSECURE", "a cluster always runs with mutual TLS and an encrypted gossip (make cluster generates throwaway certificates and a key)"},
	{"gossip-key-file", "CHATD_GOSSIP_KEY_FILE", "use --gossip-keyring-file: a file with one key is a keyring of one"},
	{"", "CHATD_GOSSIP_KEY", "secrets are read from files only: put the key in a file and pass --gossip-keyring-file"},
	{"admin-token", "CHATD_ADMIN_TOKEN", "put the token in a file and pass --admin-token-file (a secret on the command line or in the environment is visible to other processes); the admin API is served on --admin-listen"},
	{"jwt-secret", "CHATD_JWT_SECRET", "put the secret in a file and pass --jwt-secret-file (a secret on the command line or in the environment is visible to other processes)"},
}

// removedSettings refuses the settings in removed.
func removedSettings(args []string, getenv func(string) string) error {
	var errs []error
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		for _, r := range removed {
			if r.flag != "" && name == r.flag {
				errs = append(errs, fmt.Errorf("--%s was removed: %s", r.flag, r.instead))
			}
		}
	}
	for _, r := range removed {
		if getenv(r.env) != "" {
			errs = append(errs, fmt.Errorf("%s is set, but chatd no longer reads it: %s; unset it", r.env, r.instead))
		}
	}
	return errors.Join(errs...)
}

// Validate checks values that flags alone cannot.
func (c *Config) Validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %d", name, v))
		}
	}
	positive("max-frame-bytes", c.MaxFrameBytes)
	positive("max-text-bytes", c.MaxTextBytes)
	positive("max-rooms", c.MaxRooms)
	positive("rate-burst", c.RateBurst)
	positive("send-queue", c.SendQueue)
	positive("history-size", c.HistorySize)
	positive("dedupe-window", c.DedupeWindow)
	positive("presence-list-max", c.PresenceListMax)
	if c.RatePerSecond <= 0 {
		errs = append(errs, fmt.Errorf("--rate must be positive, got %v", c.RatePerSecond))
	}
	if c.MaxTextBytes > c.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("--max-text-bytes (%d) cannot exceed --max-frame-bytes (%d)", c.MaxTextBytes, c.MaxFrameBytes))
	}
	if c.SendQueue < c.HistorySize+16 {
		errs = append(errs, fmt.Errorf("--send-queue (%d) must exceed --history-size (%d) by 16 so a resume replay fits", c.SendQueue, c.HistorySize))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("set both --tls-cert-file and --tls-key-file, or neither"))
	}
	if c.JWTSecretFile == "" && c.JWTPublicKeyFile == "" && c.JWTJWKSFile == "" && !c.AllowAnonymous && c.Hooks.ConnectURL == "" {
		errs = append(errs, errors.New("no way to authenticate: set --jwt-secret-file, --jwt-public-key-file, --jwt-jwks-file, --allow-anonymous or --hook-connect-url"))
	}
	errs = append(errs, c.Hooks.validate()...)
	errs = append(errs, c.validateAdmin()...)
	if _, err := ParseTrustedProxies(c.TrustedProxies); err != nil {
		errs = append(errs, err)
	}
	if c.TrustedProxyHeader != "x-forwarded-for" && c.TrustedProxyHeader != "forwarded" {
		errs = append(errs, fmt.Errorf("--trusted-proxy-header must be x-forwarded-for or forwarded, got %q", c.TrustedProxyHeader))
	}
	if c.MaxRoomsPerNode < 0 {
		errs = append(errs, fmt.Errorf("--max-rooms-per-node must not be negative, got %d", c.MaxRoomsPerNode))
	}
	if c.AuthReloadInterval <= 0 {
		errs = append(errs, fmt.Errorf("--auth-reload-interval must be positive, got %s", c.AuthReloadInterval))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"hello-timeout", c.HelloTimeout}, {"ping-interval", c.PingInterval}, {"write-timeout", c.WriteTimeout}, {"handshake-timeout", c.HandshakeTimeout}, {"shutdown-timeout", c.ShutdownTimeout}, {"room-idle-ttl", c.RoomIdleTTL}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s must be positive, got %s", d.name, d.v))
		}
	}
	if c.HistoryRetention < 0 {
		errs = append(errs, fmt.Errorf("--history-retention must not be negative, got %s", c.HistoryRetention))
	}
	if c.StorageReserve < 0 {
		errs = append(errs, fmt.Errorf("--storage-reserve-bytes must not be negative, got %d", c.StorageReserve))
	}
	if c.ReplicationFactor < 1 {
		errs = append(errs, fmt.Errorf("--replication-factor must be at least 1, got %d", c.ReplicationFactor))
	}
	if c.GossipProfile != "lan" && c.GossipProfile != "local" {
		errs = append(errs, fmt.Errorf("--gossip-profile must be lan or local, got %q", c.GossipProfile))
	}
	if c.GossipAddr == "" && c.Join != "" {
		errs = append(errs, errors.New("--join needs --gossip-addr"))
	}
	if c.GossipAddr != "" {
		var missing []string
		for _, f := range []struct{ name, v string }{
			{"--peer-tls-cert-file", c.PeerTLSCertFile}, {"--peer-tls-key-file", c.PeerTLSKeyFile},
			{"--peer-tls-ca-file", c.PeerTLSCAFile}, {"--gossip-keyring-file", c.GossipKeyringFile},
		} {
			if f.v == "" {
				missing = append(missing, f.name)
			}
		}
		if len(missing) > 0 {
			errs = append(errs, fmt.Errorf("a cluster member (--gossip-addr) needs %s: inter-node traffic is mutual TLS and gossip is encrypted (make cluster shows how to make throwaway ones)", strings.Join(missing, ", ")))
		}
	}
	if c.ClusterReloadInterval <= 0 {
		errs = append(errs, fmt.Errorf("--cluster-reload-interval must be positive, got %s", c.ClusterReloadInterval))
	}
	if c.WriteCoalesce < 0 || c.WriteCoalesce > 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--write-coalesce must be between 0 and 100ms, got %s", c.WriteCoalesce))
	}
	if c.ExpectedNodes < 0 {
		errs = append(errs, fmt.Errorf("--expected-nodes must not be negative, got %d", c.ExpectedNodes))
	}
	if c.ExpectedNodes != 0 && c.ExpectedNodesFile != "" {
		errs = append(errs, errors.New("--expected-nodes and --expected-nodes-file are exclusive"))
	}
	if c.RouteTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--route-timeout must be positive, got %s", c.RouteTimeout))
	}
	if c.DrainRate <= 0 {
		errs = append(errs, fmt.Errorf("--drain-rate must be positive, got %d", c.DrainRate))
	}
	if c.JWTLeeway < 0 {
		errs = append(errs, fmt.Errorf("--jwt-leeway must not be negative, got %s", c.JWTLeeway))
	}
	if _, err := ParseNamespaces(c.SocketIONamespaces); err != nil {
		errs = append(errs, fmt.Errorf("--socketio-namespaces: %w", err))
	}
	if c.SocketIOPingTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--socketio-ping-timeout must be positive, got %s", c.SocketIOPingTimeout))
	}
	if c.SocketIORecoveryWindow < 0 {
		errs = append(errs, fmt.Errorf("--socketio-recovery-window must not be negative, got %s", c.SocketIORecoveryWindow))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be debug, info, warn or error, got %q", c.LogLevel))
	}
	return errors.Join(errs...)
}

// NamespaceSpec is one entry of --socketio-namespaces.
type NamespaceSpec struct {
	// Name starts with "/".
	Name string
	// TokenOnly refuses anonymous clients (":token").
	TokenOnly bool
}

// ParseNamespaces reads --socketio-namespaces: names starting with "/",
// then letters, digits, '-' or '_' (at most 24 bytes, so that rooms keep
// most of their 64 bytes), each optionally followed by ":token".
func ParseNamespaces(s string) ([]NamespaceSpec, error) {
	var out []NamespaceSpec
	seen := make(map[string]bool)
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, opt, hasOpt := strings.Cut(entry, ":")
		if hasOpt && opt != "token" {
			return nil, fmt.Errorf("namespace %q: unknown option %q (only :token)", name, opt)
		}
		if !validNamespace(name) {
			return nil, fmt.Errorf("namespace %q: use \"/\" or \"/\" followed by 1-23 letters, digits, '-' or '_'", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("namespace %q listed twice", name)
		}
		seen[name] = true
		out = append(out, NamespaceSpec{Name: name, TokenOnly: hasOpt})
	}
	return out, nil
}

func validNamespace(name string) bool {
	if name == "/" {
		return true
	}
	if len(name) < 2 || len(name) > 24 || name[0] != '/' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
