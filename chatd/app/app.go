// Package app assembles a chatd node from its configuration: the
// authenticator, the hub, the metrics and the HTTP server. cmd/chatd and the
// tests both start nodes through it, so the tests run exactly what ships.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/certs"
	"github.com/ringchat/ringchat/chatd/cluster"
	"github.com/ringchat/ringchat/chatd/coalesce"
	"github.com/ringchat/ringchat/chatd/config"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/moderation"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/server"
	"github.com/ringchat/ringchat/chatd/session"
	"github.com/ringchat/ringchat/chatd/socketio"
	"github.com/ringchat/ringchat/chatd/store"
	"github.com/ringchat/ringchat/chatd/version"
)

// Serve runs one chatd node with cfg on ln until ctx is cancelled, then shuts
// it down gracefully. The listener is passed in so tests (and a future
// supervisor) can pick the address.
func Serve(ctx context.Context, cfg config.Config, ln net.Listener, log *slog.Logger) error {
	return ServeWithOptions(ctx, cfg, ln, log, Options{})
}

// reserveBytes maps --storage-reserve-bytes onto the store's option: 0
// means no reserve (the store reads 0 as its default, a negative value as
// none).
func reserveBytes(flag int64) int64 {
	if flag == 0 {
		return -1
	}
	return flag
}

// callTimeout bounds one inter-node request.
const callTimeout = 5 * time.Second

// presenceBatch is a room's presence window (owner.Config.PresenceBatch):
// a lone arrival is announced at once, the arrivals and departures that
// follow within it together. As long as typing's window: short enough not
// to be noticed, long enough that a reconnect storm into a room of a
// hundred costs a few frames per member per second, not one per arrival.
const presenceBatch = 250 * time.Millisecond

// ErrKilled, as the cause of the cancellation of Serve's context
// (context.WithCancelCause), stops the node as if its process had died
// instead of gracefully: no handoff, no leave, sockets dropped without a
// close frame; other nodes find out through failure detection. It is the
// seam through which in-process tests crash a node; chatd itself always
// stops gracefully.
var ErrKilled = errors.New("chatd node killed")

// Options are seams for tests; Serve uses none.
type Options struct {
	// AdminListener, when set, is where the admin listener serves instead
	// of a new listener on cfg.AdminListen (tests pick a free port this
	// way); cfg.AdminListen must still be set, since it decides what is
	// allowed without a token. It is closed when the node stops.
	AdminListener net.Listener
}

