package protocol

import "encoding/json"

// Welcome answers a successful hello.
type Welcome struct {
	Type      string `json:"type"`
	ID        string `json:"id,omitempty"`
	Protocol  int    `json:"protocol"`
	Session   string `json:"session"`
	User      string `json:"user"`
	Anonymous bool   `json:"anonymous,omitempty"`
	Server    string `json:"server"`
	Limits    Limits `json:"limits"`
}

// Limits tells a client the bounds the server enforces, so a well-behaved
// client never trips them.
type Limits struct {
	MaxFrameBytes  int     `json:"max_frame_bytes"`
	MaxTextBytes   int     `json:"max_text_bytes"`
	MaxRooms       int     `json:"max_rooms"`
	RatePerSecond  float64 `json:"rate_per_second"`
	RateBurst      int     `json:"rate_burst"`
	HistoryKept    int     `json:"history_kept"`
	PresenceListAt int     `json:"presence_list_max"`
}

// Joined answers a join. Present lists the users in the room, unless the room
// has more than the server's presence list limit; then only Count is set.
// When the join asked to resume (since), Recovered tells whether every
// message after Since follows; when false the client must reload history.
type Joined struct {
	Type      string   `json:"type"`
	ID        string   `json:"id,omitempty"`
	Room      string   `json:"room"`
	Epoch     string   `json:"epoch"`
	Head      uint64   `json:"head"`
	Oldest    uint64   `json:"oldest"`
	Count     int      `json:"count"`
	Present   []string `json:"present,omitempty"`
	Recovered *bool    `json:"recovered,omitempty"`
}

// Left answers a leave, or, without ID, tells a connection that the server
// made it leave the room (a kick by the application's backend); Reason then
// says why.
type Left struct {
	Type   string `json:"type"`
	ID     string `json:"id,omitempty"`
	Room   string `json:"room"`
	Reason string `json:"reason,omitempty"`
}

// Ack confirms that a message was stored (send) or delivered (dm). A resend
// with a CID the server has already seen gets the original ack with Duplicate
// set.
type Ack struct {
	Type      string `json:"type"`
	ID        string `json:"id,omitempty"`
	Room      string `json:"room,omitempty"`
	To        string `json:"to,omitempty"`
	CID       string `json:"cid"`
	Seq       uint64 `json:"seq,omitempty"`
	MID       string `json:"mid"`
	TS        int64  `json:"ts"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Delivered *int   `json:"delivered,omitempty"`
}

// Message is one entry of a room's log, as delivered live, replayed on
// resume and returned by history: a chat message (Type TypeMessage), or a
// deletion (Type TypeDeleted), which takes the next seq like a message so
// that a client resuming after it hears of it, From the moderator or
// SystemSender, no text, and Target the seq of the message it deleted.
// A deleted message keeps its seq, id, sender and time; Deleted is set and
// its text is gone from every copy (docs/protocol.md, "deleted").
type Message struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	MID  string `json:"mid"`
	From string `json:"from"`
	CID  string `json:"cid,omitempty"`
	Text string `json:"text"`
	// Deleted marks a message a moderator deleted: its text is empty.
	Deleted bool `json:"deleted,omitempty"`
	// Target is, in a deletion, the seq of the message it deleted.
	Target uint64 `json:"target,omitempty"`
	// TS is the server's time of acceptance, in milliseconds since the Unix epoch.
	TS int64 `json:"ts"`
}

// HistoryPage answers a history request with messages in ascending sequence
// order. More is true when older messages are still kept.
type HistoryPage struct {
	Type     string    `json:"type"`
	ID       string    `json:"id,omitempty"`
	Room     string    `json:"room"`
	Epoch    string    `json:"epoch"`
	Head     uint64    `json:"head"`
	Oldest   uint64    `json:"oldest"`
	More     bool      `json:"more"`
	Messages []Message `json:"messages"`
}

// DirectMessage is a message to one user, delivered to every connection of
// the recipient and of the sender. Direct messages are not stored.
type DirectMessage struct {
	Type string `json:"type"`
	MID  string `json:"mid"`
	From string `json:"from"`
	To   string `json:"to"`
	CID  string `json:"cid,omitempty"`
	Text string `json:"text"`
	TS   int64  `json:"ts"`
}

// Typing lists the users who signalled typing in a room since the last
// typing frame for that room.
type Typing struct {
	Type  string   `json:"type"`
	Room  string   `json:"room"`
	Users []string `json:"users"`
}

// Presence reports users who joined or left a room (the first connection of
// a user in, or the last one out). Past the presence list limit it carries
// only the new Count. When a room shrinks back under the limit, Present
// carries the whole list once, replacing whatever the client had.
type Presence struct {
	Type    string   `json:"type"`
	Room    string   `json:"room"`
	Count   int      `json:"count"`
	Joined  []string `json:"joined,omitempty"`
	Left    []string `json:"left,omitempty"`
	Present []string `json:"present,omitempty"`
}

// Pong answers a ping.
type Pong struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	TS   int64  `json:"ts"`
}

// Encode marshals a server frame. Server frames are plain structs of strings
// and numbers, so marshalling cannot fail; a failure is a programming error.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("protocol: encoding a server frame: " + err.Error())
	}
	return b
}
