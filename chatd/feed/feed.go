// Package feed is the vocabulary shared by the two sides of a room: the
// owner, which orders the room's messages and tracks its presence across
// the cluster, and each node's local side (the hub), which serves the
// room's subscribers on that node. The owner sends a subscribed node a
// State when it subscribes, then a stream of Events; the hub keeps its
// local copy of the room from them.
//
// Keeping these types in a package of their own, imported by both sides and
// importing neither, is what lets the hub and the owner be built and tested
// apart (the seam between them is cluster's routing).
package feed

import "github.com/ringchat/ringchat/chatd/protocol"

// Kind says what an Event carries.
type Kind uint8

// Event kinds. The values travel between nodes: never renumber them.
const (
	KindMessage  Kind = 1
	KindPresence Kind = 2
	KindTyping   Kind = 3
	// KindTrimmed: retention removed the room's messages below Seq (the new
	// oldest kept); nodes forget them too. It carries no client frame.
	KindTrimmed Kind = 4
)

// Event is what an owner pushes to a subscribed node: an encoded client
// frame plus what the node needs to keep its local copy of the room
// (sequence for gap detection, presence changes for its presence cache).
type Event struct {
	Kind  Kind
	Room  string
	Epoch string
	Seq   uint64
	// Joined, Left and Present mirror the presence frame: Present is a full
	// list that replaces the node's; Count is the room's user count.
	Joined  []string
	Left    []string
	Present []string
	Count   int
	// Message is set for KindMessage (nodes keep it in their copy).
	Message *protocol.Message
	// Frame is the encoded client frame, shared by every local subscriber.
	Frame []byte
}

// State is what a node needs to serve a room locally, as the owner sends it
// in answer to a subscription: the room's incarnation, its newest committed
// sequence, the recent committed messages and who is present.
type State struct {
	Epoch string `json:"epoch"`
	// Head is the newest committed sequence number.
	Head uint64 `json:"head"`
	// Oldest, when set, is the oldest sequence number the room keeps on
	// disk (messages below it were removed by retention): history older
	// than Messages is read from the owner. Zero means the room keeps only
	// what it holds in memory, which Messages mirrors.
	Oldest   uint64             `json:"oldest,omitempty"`
	Messages []protocol.Message `json:"messages,omitempty"`
	Present  []string           `json:"present,omitempty"`
	Count    int                `json:"count"`
}

// StreamBatch is a run of a room's committed log that the event stream
// (chatd/eventstream) has not delivered yet, as the room's owner reads it:
// entries of Epoch in seq order, after the room's stream cursor. Skipped
// counts entries that retention removed before they could be delivered
// (they are lost to the stream, and counted).
type StreamBatch struct {
	Room    string
	Epoch   string
	Entries []protocol.Message
	Skipped uint64
	// Through is the last seq the batch accounts for (its last entry's,
	// or the last skipped one's when it has none).
	Through uint64
}
