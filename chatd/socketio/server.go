// Package socketio serves Socket.IO clients at /socket.io/: Engine.IO v4
// (WebSocket and HTTP long-polling transports, the upgrade from one to the
// other, heartbeats) carrying Socket.IO v5 packets (CONNECT with an auth
// payload, EVENT, ACK, CONNECT_ERROR, DISCONNECT, namespaces), mapped onto
// the native protocol's operations: each namespace socket is a hub.Conn like
// a native session, so rooms, order, history, presence and limits are the
// native ones. docs/socketio.md is the event vocabulary.
//
// Two things are designed for a cluster without sticky sessions:
//
//   - Connection state recovery keeps nothing in server memory: the offset
//     every event carries encodes the socket's rooms and positions, so any
//     node can resume it (with the native since/epoch join) after its node
//     was drained or killed.
//   - An Engine.IO session id names the node holding the session; a
//     long-polling request or an upgrade that lands on another node is
//     forwarded there (one hop).
package socketio

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/offstack"
	"github.com/ringchat/ringchat/chatd/session"
)

// Path is where the endpoint is served (Socket.IO's default).
const Path = "/socket.io/"

// Namespace is a configured Socket.IO namespace.
type Namespace struct {
	// Name starts with "/"; "/" is the main namespace.
	Name string
	// TokenOnly refuses anonymous identities.
	TokenOnly bool
}

// Config configures the endpoint.
type Config struct {
	// Session holds the limits shared with the native protocol (frame and
	// text sizes, rooms, rate, queue, hello timeout, ping interval, write
	// timeout, history page size, token leeway).
	Session session.Config
	// PingTimeout is how long a client has to answer a ping.
	PingTimeout time.Duration
	// Namespaces are the namespaces clients may connect to.
	Namespaces []Namespace
	// RecoveryWindow is how old the oldest missed message may be for a
	// reconnecting socket to recover (0 turns recovery off).
	RecoveryWindow time.Duration
	// Self is this node's name; session ids carry it.
	Self string
	// ClientJS, when set, is served at /socket.io/socket.io.min.js (and
	// socket.io.js), as Socket.IO's own server serves its client: the
	// browser bundle of socket.io-client, for pages served by chatd.
	ClientJS []byte
	// Locate returns the client-facing address (host:port) of another
	// node, for forwarding requests of sessions held there; nil on a single
	// node.
	Locate func(node string) (addr string, ok bool)
}

// Deps are the node-wide services the endpoint uses.
type Deps struct {
	Hub     *hub.Hub
	Auth    *auth.Authenticator
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// Hooks are the backend hooks; nil or nil members: none.
	Hooks *hooks.Set
	// Workers run the sockets' packets off their read loops
	// (chatd/offstack); nil: a fresh goroutine per packet.
	Workers *offstack.Pool
}

// Conn is an Engine.IO session as the HTTP server's shutdown sees it.
type Conn interface {
	// Close closes the session with a WebSocket close code after what is
	// queued (long-polling clients get a close packet).
	Close(code int, reason string)
	// CloseWritten is closed once the close has been written.
	CloseWritten() <-chan struct{}
	// Abort drops the session at once, as a crash would.
	Abort()
}

// Hooks are what the HTTP server lends the endpoint: admission, the origin
// check and the registry of live connections its shutdown closes.
type Hooks struct {
	// Admit is called before a new session is created. It answers a
	// refused request itself and returns ok=false; otherwise release is
	// called once the session has ended.
	Admit func(w http.ResponseWriter, r *http.Request) (release func(), ok bool)
	// CheckOrigin allows or refuses a browser's Origin.
	CheckOrigin func(r *http.Request) bool
	// Track registers a live session; untrack is called when it ends.
	Track func(c Conn, transport string) (untrack func())
	// ClientAddr names the client of a request for the session's logs (the
	// address trusted proxies give, or the socket's peer); nil means
	// r.RemoteAddr.
	ClientAddr func(r *http.Request) string
}

