package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// Inter-node messages are one op byte followed by a JSON body, except owner
// events, whose client frame travels raw after the JSON header so it is not
// escaped and re-encoded on every hop. JSON keeps the wire readable in a
// packet capture and versionable by adding members; the hot path (events)
// avoids its cost where it matters.
type op byte

const (
	opSubscribe op = iota + 1
	opUnsubscribe
	opPresence
	opPublish
	opHistory
	opTyping
	opDirect
	opReplicate
	opSync
	opForget
	opHandoff
	opEvent
	opClaim
	// opPing asks for an empty reply: startup uses it to prove that the
	// inter-node transport works (the secret matches) before going active.
	opPing
	// opRingStats asks a node for its room counts, for GET /admin/ring.
	opRingStats
)

// ringStatsResp answers opRingStats: what the node holds and the digest of
// its view (two nodes with the same digest agree on every room's owner).
type ringStatsResp struct {
	Owned    int    `json:"owned"`
	Replicas int    `json:"replicas"`
	Local    int    `json:"local"`
	View     string `json:"view"`
}

type claimResp struct {
	Handing bool `json:"handing"`
}

// wireProto is the inter-node protocol version, gossiped in node metadata.
const wireProto = 1

// Requests routed to a room's owner carry the sender's view (a digest of
// its active members), so the owner can tell a disagreement about ownership
// from a bug and count it.
type subscribeReq struct {
	Room  string   `json:"room"`
	Users []string `json:"users,omitempty"`
	View  string   `json:"view,omitempty"`
}

type presenceReq struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Joined bool   `json:"joined"`
}

type publishReq struct {
	Room string `json:"room"`
	User string `json:"user"`
	CID  string `json:"cid"`
	Text string `json:"text"`
	View string `json:"view,omitempty"`
}

type historyReq struct {
	Room   string `json:"room"`
	Before uint64 `json:"before"`
	Limit  int    `json:"limit"`
	View   string `json:"view,omitempty"`
}

type typingReq struct {
	Room string `json:"room"`
	User string `json:"user"`
}

type directReq struct {
	To     string `json:"to"`
	From   string `json:"from"`
	Except string `json:"except"`
	Frame  []byte `json:"frame"`
}

type directResp struct {
	Delivered int `json:"delivered"`
}

type replicateReq struct {
	Room  string           `json:"room"`
	Epoch string           `json:"epoch"`
	Msg   protocol.Message `json:"msg"`
}

type forgetReq struct {
	Room string `json:"room"`
}

// eventHeader is an feed.Event without its frame. A message event carries
// no copy of the message: the frame is the message, encoded once by the
// owner, and the receiver decodes it from there.
type eventHeader struct {
	Kind    feed.Kind `json:"k"`
	Room    string    `json:"r"`
	Epoch   string    `json:"e,omitempty"`
	Seq     uint64    `json:"s,omitempty"`
	Joined  []string  `json:"j,omitempty"`
	Left    []string  `json:"l,omitempty"`
	Present []string  `json:"p,omitempty"`
	Count   int       `json:"c,omitempty"`
}

func encode(o op, body any) []byte {
	b, err := json.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("cluster: encoding op %d: %v", o, err)) // plain structs cannot fail
	}
	return append([]byte{byte(o)}, b...)
}

func encodeEvent(ev feed.Event) []byte {
	h := eventHeader{Kind: ev.Kind, Room: ev.Room, Epoch: ev.Epoch, Seq: ev.Seq, Joined: ev.Joined, Left: ev.Left, Present: ev.Present, Count: ev.Count}
	hb, _ := json.Marshal(h)
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(hb)+len(ev.Frame))
	out = append(out, byte(opEvent))
	out = binary.AppendUvarint(out, uint64(len(hb)))
	out = append(out, hb...)
	return append(out, ev.Frame...)
}

func decodeEvent(b []byte) (feed.Event, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return feed.Event{}, errors.New("cluster: truncated event header")
	}
	var h eventHeader
	if err := json.Unmarshal(b[k:k+int(n)], &h); err != nil {
		return feed.Event{}, fmt.Errorf("cluster: event header: %w", err)
	}
	ev := feed.Event{Kind: h.Kind, Room: h.Room, Epoch: h.Epoch, Seq: h.Seq, Joined: h.Joined, Left: h.Left, Present: h.Present, Count: h.Count}
	ev.Frame = b[k+int(n):]
	if ev.Kind == feed.KindMessage {
		var m protocol.Message
		if err := json.Unmarshal(ev.Frame, &m); err != nil {
			return feed.Event{}, fmt.Errorf("cluster: event message: %w", err)
		}
		ev.Message = &m
	}
	return ev, nil
}

// Remote error codes: the owner's errors travel as these strings.
const (
	errCodeNotOwner = "not_owner"
	errCodeMoving   = "moving"
	errCodeClosed   = "closed"
	errCodeGap      = "gap"
	errCodeNoQuorum = "no_quorum"
	errCodeBehind   = "behind"
)

func errCode(err error) string {
	switch {
	case errors.Is(err, owner.ErrNotOwner):
		return errCodeNotOwner
	case errors.Is(err, owner.ErrMoving):
		return errCodeMoving
	case errors.Is(err, owner.ErrClosed):
		return errCodeClosed
	case errors.Is(err, roomlog.ErrGap):
		return errCodeGap
	case errors.Is(err, owner.ErrBehind):
		return errCodeBehind
	case errors.Is(err, ErrNoQuorum):
		return errCodeNoQuorum
	default:
		return err.Error()
	}
}