// ServeWithOptions is Serve with test options.
func ServeWithOptions(ctx context.Context, cfg config.Config, ln net.Listener, log *slog.Logger, opts Options) error {
	adminLn := opts.AdminListener
	if adminLn != nil {
		defer adminLn.Close() // on the paths that return before serving it
	}
	authn, err := newAuthenticator(cfg, log)
	if err != nil {
		return err
	}
	var clientJS []byte
	if cfg.SocketIOClientJS != "" {
		if clientJS, err = os.ReadFile(cfg.SocketIOClientJS); err != nil {
			return fmt.Errorf("read --socketio-client-js: %w", err)
		}
	}
	var adminTokens *admin.Tokens
	if cfg.AdminTokenFile != "" {
		if adminTokens, err = admin.LoadTokens(cfg.AdminTokenFile, cfg.AuthReloadInterval, log); err != nil {
			return fmt.Errorf("--admin-token-file: %w", err)
		}
	}
	var apiKeys *api.Keys
	if cfg.APIKeyFile != "" {
		if apiKeys, err = api.LoadKeys(cfg.APIKeyFile, cfg.AuthReloadInterval, log); err != nil {
			return fmt.Errorf("--api-key-file: %w", err)
		}
	}
	if adminLn == nil && cfg.AdminListen != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("admin listener: listen on %s: %w", cfg.AdminListen, err)
		}
		defer adminLn.Close()
	}
	if cfg.TLSCertFile != "" {
		// TLS ends here, in front of the whole HTTP server: the handshake
		// runs under the server's header deadline like any slow client.
		// The admin listener serves the same certificate: its bearer
		// tokens must not cross the network in clear.
		cert, err := certs.NewReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log)
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, cert.TLSConfig())
		if adminLn != nil {
			adminLn = tls.NewListener(adminLn, cert.TLSConfig())
		}
	}
	m := metrics.New()
	hookSet, err := newHooks(cfg.Hooks, m, log)
	if err != nil {
		return err
	}
	defer hookSet.Close()
	expectedNodes := cfg.ExpectedNodes
	if cfg.ExpectedNodesFile != "" {
		if expectedNodes, err = readExpectedNodes(cfg.ExpectedNodesFile); err != nil {
			return err
		}
	}
	var st *store.Store
	storeObs := &storeObserver{m: m}
	if cfg.DataDir != "" {
		st, err = store.Open(store.Options{
			Dir:          cfg.DataDir,
			MaxAge:       cfg.HistoryRetention,
			MaxMessages:  cfg.HistoryMaxMessages,
			ReserveBytes: reserveBytes(cfg.StorageReserve),
			Logger:       log.With("component", "store"),
			Observer:     storeObs,
		})
		if err != nil {
			return fmt.Errorf("open the message store in --data-dir %s: %w", cfg.DataDir, err)
		}
		defer func() {
			if err := st.Close(); err != nil {
				log.Error("closing the message store", "err", err)
			}
		}()
		stats := st.Stats()
		log.Info("message store open", "dir", cfg.DataDir, "rooms", stats.Rooms, "messages", stats.Messages)
	}
	ownerCfg := owner.Config{
		HistorySize:      cfg.HistorySize,
		DedupeWindow:     cfg.DedupeWindow,
		PresenceListMax:  cfg.PresenceListMax,
		RoomIdleTTL:      cfg.RoomIdleTTL,
		TypingCoalesce:   250 * time.Millisecond,
		PresenceCoalesce: time.Second,
		PresenceBatch:    presenceBatch,
	}
	if st != nil {
		ownerCfg.Store = st
	}
	streamer, err := newStreamer(cfg, m, log)
	if err != nil {
		return err
	}
	if streamer != nil {
		ownerCfg.Stream = true
		ownerCfg.OnUnstreamed = streamer.Notify
	}
	h := hub.New(hub.Config{
		HistorySize:     cfg.HistorySize,
		DedupeWindow:    cfg.DedupeWindow,
		MaxRooms:        cfg.MaxRoomsPerNode,
		PresenceListMax: cfg.PresenceListMax,
		TypingInterval:  time.Second,
		AckHoldMax:      cfg.RouteTimeout + callTimeout,
		// A resume from a node that died waits for the room's new owner:
		// failure detection, its claim, the resubscription.
		CatchUpMax: 2*membership.FailureDetection(cfg.GossipProfile, max(expectedNodes, 1)) + cfg.RouteTimeout + callTimeout,
	}, m, log)
	node := cluster.New(cluster.Config{
		Self:              cfg.NodeName,
		ReplicationFactor: cfg.ReplicationFactor,
		ExpectedNodes:     expectedNodes,
		Metrics:           m,
		RouteTimeout:      cfg.RouteTimeout,
		CallTimeout:       callTimeout,
		HandoffGrace:      10 * time.Second,
	}, h, ownerCfg, log)

	retained := node.Retained
	storeObs.retained.Store(&retained)

	var parts *clusterParts
	if cfg.GossipAddr != "" {
		if parts, err = startCluster(ctx, cfg, node, m, ln.Addr().String(), log); err != nil {
			return err
		}
	}
	var members *membership.Membership
	if parts != nil {
		members = parts.members
	}

	// Every goroutine started here is stopped and waited for before Serve
	// returns.
	var wg, nodeWG sync.WaitGroup
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeWG.Add(2)
	go func() {
		defer nodeWG.Done()
		node.Run(nodeCtx, members)
	}()
	go func() {
		defer nodeWG.Done()
		node.WatchPauses(nodeCtx, members, cluster.PauseThreshold(membership.FailureDetection(cfg.GossipProfile, 1)))
	}()
	if streamer != nil {
		nodeWG.Add(1)
		go func() {
			defer nodeWG.Done()
			streamer.Run(nodeCtx, node.Owners())
		}()
	}

	scfg := ServerConfig(cfg)
	if parts != nil {
		// Ready means joined, settled, active (which needs a working
		// inter-node transport), and on the majority side: a node cut off
		// from its cluster leaves the Service's endpoints, so new clients
		// go where they can send.
		scfg.Ready = func() (bool, string) {
			if ok, why := parts.life.Ready(); !ok {
				return false, why
			}
			return node.HasQuorum()
		}
	}
	if scfg.SocketIO != nil {
		scfg.SocketIO.ClientJS = clientJS
	}
	if parts != nil && scfg.SocketIO != nil {
		// Socket.IO long-polling requests of a session held by another
		// node are forwarded to it (no sticky sessions needed).
		view := parts.members
		scfg.SocketIO.Locate = func(node string) (string, bool) {
			mem, ok := view.View().Get(node)
			return socketio.ClientAddr(mem.Meta.HTTPAddr, mem.Meta.RPCAddr), ok && mem.Meta.HTTPAddr != ""
		}
	}
	scfg.Hooks = hookSet
	// Bans and mutes are only made through the server API, so a node
	// follows the moderation log (and enforces it) when it serves the API:
	// a node without keys adds no system room to the cluster.
	var bans *moderation.State
	if apiKeys != nil {
		bans = moderation.NewState(nil)
		h.SetGate(bans)
	}
	srv := server.New(scfg, h, authn, m, log)
	var adminSrv *http.Server
	adminDone := make(chan error, 1)
	if adminLn != nil {
		docs := admin.Documents{Node: node, Owners: node.Owners(), Hub: h}
		if members != nil {
			docs.Members = members // a nil *Membership would read as clustered
		}
		adminSrv = admin.Server(withAPI(admin.Handler(admin.Config{
			Tokens:              adminTokens,
			MetricsRequireToken: cfg.MetricsRequireToken,
			Metrics:             server.MetricsHandler(m),
			Probes:              srv.Probes(),
			Views:               docs.Views(),
		}), apiKeys, cfg, node, bans, m, log), cfg.HandshakeTimeout, cfg.WriteTimeout, log)
		go func() { adminDone <- adminSrv.Serve(adminLn) }()
	}
	// stopAdmin closes the admin listener and its connections (a kill, or
	// the end of the shutdown: probes and metrics stay up while the node
	// drains).
	stopAdmin := func() {
		if adminSrv == nil {
			return
		}
		_ = adminSrv.Close()
		if err := <-adminDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "err", err)
		}
		adminSrv = nil
	}

	runCtx, stopRun := context.WithCancel(ctx)
	if cfg.ExpectedNodesFile != "" {
		w := &expectedNodesWatcher{path: cfg.ExpectedNodesFile, set: node.SetExpectedNodes, log: log}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(runCtx, expectedNodesPoll)
		}()
	}
	if bans != nil {
		follower := moderation.NewFollower(bans, h, node, log.With("component", "moderation"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			follower.Run(runCtx)
		}()
	}
	if parts != nil {
		wg.Add(2)
		go func() {
			defer wg.Done()
			parts.life.Join(runCtx)
		}()
		go func() {
			defer wg.Done()
			parts.watch(runCtx, cfg.ClusterReloadInterval, log)
		}()
	}
	// On SIGTERM: fail readiness, hand rooms off, then let the server move
	// the clients (paced 1012 closes) and stop.
	serverCtx, stopServer := context.WithCancel(context.Background())
	killed := false
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-runCtx.Done()
		if killed = errors.Is(context.Cause(ctx), ErrKilled); killed {
			kill(parts, srv, stopAdmin)
			stopServer()
			return
		}
		srv.SetDraining()
		if parts != nil && ctx.Err() != nil {
			log.Info("draining: handing rooms off")
			parts.life.Drain(nodeRooms{node}, time.Now().Add(cfg.DrainTimeout))
		}
		stopServer()
	}()

	adminAddr := ""
	if adminLn != nil {
		adminAddr = adminLn.Addr().String()
	}
	log.Info("chatd listening", "addr", ln.Addr().String(), "admin", adminAddr, "node", cfg.NodeName,
		"version", version.Version, "auth", strings.Join(authn.Modes(), ","), "clustered", parts != nil,
		"tls", cfg.TLSCertFile != "", "admin_token", adminTokens != nil, "api", apiKeys != nil)
	err = srv.Serve(serverCtx, ln)
	stopRun()
	wg.Wait() // the drain or kill goroutine has finished; killed is settled
	stopAdmin()
	if parts != nil && !killed {
		parts.leave(5*time.Second, log)
	}
	stopNode()
	nodeWG.Wait()
	node.Close()
	return err
}

