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
	type answer struct {
		closed    int
		unreached []string
	}
	// Buffered: an answer after the handler gave up never blocks.
	answers := make(chan answer, 1)
	h.cfg.Moderator.DisconnectUser(user, code, reason, func(closed int, unreached []string) {
		answers <- answer{closed, slices.Clone(unreached)}
	})
	timer := time.NewTimer(h.cfg.Timeout)
	defer timer.Stop()
	select {
	case a := <-answers:
		if a.unreached == nil {
			a.unreached = []string{}
		}
		writeJSON(w, http.StatusOK, DisconnectResponse{User: user, Closed: a.closed, Code: code, Unreached: a.unreached})
	case <-timer.C:
		e := &Error{Code: CodeUnavailable, Message: "not every node answered in time; some connections may be closed: retry"}
		writeError(w, statusOf(e), e)
	case <-r.Context().Done():
	}
}
