package api

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Moderator closes a user's connections on every node. chatd's cluster
// node satisfies it, next to Router.
type Moderator interface {
	// DisconnectUser closes every connection of user on every live node
	// with the WebSocket close code and reason. reply gets how many were
	// closed, and the nodes that did not carry the order out (unreachable,
	// or of an older release that refuses it).
	DisconnectUser(user string, code int, reason string, reply func(closed int, unreached []string))
	// Kick makes every connection of user on every live node leave room,
	// telling it reason. reply gets how many left, and the nodes that did
	// not carry the order out.
	Kick(room, user, reason string, reply func(kicked int, unreached []string))
	// SubscribeUser joins every connection of user on every live node to
	// room, as if each had sent a join. reply gets how many joined, and the
	// nodes that did not carry the order out.
	SubscribeUser(room, user string, reply func(subscribed int, unreached []string))
}

// MaxReasonLen bounds a moderation reason: it travels in a WebSocket close
// frame, whose reason has at most 123 bytes.
const MaxReasonLen = 120

// Default close reasons, when a disconnect gives none.
const (
	DefaultDisconnectReason            = "disconnected by the server"
	DefaultDisconnectNoReconnectReason = "disconnected by the server; do not reconnect"
)

// DisconnectRequest is the body of POST /api/v1/users/{user}/disconnect.
type DisconnectRequest struct {
	// Reason goes into the close frame; absent: a default reason.
	Reason string `json:"reason,omitempty"`
	// Reconnect says whether the clients may reconnect: true (the
	// default) closes with protocol.CloseDisconnected, false with
	// protocol.CloseDisconnectedNoReconnect.
	Reconnect *bool `json:"reconnect,omitempty"`
}

// DisconnectResponse answers a disconnect.
type DisconnectResponse struct {
	User string `json:"user"`
	// Closed counts the connections closed, over every node that answered.
	Closed int `json:"closed"`
	// Code is the close code the connections got.
	Code int `json:"code"`
	// Unreached lists the nodes that did not carry the order out: their
	// connections of the user may still be open. Retry the call.
	Unreached []string `json:"unreached"`
}

// maxModerationBody bounds a moderation call's body: a reason of
// MaxReasonLen bytes escaped as \uXXXX, and the other members.
const maxModerationBody = 6*MaxReasonLen + 1024

// checkUser validates a user named in a path or a body: required, and as
// a token's subject.
func checkUser(user, field string) *Error {
	if user == "" {
		return &Error{Code: CodeBadRequest, Field: field, Message: field + ": a user is required"}
	}
	if err := validateUser(user); err != nil {
		return &Error{Code: CodeBadRequest, Field: field, Message: field + ": " + err.Error()}
	}
	return nil
}

// checkReason validates a moderation reason: it must fit a close frame
// and be printable, as it is shown to the user.
func checkReason(reason string) *Error {
	if len(reason) > MaxReasonLen {
		return &Error{Code: CodeBadRequest, Field: "reason", Message: fmt.Sprintf("reason: longer than %d bytes", MaxReasonLen)}
	}
	if reason == "" {
		return nil
	}
	if err := validateUser(reason); err != nil {
		return &Error{Code: CodeBadRequest, Field: "reason", Message: "reason: " + err.Error()}
	}
	return nil
}

func (h *handler) disconnect(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("user")
	if e := checkUser(user, "user"); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	var req DisconnectRequest
	if e, status := decode(w, r, maxModerationBody, &req); e != nil {
		writeError(w, status, e)
		return
	}
	if e := checkReason(req.Reason); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	code, reason := protocol.CloseDisconnected, req.Reason
	if req.Reconnect != nil && !*req.Reconnect {
		code = protocol.CloseDisconnectedNoReconnect
		if reason == "" {
			reason = DefaultDisconnectNoReconnectReason
		}
	} else if reason == "" {
		reason = DefaultDisconnectReason
	}
	h.everyNode(w, r, func(reply func(int, []string)) {
		h.cfg.Moderator.DisconnectUser(user, code, reason, reply)
	}, func(closed int, unreached []string) any {
		return DisconnectResponse{User: user, Closed: closed, Code: code, Unreached: unreached}
	})
}

