package rpc

import (
	"encoding/json"
	"fmt"
)

// The bodies of the ops that carry cluster-level requests. Ops between owner
// services (replication, syncs, claims, fetches, handoffs) carry the owner
// package's own types, which are pinned by the same golden test.

// SubscribeReq is OpSubscribe's body, and OpUnsubscribe's (Room only).
// Requests routed to a room's owner carry the sender's view (a digest of
// its active members), so the owner can tell a disagreement about ownership
// from a bug and count it.
type SubscribeReq struct {
	Room  string   `json:"room"`
	Users []string `json:"users,omitempty"`
	View  string   `json:"view,omitempty"`
}

// PresenceReq is OpPresence's body: User joined (or left) Room on the
// sending node.
type PresenceReq struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Joined bool   `json:"joined"`
}

// PublishReq is OpPublish's body: a client's message, with its client id
// for the owner's dedupe, and the sender's view.
type PublishReq struct {
	Room string `json:"room"`
	User string `json:"user"`
	CID  string `json:"cid"`
	Text string `json:"text"`
	View string `json:"view,omitempty"`
}

// DeleteMessageReq is OpDeleteMessage's body: delete the message at Seq
// of Room, in the name of By, and the sender's view.
type DeleteMessageReq struct {
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	By   string `json:"by"`
	View string `json:"view,omitempty"`
}

// HistoryReq is OpHistory's body: up to Limit messages before Before, and
// the sender's view.
type HistoryReq struct {
	Room   string `json:"room"`
	Before uint64 `json:"before"`
	Limit  int    `json:"limit"`
	View   string `json:"view,omitempty"`
}

// TypingReq is OpTyping's body.
type TypingReq struct {
	Room string `json:"room"`
	User string `json:"user"`
}

// DirectReq is OpDirect's body: Frame, encoded once by the sender's node,
// for the connections of To and From on the receiving node except the
// session Except (the sender's own).
type DirectReq struct {
	To     string `json:"to"`
	From   string `json:"from"`
	Except string `json:"except"`
	Frame  []byte `json:"frame"`
}

// DirectResp answers OpDirect: how many of the recipient's connections got
// the frame on the answering node.
type DirectResp struct {
	Delivered int `json:"delivered"`
}

// DisconnectReq is OpDisconnect's body: close every connection of User on
// the receiving node with the WebSocket close code Code and Reason.
type DisconnectReq struct {
	User   string `json:"user"`
	Code   int    `json:"code"`
	Reason string `json:"reason,omitempty"`
}

// DisconnectResp answers OpDisconnect: how many connections the answering
// node closed.
type DisconnectResp struct {
	Closed int `json:"closed"`
}

// KickReq is OpKick's body: make every connection of User on the
// receiving node leave Room, telling it Reason.
type KickReq struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Reason string `json:"reason,omitempty"`
}

// KickResp answers OpKick: how many connections the answering node made
// leave.
type KickResp struct {
	Kicked int `json:"kicked"`
}

// SubscribeUserReq is OpSubscribeUser's body: join every connection of
// User on the receiving node to Room.
type SubscribeUserReq struct {
	Room string `json:"room"`
	User string `json:"user"`
}

// SubscribeUserResp answers OpSubscribeUser: how many connections the
// answering node joined.
type SubscribeUserResp struct {
	Subscribed int `json:"subscribed"`
}

// OwnedRoomsReq is OpOwnedRooms' body: it asks for nothing more.
type OwnedRoomsReq struct{}

// RoomSummary is one room a node owns and serves, as the server API lists
// it.
type RoomSummary struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	// Head is the newest sequence number acknowledged.
	Head uint64 `json:"head"`
	// Users counts the distinct users present, on every node; Nodes the
	// nodes with subscribers.
	Users int `json:"users"`
	Nodes int `json:"nodes"`
}

// OwnedRoomsResp answers OpOwnedRooms: the rooms the answering node owns
// and serves.
type OwnedRoomsResp struct {
	Rooms []RoomSummary `json:"rooms"`
}

// RoomUsersReq is OpRoomUsers' body: the users present in Room, at most
// Limit of them (sorted by name), if the receiving node owns it.
type RoomUsersReq struct {
	Room  string `json:"room"`
	Limit int    `json:"limit"`
}

// RoomUsersResp answers OpRoomUsers. Owner is false when the answering
// node does not serve the room (the others say nothing then).
type RoomUsersResp struct {
	Owner bool     `json:"owner"`
	Count int      `json:"count"`
	Users []string `json:"users,omitempty"`
}

// UserConnsReq is OpUserConns' body: the receiving node's connections of
// User.
type UserConnsReq struct {
	User string `json:"user"`
}

// ConnSummary is one connection of a user on a node.
type ConnSummary struct {
	// Session is the connection's session id (as in the server's logs).
	Session string `json:"session"`
	// Transport is "websocket" (the native protocol) or "socketio".
	Transport string `json:"transport"`
	// Rooms are the rooms it has joined, sorted.
	Rooms []string `json:"rooms"`
}

// UserConnsResp answers OpUserConns.
type UserConnsResp struct {
	Connections []ConnSummary `json:"connections"`
}

// StreamCursorReq is OpStreamCursor's body: the backend has every entry
// of Room's Epoch up to Seq.
type StreamCursorReq struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// ForgetReq is OpForget's body: the owner of Room in term Term no longer
// needs the receiver's copy (owner.Service.ForgetReplica keeps a copy that
// follows a newer term).
type ForgetReq struct {
	Room string `json:"room"`
	Term uint64 `json:"term,omitempty"`
}

// RingStats answers OpRingStats: what the node holds and the digest of its
// view (two nodes with the same digest agree on every room's owner).
type RingStats struct {
	Owned    int    `json:"owned"`
	Replicas int    `json:"replicas"`
	Local    int    `json:"local"`
	View     string `json:"view"`
}

// Encode returns the payload of op o with body encoded as JSON.
func Encode(o Op, body any) []byte {
	b, err := json.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("rpc: encoding op %d: %v", o, err)) // plain structs cannot fail
	}
	return append([]byte{byte(o)}, b...)
}

// Bare returns the payload of op o without a body (OpPing, OpRingStats,
// OpRejoined).
func Bare(o Op) []byte { return []byte{byte(o)} }