// kill stops the node's network at once, as a process that died would
// (ErrKilled): membership and transport without a goodbye, client and admin
// connections without a close frame.
func kill(parts *clusterParts, srv *server.Server, stopAdmin func()) {
	if parts != nil {
		_ = parts.members.Shutdown()
		_ = parts.transport.Close()
	}
	srv.Abort()
	stopAdmin()
}

func newAuthenticator(cfg config.Config, log *slog.Logger) (*auth.Authenticator, error) {
	ac := auth.Config{
		Issuer:         cfg.JWTIssuer,
		Audience:       cfg.JWTAudience,
		AllowAnonymous: cfg.AllowAnonymous,
		Leeway:         cfg.JWTLeeway,
		RoomsClaim:     cfg.JWTRoomsClaim,
	}
	if cfg.JWTSecretFile != "" {
		secret, err := auth.ReadHMACSecretFile(cfg.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read --jwt-secret-file: %w", err)
		}
		if len(secret) == 0 {
			// Without this check auth.New would see no secret at all and
			// chatd would start, refusing every token.
			return nil, fmt.Errorf("--jwt-secret-file %s is empty", cfg.JWTSecretFile)
		}
		ac.HMACSecret = secret
	}
	if cfg.JWTJWKSFile != "" {
		set, err := loadKeySet(cfg.JWTJWKSFile, cfg.AuthReloadInterval, log)
		if err != nil {
			return nil, err
		}
		ac.KeySet = set.Get
	}
	if cfg.JWTPublicKeyFile != "" {
		pem, err := auth.ReadPublicKeyFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, err
		}
		ac.PublicKeyPEM = pem
	}
	a, err := auth.New(ac)
	if err != nil {
		return nil, fmt.Errorf("configure authentication: %w", err)
	}
	return a, nil
}

