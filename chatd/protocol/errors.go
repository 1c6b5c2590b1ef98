package protocol

// Error codes carried by error frames. They are stable: clients switch on
// them, so a code is never renamed or reused.
const (
	// CodeBadFrame: the frame is not a JSON object or lacks a type.
	CodeBadFrame = "bad_frame"
	// CodeUnknownType: the frame's type is not part of the protocol.
	CodeUnknownType = "unknown_type"
	// CodeBadRequest: a member is missing, too long or out of range.
	CodeBadRequest = "bad_request"
	// CodeHelloRequired: a frame other than hello arrived before the welcome.
	CodeHelloRequired = "hello_required"
	// CodeAlreadyAuthenticated: a second hello on the same connection.
	CodeAlreadyAuthenticated = "already_authenticated"
	// CodeInvalidRoom: the room name breaks the naming rules.
	CodeInvalidRoom = "invalid_room"
	// CodeForbidden: the token does not allow this room.
	CodeForbidden = "forbidden"
	// CodeNotJoined: the operation needs the connection to have joined the room.
	CodeNotJoined = "not_joined"
	// CodeTooManyRooms: the connection has joined the maximum number of rooms.
	CodeTooManyRooms = "too_many_rooms"
	// CodeTextTooLong: the message text exceeds the server's limit.
	CodeTextTooLong = "text_too_long"
	// CodeRateLimited: the connection sends faster than its rate limit.
	CodeRateLimited = "rate_limited"
	// CodeUnavailable: the room cannot take the request right now; retry.
	CodeUnavailable = "unavailable"
	// CodeInternal: the server failed; the request may be retried.
	CodeInternal = "internal"
	// CodeStorageFull: a node that must store the message has too little
	// free disk space; nothing was stored. Retry later (same cid).
	CodeStorageFull = "storage_full"
	// CodeStorageFailed: a node that must store the message cannot write
	// to its disk; nothing was acknowledged. Retry later (same cid).
	CodeStorageFailed = "storage_failed"
	// CodeNodeRoomsFull: a join of a room new to this node, which already
	// serves its maximum of rooms (--max-rooms-per-node). Retry later, or
	// on another node.
	CodeNodeRoomsFull = "node_rooms_full"
	// CodeDisconnected: the backend disconnected the user for good (a
	// Socket.IO client gets it before the server's DISCONNECT packet, the
	// counterpart of a WebSocket close with CloseDisconnectedNoReconnect).
	CodeDisconnected = "disconnected"
	// CodeBanned: the user is banned from the room (or from every room) by
	// the application's backend; until, when set, says when it ends.
	CodeBanned = "banned"
	// CodeMuted: the user may read the room but not send to it; until,
	// when set, says when that ends.
	CodeMuted = "muted"
)

// Error is an error frame. ID is the id of the request that caused it, when
// known.
type Error struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Room    string `json:"room,omitempty"`
	// Until is when a ban or mute ends (banned, muted), in Unix
	// milliseconds; absent for a permanent one and for other codes.
	Until int64 `json:"until,omitempty"`
}

// NewError builds an error frame.
func NewError(code, id, message string) *Error {
	return &Error{Type: TypeError, ID: id, Code: code, Message: message}
}

// Error implements the error interface so protocol errors can travel through
// ordinary error returns.
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// WebSocket close codes used by the server. 1000–1015 are RFC 6455 codes;
// 4000–4999 are ringchat's own.
const (
	// CloseGoingAway: the server shuts down for good (RFC 6455 1001).
	CloseGoingAway = 1001
	// ClosePolicyViolation: sustained abuse, e.g. rate limit exceeded again and again.
	ClosePolicyViolation = 1008
	// CloseMessageTooBig: a frame larger than the maximum frame size.
	CloseMessageTooBig = 1009
	// CloseServiceRestart: the node restarts or drains; reconnect (with
	// backoff) and resume.
	CloseServiceRestart = 1012
	// CloseAuthFailed: the hello's token or name was refused; the reason says why.
	CloseAuthFailed = 4001
	// CloseHelloTimeout: no hello arrived in time.
	CloseHelloTimeout = 4002
	// CloseUnsupportedVersion: the hello asked for a protocol version the server does not speak.
	CloseUnsupportedVersion = 4003
	// CloseTokenExpired: the token expired while the connection was open.
	CloseTokenExpired = 4004
	// CloseSlowConsumer: the connection's outgoing queue overflowed because
	// the client did not read fast enough; reconnect and resume.
	CloseSlowConsumer = 4008
	// CloseDisconnected: the application's backend disconnected the user
	// through the server API (POST /api/v1/users/{user}/disconnect with
	// "reconnect": true); the client may reconnect and resume at once.
	CloseDisconnected = 4010
	// CloseDisconnectedNoReconnect: the backend disconnected the user and
	// asked that it not reconnect ("reconnect": false, or a cluster-wide
	// ban); a client must not reconnect automatically.
	CloseDisconnectedNoReconnect = 4011
)
