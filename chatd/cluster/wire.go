package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/store"
)

// Inter-node messages are one op byte followed by a JSON body, except owner
// events, whose client frame travels raw after the JSON header so it is not
// escaped and re-encoded on every hop. JSON keeps the wire readable in a
// packet capture and versionable by adding members; the hot path (events)
// avoids its cost where it matters.
type op byte

// Op codes. Their values travel between nodes, so they are written out
// (never iota) and pinned by a golden test: renumbering one breaks a
// cluster of mixed versions.
const (
	opSubscribe   op = 1
	opUnsubscribe op = 2
	opPresence    op = 3
	opPublish     op = 4
	opHistory     op = 5
	opTyping      op = 6
	opDirect      op = 7
	opReplicate   op = 8
	opSync        op = 9
	opForget      op = 10
	opHandoff     op = 11
	opEvent       op = 12
	opClaim       op = 13
	// opPing asks for an empty reply: startup uses it to prove that the
	// inter-node transport works (the secret matches) before going active.
	opPing op = 14
	// opRingStats asks a node for its room counts, for GET /admin/ring.
	opRingStats op = 15
	// opFetch asks a node that promised a claimant's term for its copy of
	// the room.
	opFetch op = 16
	// opRejoined tells a node that this one counts it as a member again
	// after having dropped it: its subscriptions here were dropped with
	// it, and it re-subscribes the rooms this node owns.
	opRejoined op = 17
	// opSyncChunk carries a run of an owner's log to a replica catching
	// up (after an opSync offer).
	opSyncChunk op = 18
)

// ringStatsResp answers opRingStats: what the node holds and the digest of
// its view (two nodes with the same digest agree on every room's owner).
type ringStatsResp struct {
	Owned    int    `json:"owned"`
	Replicas int    `json:"replicas"`
	Local    int    `json:"local"`
	View     string `json:"view"`
}

// WireProto is the inter-node protocol version, gossiped in node metadata.
// Version 2 added ownership terms (claims, fetches, terms on replicates and
// syncs) and moved copies in chunks from where they diverge; version 1
// nodes cannot fence and are refused.
const WireProto = 2

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

type forgetReq struct {
	Room string `json:"room"`
	Term uint64 `json:"term,omitempty"`
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

// Remote error codes: the owner's errors travel as these strings. A stale
// term travels as errCodeStaleTerm followed by ":" and the promised term.
const (
	errCodeNotOwner      = "not_owner"
	errCodeMoving        = "moving"
	errCodeClosed        = "closed"
	errCodeGap           = "gap"
	errCodeNoQuorum      = "no_quorum"
	errCodeBehind        = "behind"
	errCodeStaleTerm     = "stale_term"
	errCodeNotMember     = "not_member"
	errCodeConflict      = "conflict"
	errCodeStorageFull   = "storage_full"
	errCodeStorageFailed = "storage_failed"
)

func errCode(err error) string {
	var ste *owner.StaleTermError
	switch {
	case errors.As(err, &ste):
		return errCodeStaleTerm + ":" + strconv.FormatUint(ste.Promised, 10)
	case errors.Is(err, owner.ErrNotMember):
		return errCodeNotMember
	case errors.Is(err, roomlog.ErrConflict):
		return errCodeConflict
	case errors.Is(err, store.ErrFull):
		return errCodeStorageFull
	case errors.Is(err, owner.ErrStorage):
		return errCodeStorageFailed
	case errors.Is(err, owner.ErrNoQuorum):
		return errCodeNoQuorum
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