// everyNode runs a call that every node carries out, waits for its
// answer within the API's timeout, and writes answer's body; past the
// timeout it answers 503 (the call is safe to repeat).
func (h *handler) everyNode(w http.ResponseWriter, r *http.Request, run func(reply func(int, []string)), answer func(n int, unreached []string) any) {
	type result struct {
		n         int
		unreached []string
	}
	// Buffered: an answer after the handler gave up never blocks.
	results := make(chan result, 1)
	run(func(n int, unreached []string) { results <- result{n, slices.Clone(unreached)} })
	timer := time.NewTimer(h.cfg.Timeout)
	defer timer.Stop()
	select {
	case res := <-results:
		if res.unreached == nil {
			res.unreached = []string{}
		}
		writeJSON(w, http.StatusOK, answer(res.n, res.unreached))
	case <-timer.C:
		e := &Error{Code: CodeUnavailable, Message: "not every node answered in time; the order may be carried out in part: retry"}
		writeError(w, statusOf(e), e)
	case <-r.Context().Done():
	}
}

// KickRequest is the body of POST /api/v1/rooms/{room}/kick.
type KickRequest struct {
	// User is the user to make leave the room. Required.
	User string `json:"user"`
	// Reason goes into the left frame the connections get.
	Reason string `json:"reason,omitempty"`
}

// KickResponse answers a kick.
type KickResponse struct {
	Room string `json:"room"`
	User string `json:"user"`
	// Kicked counts the connections that left the room, over every node
	// that answered.
	Kicked int `json:"kicked"`
	// Unreached lists the nodes that did not carry the order out: their
	// connections of the user may still be in the room. Retry the call.
	Unreached []string `json:"unreached"`
}

func (h *handler) kick(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := protocol.ValidateRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRoom, Field: "room", Message: "room: " + err.Error()})
		return
	}
	var req KickRequest
	if e, status := decode(w, r, maxModerationBody, &req); e != nil {
		writeError(w, status, e)
		return
	}
	if e := checkUser(req.User, "user"); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	if e := checkReason(req.Reason); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	h.everyNode(w, r, func(reply func(int, []string)) {
		h.cfg.Moderator.Kick(room, req.User, req.Reason, reply)
	}, func(kicked int, unreached []string) any {
		return KickResponse{Room: room, User: req.User, Kicked: kicked, Unreached: unreached}
	})
}

// SubscribeRequest is the body of POST /api/v1/rooms/{room}/subscriptions.
type SubscribeRequest struct {
	// User is the user whose connections join the room. Required.
	User string `json:"user"`
}

// SubscribeResponse answers a server-side subscription.
type SubscribeResponse struct {
	Room string `json:"room"`
	User string `json:"user"`
	// Subscribed counts the connections that joined the room, over every
	// node that answered (connections already in it, or at their room
	// limit, are not counted).
	Subscribed int `json:"subscribed"`
	// Unreached lists the nodes that did not carry the order out: their
	// connections of the user may not be in the room. Retry the call.
	Unreached []string `json:"unreached"`
}

func (h *handler) subscribe(w http.ResponseWriter, r *http.Request) {
	room, ok := pathRoom(w, r)
	if !ok {
		return
	}
	var req SubscribeRequest
	if e, status := decode(w, r, maxModerationBody, &req); e != nil {
		writeError(w, status, e)
		return
	}
	if e := checkUser(req.User, "user"); e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	if h.cfg.Bans != nil && banned(h.cfg.Bans, req.User, room) {
		writeError(w, http.StatusConflict, &Error{Code: CodeBanned, Field: "user", Message: "the user is banned from the room; lift the ban first"})
		return
	}
	h.everyNode(w, r, func(reply func(int, []string)) {
		h.cfg.Moderator.SubscribeUser(room, req.User, reply)
	}, func(subscribed int, unreached []string) any {
		return SubscribeResponse{Room: room, User: req.User, Subscribed: subscribed, Unreached: unreached}
	})
}

// banned reports whether a ban in force keeps user out of room, as this
// node knows the bans (every node's hub refuses the join anyway).
func banned(b Bans, user, room string) bool {
	for _, scope := range []string{room, ""} {
		for _, e := range b.List(false, scope, true) {
			if e.User == user {
				return true
			}
		}
	}
	return false
}