// Server is the /socket.io/ endpoint of one node.
type Server struct {
	cfg        Config
	deps       Deps
	hooks      Hooks
	namespaces map[string]Namespace
	upgrader   websocket.Upgrader
	metrics    *sioMetrics
	forward    *httputil.ReverseProxy

	mu       sync.Mutex
	sessions map[string]*engineSession
}

// New returns the endpoint.
func New(cfg Config, deps Deps, hooks Hooks) *Server {
	s := &Server{cfg: cfg, deps: deps, hooks: hooks, namespaces: make(map[string]Namespace), sessions: make(map[string]*engineSession)}
	for _, ns := range cfg.Namespaces {
		s.namespaces[ns.Name] = ns
	}
	if len(s.namespaces) == 0 {
		s.namespaces["/"] = Namespace{Name: "/"}
	}
	s.metrics = newMetrics(deps.Metrics)
	s.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.Session.WriteTimeout,
		ReadBufferSize:   256,
		WriteBufferSize:  256, // the writer frames its batches itself (wsconn.go)
		WriteBufferPool:  &sync.Pool{},
		CheckOrigin:      hooks.CheckOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			engineError(w, status, 3, "websocket upgrade failed: "+reason.Error())
		},
	}
	s.forward = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target, _ := pr.In.Context().Value(forwardTarget{}).(*url.URL)
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.Out.Header.Set(forwardedHeader, s.cfg.Self)
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.deps.Log.Debug("socket.io forward failed", "err", err)
			engineError(w, http.StatusBadRequest, 1, "Session ID unknown")
		},
	}
	return s
}

// forwardedHeader marks a request one node forwarded to another; it is
// never forwarded again.
const forwardedHeader = "X-Ringchat-Forwarded-By"

// forwardTarget is the context key of a forwarded request's destination.
type forwardTarget struct{}

func contextWith(ctx context.Context, target *url.URL) context.Context {
	return context.WithValue(ctx, forwardTarget{}, target)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// ServeHTTP serves Engine.IO requests: a handshake (no sid), a long-poll
// (GET with sid), a post of packets (POST with sid) and a WebSocket, new or
// an upgrade of a polling session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == Path+"socket.io.min.js" || r.URL.Path == Path+"socket.io.js" {
		s.serveClient(w, r)
		return
	}
	q := r.URL.Query()
	if q.Get("EIO") != "4" {
		engineError(w, http.StatusBadRequest, 5, "Unsupported protocol version: this server speaks Engine.IO 4 (Socket.IO v3/v4 clients)")
		return
	}
	transport := q.Get("transport")
	if transport != "polling" && transport != "websocket" {
		engineError(w, http.StatusBadRequest, 0, "Transport unknown")
		return
	}
	sid := q.Get("sid")
	if sid == "" {
		s.handshake(w, r, transport)
		return
	}
	node, ok := nodeOfSID(sid)
	if ok && node != s.cfg.Self && r.Header.Get(forwardedHeader) == "" && s.cfg.Locate != nil {
		if addr, found := s.cfg.Locate(node); found {
			s.forwardTo(w, r, addr)
			return
		}
	}
	s.mu.Lock()
	es := s.sessions[sid]
	s.mu.Unlock()
	if es == nil {
		engineError(w, http.StatusBadRequest, 1, "Session ID unknown")
		return
	}
	switch {
	case transport == "websocket":
		es.serveUpgrade(w, r)
	case r.Method == http.MethodGet:
		es.servePoll(w, r)
	case r.Method == http.MethodPost:
		es.servePost(w, r)
	default:
		engineError(w, http.StatusBadRequest, 2, "Bad handshake method")
	}
}

