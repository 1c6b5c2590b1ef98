// Package hooks asks the application's backend, over HTTP, about what
// clients do: the connect hook decides a connection's identity (from a
// cookie, say, instead of a JWT), the join hook allows or refuses a join
// (fresh or resuming), and the send hook allows, refuses or rewrites a
// room message before it is sequenced. Each hook has its own URL, timeout,
// failure policy, retries and circuit breaker; docs/api.md documents the
// request and reply formats, docs/protocol.md §10 how the connect hook
// composes with JWT and anonymous authentication.
//
// Sessions (chatd/session, chatd/socketio) see the hooks through the small
// interfaces Connector, Joiner and Sender, so a hook is one call on the
// connection's own goroutine: a slow backend delays that connection's
// requests and nobody else's, and no hub or room lock is held meanwhile.
package hooks

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Hook names: the "hook" member of every request, the metrics' hook label
// and the X-Ringchat-Hook header.
const (
	HookConnect = "connect"
	HookJoin    = "join"
	HookSend    = "send"
)

// Transports: the "transport" member of every request.
const (
	// TransportWS is the native protocol at /ws.
	TransportWS = "ws"
	// TransportSocketIO is Socket.IO at /socket.io/ (any Engine.IO
	// transport: WebSocket or long-polling).
	TransportSocketIO = "socket.io"
)

// Results of a reply's "result" member.
const (
	ResultAllow   = "allow"
	ResultDeny    = "deny"
	ResultReplace = "replace" // send hook only
)

// Auth error codes of a hello the connect hook refused. They reach the
// client as the close reason's code in logs and metrics (native) or as the
// CONNECT error's code (Socket.IO).
const (
	// CodeHookDenied: the backend answered deny; the reason is its own.
	CodeHookDenied = "hook_denied"
	// CodeHookUnavailable: the backend failed (down, timed out, a bad
	// answer, or its circuit breaker is open) and the hook's failure
	// policy is deny. The client should retry later.
	CodeHookUnavailable = "hook_unavailable"
)

// ConnectRequest is what the connect hook receives: the facts of the
// connection's HTTP request and its hello (or Socket.IO CONNECT auth).
type ConnectRequest struct {
	Hook      string `json:"hook"`
	Transport string `json:"transport"`
	// RemoteAddr is the client's address: what --trusted-proxies name,
	// or the socket's peer (host:port).
	RemoteAddr string `json:"remote_addr"`
	// Origin, Cookie and Authorization are the request's headers of these
	// names, verbatim (absent when the request had none).
	Origin        string `json:"origin,omitempty"`
	Cookie        string `json:"cookie,omitempty"`
	Authorization string `json:"authorization,omitempty"`
	// Token and Name are the hello's (or the CONNECT auth payload's). A
	// token reaches the hook only when chatd has no JWT key to check it
	// with: an opaque token of the backend's own.
	Token string `json:"token,omitempty"`
	Name  string `json:"name,omitempty"`
	// Namespace is the Socket.IO namespace connected to.
	Namespace string `json:"namespace,omitempty"`
}

// JoinRequest is what the join hook receives.
type JoinRequest struct {
	Hook      string `json:"hook"`
	Transport string `json:"transport"`
	Session   string `json:"session"`
	User      string `json:"user"`
	Anonymous bool   `json:"anonymous"`
	// Room is the room's native name (a Socket.IO namespace's rooms carry
	// its prefix: "/support/billing").
	Room string `json:"room"`
	// Resume is true for a join that resumes from Since (after a
	// reconnect, or a Socket.IO connection state recovery).
	Resume bool    `json:"resume"`
	Since  *uint64 `json:"since,omitempty"`
}

// SendRequest is what the send hook receives.
type SendRequest struct {
	Hook      string `json:"hook"`
	Transport string `json:"transport"`
	Session   string `json:"session"`
	User      string `json:"user"`
	Anonymous bool   `json:"anonymous"`
	Room      string `json:"room"`
	// CID is the client's message id. With the room and the user it is
	// the call's idempotency key: a send hook call is retried only when it
	// has one, and the retry carries the same three.
	CID  string `json:"cid,omitempty"`
	Text string `json:"text"`
}

// Reply is a hook's answer: {"result":"allow"} (with "user" for the
// connect hook), {"result":"deny","reason":"..."}, or, from the send hook,
// {"result":"replace","text":"..."}.
type Reply struct {
	Result string `json:"result"`
	User   string `json:"user,omitempty"`
	Reason string `json:"reason,omitempty"`
	Text   string `json:"text,omitempty"`
}

// Verdict is what a hook decided, the failure policy applied.
type Verdict struct {
	// Allowed: go on (with User for a connect, Text when Replaced).
	Allowed bool
	// User is the identity the connect hook gave.
	User string
	// Replaced: the send hook rewrote the message; Text is the new text.
	Replaced bool
	Text     string
	// Reason is the backend's reason for a deny, cleaned for clients.
	Reason string
	// Failed: the backend did not answer usefully and the failure policy
	// decided Allowed.
	Failed bool
}

// Connector is the connect hook.
type Connector interface {
	Connect(ctx context.Context, req ConnectRequest) Verdict
}

// Joiner is the join hook.
type Joiner interface {
	Join(ctx context.Context, req JoinRequest) Verdict
}

// Sender is the send hook.
type Sender interface {
	Send(ctx context.Context, req SendRequest) Verdict
}

// Set is the hooks a node is configured with; a nil member (or a nil Set)
// is a hook not configured, which allows everything.
type Set struct {
	Connect Connector
	Join    Joiner
	Send    Sender

	closeIdle func()
}

