// Package rpc is the inter-node codec: what one chatd node says to another
// over the transport (chatd/transport), and how a node dispatches what it
// is told. A payload is one op byte followed by the op's body, JSON except
// for owner events (see EncodeEvent); replies are JSON or an error code
// (EncodeErr). Every op has one handler in a Table. The package knows
// nothing of routing or membership: chatd/cluster sends these messages and
// registers the handlers.
//
// JSON keeps the wire readable in a packet capture and versionable by
// adding members; the hot path (events) avoids its cost where it matters.
package rpc

import "strconv"

// Version is the inter-node protocol version, gossiped in node metadata and
// stated in the transport's handshake. Version 2 added ownership terms
// (claims, fetches, terms on replicates and syncs) and moved copies in
// chunks from where they diverge; version 1 nodes cannot fence and are
// refused.
const Version = 2

// Op is the first byte of every inter-node payload: what the rest is.
type Op byte

// Op codes. Their values travel between nodes, so they are written out
// (never iota) and pinned by a golden test: renumbering one breaks a
// cluster of mixed versions.
const (
	// OpSubscribe subscribes the sending node to a room at its owner
	// (SubscribeReq; the reply is the room's feed.State).
	OpSubscribe Op = 1
	// OpUnsubscribe drops the sending node's subscription (a push of a
	// SubscribeReq).
	OpUnsubscribe Op = 2
	// OpPresence tells a room's owner that a user joined or left on the
	// sending node (a push of a PresenceReq).
	OpPresence Op = 3
	// OpPublish forwards a message to its room's owner (PublishReq; the
	// reply is a protocol.Ack).
	OpPublish Op = 4
	// OpHistory asks a room's owner for a page (HistoryReq; the reply is a
	// protocol.HistoryPage).
	OpHistory Op = 5
	// OpTyping forwards a typing notice to a room's owner (a push of a
	// TypingReq).
	OpTyping Op = 6
	// OpDirect asks a node to deliver a direct message to its own
	// connections (DirectReq, answered with a DirectResp).
	OpDirect Op = 7
	// OpReplicate sends a replica one message (owner.Replication), answered
	// once durable there.
	OpReplicate Op = 8
	// OpSync offers a replica the owner's log (owner.SyncOffer, answered
	// with an owner.SyncAnswer).
	OpSync Op = 9
	// OpForget tells a node to drop its replica of a room (a push of a
	// ForgetReq).
	OpForget Op = 10
	// OpHandoff hands a room to its new owner (owner.HandoffNotice).
	OpHandoff Op = 11
	// OpEvent pushes an owner's event to a subscribed node (EncodeEvent).
	OpEvent Op = 12
	// OpClaim asks a member to promise a claimant's term for a room
	// (owner.ClaimRequest, answered with an owner.ClaimReply).
	OpClaim Op = 13
	// OpPing asks for an empty reply: startup uses it to prove that the
	// inter-node transport works (the secret matches) before going active.
	OpPing Op = 14
	// OpRingStats asks a node for its room counts, for GET /admin/ring
	// (answered with a RingStats).
	OpRingStats Op = 15
	// OpFetch asks a node that promised a claimant's term for its copy of
	// the room (owner.FetchRequest, answered with an owner.FetchReply).
	OpFetch Op = 16
	// OpRejoined tells a node that this one counts it as a member again
	// after having dropped it: its subscriptions here were dropped with
	// it, and it re-subscribes the rooms this node owns (a push, no body).
	OpRejoined Op = 17
	// OpSyncChunk carries a run of an owner's log to a replica catching
	// up, after an OpSync offer (owner.Chunk).
	OpSyncChunk Op = 18
	// OpDisconnect asks a node to close its own connections of a user, on
	// a backend's order through the server API (DisconnectReq, answered
	// with a DisconnectResp). A node of an older release refuses it as an
	// unknown op; the sender reports that node as unreached.
	OpDisconnect Op = 19
	// OpKick asks a node to make its own connections of a user leave a
	// room (KickReq, answered with a KickResp). Refused by older releases
	// as OpDisconnect is.
	OpKick Op = 20
	// OpOwnedRooms asks a node for the rooms it owns and serves, with
	// their counts, for the server API's room list (OwnedRoomsReq,
	// answered with an OwnedRoomsResp). Like the ops below it, it reads
	// and changes nothing; an older release refuses it as an unknown op
	// and the API reports that node as unreached.
	OpOwnedRooms Op = 21
	// OpRoomUsers asks a node for the users present in a room when it owns
	// the room (RoomUsersReq, answered with a RoomUsersResp).
	OpRoomUsers Op = 22
	// OpUserConns asks a node for its own connections of a user
	// (UserConnsReq, answered with a UserConnsResp).
	OpUserConns Op = 23
	// OpSubscribeUser asks a node to join its own connections of a user to
	// a room, on a backend's order through the server API
	// (SubscribeUserReq, answered with a SubscribeUserResp). Refused by
	// older releases as OpDisconnect is.
	OpSubscribeUser Op = 24
	// OpDeleteMessage forwards the deletion of a room's message to the
	// room's owner, on a backend's order through the server API
	// (DeleteMessageReq; the reply is the deletion's protocol.Ack). Refused
	// by older releases as OpDisconnect is.
	OpDeleteMessage Op = 25
	// OpStreamCursor tells a replica how far the backend has a room's log
	// through the event stream (a push of a StreamCursorReq; no reply).
	// An older release drops it as an unknown push: its copy then only
	// sends entries again after a move.
	OpStreamCursor Op = 26
)

// opNames names every op this version knows; an op missing here is
// unknown, and a Table refuses to handle it.
var opNames = map[Op]string{
	OpSubscribe: "subscribe", OpUnsubscribe: "unsubscribe", OpPresence: "presence",
	OpPublish: "publish", OpHistory: "history", OpTyping: "typing", OpDirect: "direct",
	OpReplicate: "replicate", OpSync: "sync", OpForget: "forget", OpHandoff: "handoff",
	OpEvent: "event", OpClaim: "claim", OpPing: "ping", OpRingStats: "ring_stats", OpFetch: "fetch",
	OpRejoined: "rejoined", OpSyncChunk: "sync_chunk", OpDisconnect: "disconnect", OpKick: "kick",
	OpOwnedRooms: "owned_rooms", OpRoomUsers: "room_users", OpUserConns: "user_conns", OpSubscribeUser: "subscribe_user",
	OpDeleteMessage: "delete_message", OpStreamCursor: "stream_cursor",
}

// String is the op's name (the label of chatd_forwards_total), or "op N"
// for an op this version does not know.
func (o Op) String() string {
	if name, ok := opNames[o]; ok {
		return name
	}
	return "op " + strconv.Itoa(int(o))
}

// Known reports whether o is an op of this version.
func (o Op) Known() bool {
	_, ok := opNames[o]
	return ok
}

// Ops lists every op of this version, in code order.
func Ops() []Op {
	ops := make([]Op, 0, len(opNames))
	for o := range 256 {
		if Op(o).Known() {
			ops = append(ops, Op(o))
		}
	}
	return ops
}