// serveClient serves the configured client bundle.
func (s *Server) serveClient(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ClientJS == nil {
		http.Error(w, "the Socket.IO client is served when chatd runs with --socketio-client-js (socket.io-client's dist/socket.io.min.js)", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "socket.io.min.js", startTime, bytes.NewReader(s.cfg.ClientJS))
}

// startTime stands for the bundle's modification time (it is read at start).
var startTime = time.Now()

// forwardTo proxies a request of a session held by another node to it,
// WebSocket upgrades included.
func (s *Server) forwardTo(w http.ResponseWriter, r *http.Request, addr string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.metrics.forwards.Inc()
	ctx := r.Context()
	target := &url.URL{Scheme: scheme, Host: addr}
	s.forward.ServeHTTP(w, r.WithContext(contextWith(ctx, target)))
}

// handshake opens a session on this node.
func (s *Server) handshake(w http.ResponseWriter, r *http.Request, transport string) {
	if transport == "polling" && r.Method != http.MethodGet {
		engineError(w, http.StatusBadRequest, 2, "Bad handshake method")
		return
	}
	if transport == "websocket" && !websocket.IsWebSocketUpgrade(r) {
		engineError(w, http.StatusBadRequest, 3, "Bad request: this transport needs a WebSocket upgrade")
		return
	}
	if s.hooks.CheckOrigin != nil && !s.hooks.CheckOrigin(r) {
		engineError(w, http.StatusForbidden, 4, "Forbidden: origin not allowed")
		return
	}
	release := func() {}
	if s.hooks.Admit != nil {
		var ok bool
		if release, ok = s.hooks.Admit(w, r); !ok {
			return
		}
	}
	remote := r.RemoteAddr
	if s.hooks.ClientAddr != nil {
		remote = s.hooks.ClientAddr(r)
	}
	es := newEngineSession(s, newSID(s.cfg.Self), remote, release)
	if s.deps.Hooks.Connector() != nil {
		es.facts = hooks.Facts(r, hooks.TransportSocketIO, remote)
	}
	if transport == "websocket" {
		ws, err := s.upgrader.Upgrade(w, r, nil)
		if err != nil {
			release()
			return
		}
		s.register(es, "websocket")
		es.startWebSocket(ws)
		return
	}
	s.register(es, "polling")
	es.startPolling()
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	_, _ = w.Write(es.openPacket())
}

// register makes a session reachable by its id and known to the shutdown.
func (s *Server) register(es *engineSession, transport string) {
	es.transportLabel = transport
	if s.hooks.Track != nil {
		es.untrack = s.hooks.Track(es, transport)
	}
	s.metrics.sessions.WithLabelValues(transport).Inc()
	s.mu.Lock()
	s.sessions[es.sid] = es
	s.mu.Unlock()
}

// unregister forgets an ended session.
func (s *Server) unregister(es *engineSession) {
	s.mu.Lock()
	delete(s.sessions, es.sid)
	s.mu.Unlock()
	s.metrics.sessions.WithLabelValues(es.label()).Dec()
}

var sidEncoding = base64.RawURLEncoding

// newSID returns a random session id naming node: 20 random characters,
// a dot, and the node's name in base64url.
func newSID(node string) string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return sidEncoding.EncodeToString(b[:]) + "." + sidEncoding.EncodeToString([]byte(node))
}

// nodeOfSID reads the node name out of a session id.
func nodeOfSID(sid string) (string, bool) {
	_, enc, ok := strings.Cut(sid, ".")
	if !ok || len(enc) > 400 {
		return "", false
	}
	b, err := sidEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// ClientAddr turns a member's advertised HTTP address into one other nodes
// can dial: a listener on an unspecified address (0.0.0.0:8080) is reached
// on the host of its inter-node address.
func ClientAddr(httpAddr, rpcAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return httpAddr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if rh, _, err := net.SplitHostPort(rpcAddr); err == nil {
			return net.JoinHostPort(rh, port)
		}
	}
	return httpAddr
}

// engineError answers a request with Engine.IO's error body.
func engineError(w http.ResponseWriter, status, code int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := jsonMarshal(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, message})
	_, _ = w.Write(b)
}
