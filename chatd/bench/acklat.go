package bench

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// pendingSend is a send waiting for its ack: when it was written and the
// step it belongs to.
type pendingSend struct {
	sentNs int64
	step   int
}

// pendingSends maps a connection's cid counters to their sends until the
// ack comes, for send→ack latency. The publisher adds under its write lock,
// the reader takes; the map has its own lock so neither waits on the
// other's I/O. A refused send's entry stays (the error frame names no cid);
// it costs a few bytes and only when the server refuses.
type pendingSends struct {
	mu sync.Mutex
	m  map[uint64]pendingSend
}

func (p *pendingSends) add(n uint64, sentNs int64, step int) {
	p.mu.Lock()
	if p.m == nil {
		p.m = make(map[uint64]pendingSend)
	}
	p.m[n] = pendingSend{sentNs: sentNs, step: step}
	p.mu.Unlock()
}

// take removes and returns the send with counter n.
func (p *pendingSends) take(n uint64) (pendingSend, bool) {
	p.mu.Lock()
	s, ok := p.m[n]
	if ok {
		delete(p.m, n)
	}
	p.mu.Unlock()
	return s, ok
}

// benchAck is what a publisher needs from an ack frame.
type benchAck struct {
	room      string
	cid       string
	seq       uint64
	duplicate bool
}

var (
	keyRoom      = []byte(`"room":"`)
	keyDuplicate = []byte(`"duplicate":true`)
)

// parseAck reads an ack frame by scanning for its keys (as parseMessage
// does), falling back to encoding/json when the frame does not look as
// expected. ok is false for a frame that is not a valid ack. room is empty
// for a DM ack.
func parseAck(f []byte) (a benchAck, ok bool) {
	if a, ok := parseAckFast(f); ok {
		return a, true
	}
	var pa protocol.Ack
	if err := json.Unmarshal(f, &pa); err != nil || pa.Type != protocol.TypeAck {
		return benchAck{}, false
	}
	return benchAck{room: pa.Room, cid: pa.CID, seq: pa.Seq, duplicate: pa.Duplicate}, true
}

func parseAckFast(f []byte) (a benchAck, ok bool) {
	room, ok := stringMember(f, keyRoom)
	if !ok {
		return a, false
	}
	cid, ok := stringMember(f, keyCID)
	if !ok {
		return a, false
	}
	i := bytes.Index(f, keySeq)
	if i < 0 {
		return a, false
	}
	seq, _, ok := leadingUint(f[i+len(keySeq):])
	if !ok {
		return a, false
	}
	return benchAck{room: string(room), cid: string(cid), seq: seq, duplicate: bytes.Contains(f, keyDuplicate)}, true
}

// stringMember returns the value of the string member whose `"key":"`
// prefix is key, when it holds no escape (room names and chatbench's cids
// never do; anything else goes to the slow path).
func stringMember(f, key []byte) ([]byte, bool) {
	i := bytes.Index(f, key)
	if i < 0 {
		return nil, false
	}
	v := f[i+len(key):]
	j := bytes.IndexByte(v, '"')
	if j < 0 || bytes.IndexByte(v[:j], '\\') >= 0 {
		return nil, false
	}
	return v[:j], true
}

// cidCounter returns the counter n of a chatbench cid "<slot>.<n>".
func cidCounter(cid string) (uint64, bool) {
	_, nS, ok := strings.Cut(cid, ".")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(nS, 10, 64)
	return n, err == nil
}