// Joiner returns the join hook, or nil; s may be nil.
func (s *Set) Joiner() Joiner {
	if s == nil {
		return nil
	}
	return s.Join
}

// Sender returns the send hook, or nil; s may be nil.
func (s *Set) Sender() Sender {
	if s == nil {
		return nil
	}
	return s.Send
}

// Connector returns the connect hook, or nil; s may be nil.
func (s *Set) Connector() Connector {
	if s == nil {
		return nil
	}
	return s.Connect
}

// Close drops the idle keep-alive connections to the backend, at
// shutdown. Calls in flight end by their own timeouts.
func (s *Set) Close() {
	if s != nil && s.closeIdle != nil {
		s.closeIdle()
	}
}

// Refusal is the error frame a refused join or send earns: forbidden with
// the backend's reason when it said deny, unavailable (retry later) when it
// failed and the failure policy is deny. id and room name the request.
func (v Verdict) Refusal(hook, id, room string) *protocol.Error {
	var e *protocol.Error
	switch {
	case v.Failed:
		e = protocol.NewError(protocol.CodeUnavailable, id, "the "+hook+" hook is unavailable; retry later")
	case v.Reason != "":
		e = protocol.NewError(protocol.CodeForbidden, id, v.Reason)
	default:
		e = protocol.NewError(protocol.CodeForbidden, id, "refused by the "+hook+" hook")
	}
	e.Room = room
	return e
}

// Authenticate decides a hello's identity with the connect hook c and the
// authenticator a (docs/protocol.md §10):
//
//   - without a connect hook (c nil), a alone decides, as always;
//   - a hello with a token, on a node that has JWT keys, is a JWT hello:
//     a checks it and the hook is not called;
//   - every other hello (no token, or a token while chatd has no JWT key
//     to check it with: the backend's own opaque token) goes to the hook,
//     whose allow names the user (never anonymous, no room restriction,
//     no expiry) and whose deny refuses the hello with CodeHookDenied;
//   - when the backend fails, the failure policy deny refuses with
//     CodeHookUnavailable, and allow falls back to a, as if there were no
//     hook (an anonymous name where --allow-anonymous, else refused).
//
// Every error returned is an *auth.Error.
func Authenticate(ctx context.Context, c Connector, a *auth.Authenticator, req ConnectRequest) (auth.Identity, error) {
	if c == nil || (req.Token != "" && hasJWTKeys(a)) {
		return a.Authenticate(req.Token, req.Name)
	}
	req.Hook = HookConnect
	v := c.Connect(ctx, req)
	switch {
	case v.Allowed && !v.Failed:
		return auth.Identity{UserID: v.User}, nil
	case v.Allowed:
		return a.Authenticate(req.Token, req.Name)
	case v.Failed:
		return auth.Identity{}, &auth.Error{Code: CodeHookUnavailable, Reason: "connect hook unavailable; retry later"}
	case v.Reason != "":
		return auth.Identity{}, &auth.Error{Code: CodeHookDenied, Reason: v.Reason}
	default:
		return auth.Identity{}, &auth.Error{Code: CodeHookDenied, Reason: "refused by the connect hook"}
	}
}

// hasJWTKeys reports whether a can check tokens (any mode but anonymous).
func hasJWTKeys(a *auth.Authenticator) bool {
	for _, m := range a.Modes() {
		if m != "anonymous" {
			return true
		}
	}
	return false
}

// cleanReason makes a backend's reason fit for clients: printable, valid
// UTF-8, at most auth.MaxReasonLen bytes (it may travel in a WebSocket
// close frame), cut at a character boundary.
func cleanReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	if len(s) <= auth.MaxReasonLen {
		return s
	}
	cut := auth.MaxReasonLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// validUser checks a connect hook's user as chatd checks a token's
// subject: 1 to auth.MaxUserIDLen bytes of printable UTF-8 (user ids end up
// in logs and in other clients' screens).
func validUser(u string) bool {
	if u == "" || len(u) > auth.MaxUserIDLen || !utf8.ValidString(u) {
		return false
	}
	for _, r := range u {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// CheckSend asks the send hook about a room message and returns the text to
// publish (the client's, or the backend's replacement), or the error frame
// the client gets instead: the hook's refusal, or text_too_long when a
// replacement exceeds maxText (the backend broke the limit every client
// text obeys, so the message is refused rather than cut). id names the
// request in the error frame.
func CheckSend(h Sender, req SendRequest, id string, maxText int) (string, *protocol.Error) {
	v := h.Send(context.Background(), req)
	if !v.Allowed {
		return "", v.Refusal(HookSend, id, req.Room)
	}
	if !v.Replaced {
		return req.Text, nil
	}
	if len(v.Text) > maxText {
		e := protocol.NewError(protocol.CodeTextTooLong, id, "the send hook's replacement text is longer than "+strconv.Itoa(maxText)+" bytes")
		e.Room = req.Room
		return "", e
	}
	return v.Text, nil
}

// Facts collects the connect hook's facts of a connection's HTTP request
// (the WebSocket upgrade, or the Engine.IO handshake); remote is the client
// address as admitted (what --trusted-proxies name, or the socket's peer).
func Facts(r *http.Request, transport, remote string) *ConnectRequest {
	return &ConnectRequest{
		Hook:          HookConnect,
		Transport:     transport,
		RemoteAddr:    remote,
		Origin:        r.Header.Get("Origin"),
		Cookie:        strings.Join(r.Header.Values("Cookie"), "; "),
		Authorization: r.Header.Get("Authorization"),
	}
}