// ServerConfig maps the flat configuration onto the server's settings.
func ServerConfig(cfg config.Config) server.Config {
	var origins []string
	for _, o := range strings.Split(cfg.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	var sio *socketio.Config
	if specs, _ := config.ParseNamespaces(cfg.SocketIONamespaces); len(specs) > 0 {
		sio = &socketio.Config{PingTimeout: cfg.SocketIOPingTimeout, RecoveryWindow: cfg.SocketIORecoveryWindow, Self: cfg.NodeName}
		for _, ns := range specs {
			sio.Namespaces = append(sio.Namespaces, socketio.Namespace{Name: ns.Name, TokenOnly: ns.TokenOnly})
		}
	}
	proxies, _ := config.ParseTrustedProxies(cfg.TrustedProxies) // validated by config
	return server.Config{
		SocketIO:            sio,
		MaxConnections:      cfg.MaxConnections,
		MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		TrustedProxies:      proxies,
		ProxyHeader:         cfg.TrustedProxyHeader,
		RetryAfter:          5 * time.Second,
		AllowedOrigins:      origins,
		HandshakeTimeout:    cfg.HandshakeTimeout,
		ReadHeaderTimeout:   cfg.HandshakeTimeout,
		ShutdownTimeout:     cfg.ShutdownTimeout,
		DrainRate:           cfg.DrainRate,
		ParkIdleReaders:     cfg.ParkIdleReaders,
		Session: session.Config{
			ServerID:        cfg.NodeName,
			MaxFrameBytes:   cfg.MaxFrameBytes,
			MaxTextBytes:    cfg.MaxTextBytes,
			MaxRooms:        cfg.MaxRooms,
			RatePerSecond:   cfg.RatePerSecond,
			RateBurst:       cfg.RateBurst,
			RateAbuseLimit:  cfg.RateAbuseLimit,
			RateAbuseWindow: 10 * time.Second,
			QueueFrames:     cfg.SendQueue,
			HelloTimeout:    cfg.HelloTimeout,
			TokenLeeway:     cfg.JWTLeeway,
			PingInterval:    cfg.PingInterval,
			WriteTimeout:    cfg.WriteTimeout,
			BatchBytes:      32 << 10,
			Coalescer:       coalesce.New(cfg.WriteCoalesce),
			HistoryLimit:    50,
			Limits: protocol.Limits{
				MaxFrameBytes:  cfg.MaxFrameBytes,
				MaxTextBytes:   cfg.MaxTextBytes,
				MaxRooms:       cfg.MaxRooms,
				RatePerSecond:  cfg.RatePerSecond,
				RateBurst:      cfg.RateBurst,
				HistoryKept:    cfg.HistorySize,
				PresenceListAt: cfg.PresenceListMax,
			},
		},
	}
}

// withAPI mounts the server API (/api/v1/) next to the admin listener's
// own routes when keys are configured. Without --api-key-file nothing is
// mounted and /api/v1/ answers the admin handler's 404: an API open to
// whoever reaches the admin listener is not an option, and keys are the
// only way to use it (docs/api.md).
func withAPI(adminH http.Handler, keys *api.Keys, cfg config.Config, node *cluster.Node, bans api.Bans, m *metrics.Metrics, log *slog.Logger) http.Handler {
	if keys == nil {
		return adminH
	}
	mux := http.NewServeMux()
	mux.Handle(api.Prefix, api.Handler(api.Config{
		Router:       node,
		Moderator:    node,
		Inspector:    inspector{node},
		Bans:         bans,
		Keys:         keys,
		MaxTextBytes: cfg.MaxTextBytes,
		Timeout:      apiTimeout(cfg),
		Requests:     m.APIRequests,
		Log:          log.With("component", "api"),
	}))
	mux.Handle("/", adminH)
	return mux
}

// apiTimeout bounds an API call's wait for the owners: as long as a
// client's send may retry while its room moves (--route-timeout, plus one
// inter-node request), within four fifths of --write-timeout, the
// deadline of the whole response, so the 503 still gets written.
func apiTimeout(cfg config.Config) time.Duration {
	return min(cfg.RouteTimeout+callTimeout, cfg.WriteTimeout*4/5)
}
