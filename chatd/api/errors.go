package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Error codes of the API's error bodies. They are stable: callers switch
// on them, so a code is never renamed or reused (docs/api.md lists them).
const (
	// CodeUnauthorized (401): no Authorization header, another scheme, or
	// a key that is not in --api-key-file.
	CodeUnauthorized = "unauthorized"
	// CodeNotFound (404): no such route under /api/v1/.
	CodeNotFound = "not_found"
	// CodeMethodNotAllowed (405): the route exists, not with this method.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeBodyTooLarge (413): the body exceeds the bound tied to
	// --max-text-bytes.
	CodeBodyTooLarge = "body_too_large"
	// CodeBadJSON (400): the body is not one JSON object of the request's
	// schema: a syntax error, an unknown member, a member of the wrong type.
	CodeBadJSON = "bad_json"
	// CodeBadRequest (400): a member or parameter is missing or out of
	// range; field names it.
	CodeBadRequest = "bad_request"
	// CodeInvalidRoom (400): a room name the client protocol refuses.
	CodeInvalidRoom = "invalid_room"
	// CodeNoSuchMessage (404): a deletion's seq holds no message to
	// delete: removed by retention, not written yet, or a deletion.
	CodeNoSuchMessage = "no_such_message"
	// CodeTextTooLong (400): text is longer than --max-text-bytes.
	CodeTextTooLong = "text_too_long"
	// CodeUnavailable (503, Retry-After): the room's owner cannot take the
	// request now (it is moving, the node is on the minority side of a
	// partition, or it did not answer in time). Retry; a publish with the
	// same idempotency key is stored once.
	CodeUnavailable = "unavailable"
	// CodeStorageFull (503, Retry-After): a node that must store the
	// message is short of disk space; nothing was stored.
	CodeStorageFull = protocol.CodeStorageFull
	// CodeStorageFailed (503, Retry-After): a node that must store the
	// message cannot write to its disk; nothing was acknowledged.
	CodeStorageFailed = protocol.CodeStorageFailed
	// CodeBanned (409): the user is banned from the room, so the server
	// will not join them to it.
	CodeBanned = protocol.CodeBanned
)

// Error is the API's one error shape, in an object's "error" member:
// {"error":{"code":"...","message":"...","field":"..."}}.
type Error struct {
	// Code is one of the Code constants.
	Code string `json:"code"`
	// Message says what went wrong, for people.
	Message string `json:"message"`
	// Field names the member or parameter at fault, when there is one
	// ("text", "rooms[2]", "limit").
	Field string `json:"field,omitempty"`
}

// Error implements error.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// errorBody is the body of an error response.
type errorBody struct {
	Error *Error `json:"error"`
}

// ownerError turns a Router's error into the API's: a storage refusal
// keeps its code, anything else is unavailable.
func ownerError(err error) *Error {
	var pe *protocol.Error
	if errors.As(err, &pe) && (pe.Code == protocol.CodeStorageFull || pe.Code == protocol.CodeStorageFailed) {
		return &Error{Code: pe.Code, Message: pe.Message}
	}
	return &Error{Code: CodeUnavailable, Message: "the room cannot take the request now; retry: " + err.Error()}
}

// statusOf is the HTTP status of an owner's error.
func statusOf(e *Error) int {
	switch e.Code {
	case CodeUnavailable, CodeStorageFull, CodeStorageFailed:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError writes e with status; a 503 says when to retry.
func writeError(w http.ResponseWriter, status int, e *Error) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter))
	}
	writeJSON(w, status, errorBody{Error: e})
}
