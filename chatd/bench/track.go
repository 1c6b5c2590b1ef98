package bench

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// maxSlots bounds the publisher index carried in cids (publishers per room).
const maxSlots = 4096

// benchMessage is what a subscriber needs from a message frame.
type benchMessage struct {
	seq    uint64
	slot   int // publisher index in the room; -1 for a message not sent by chatbench
	n      uint64
	sentNs int64
	step   int
}

var (
	keySeq  = []byte(`"seq":`)
	keyCID  = []byte(`"cid":"`)
	keyText = []byte(`"text":"t=`)
)

// parseMessage extracts seq, cid and the send stamp from a message frame by
// scanning for its keys, without decoding the JSON. A key cannot occur
// inside a JSON string (its quotes would be escaped), so the first match is
// the member. ok is false when the frame does not look as expected; the
// caller then falls back to parseMessageSlow.
func parseMessage(f []byte) (m benchMessage, ok bool) {
	i := bytes.Index(f, keySeq)
	if i < 0 {
		return m, false
	}
	seq, _, ok := leadingUint(f[i+len(keySeq):])
	if !ok {
		return m, false
	}
	m.seq = seq
	m.slot = -1
	i = bytes.Index(f, keyCID)
	if i < 0 {
		return m, true // no cid: not a chatbench message
	}
	slot, rest, ok := leadingUint(f[i+len(keyCID):])
	if !ok || len(rest) == 0 || rest[0] != '.' || slot >= maxSlots {
		return m, true
	}
	n, rest, ok := leadingUint(rest[1:])
	if !ok || len(rest) == 0 || rest[0] != '"' {
		return m, true
	}
	i = bytes.Index(f, keyText)
	if i < 0 {
		return m, true
	}
	ns, rest, ok := leadingUint(f[i+len(keyText):])
	if !ok || !bytes.HasPrefix(rest, []byte(";s=")) {
		return m, true
	}
	step, rest, ok := leadingUint(rest[3:])
	if !ok || len(rest) == 0 || rest[0] != ';' {
		return m, true
	}
	m.slot, m.n, m.sentNs, m.step = int(slot), n, int64(ns), int(step)
	return m, true
}

// leadingUint parses the decimal digits at the start of b.
func leadingUint(b []byte) (v uint64, rest []byte, ok bool) {
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		if i == 19 {
			return 0, b, false
		}
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	return v, b[i:], i > 0
}

// parseMessageSlow decodes the frame with encoding/json; used when the fast
// path does not recognise it (so that an unexpected encoding is counted,
// not misread).
func parseMessageSlow(f []byte) (benchMessage, bool) {
	var pm protocol.Message
	if err := json.Unmarshal(f, &pm); err != nil || pm.Type != protocol.TypeMessage {
		return benchMessage{}, false
	}
	m := benchMessage{seq: pm.Seq, slot: -1}
	slotS, nS, ok := strings.Cut(pm.CID, ".")
	if !ok {
		return m, true
	}
	slot, err1 := strconv.Atoi(slotS)
	n, err2 := strconv.ParseUint(nS, 10, 64)
	rest, ok := strings.CutPrefix(pm.Text, "t=")
	if err1 != nil || err2 != nil || !ok || slot < 0 || slot >= maxSlots {
		return m, true
	}
	nsS, rest, ok1 := strings.Cut(rest, ";s=")
	stepS, _, ok2 := strings.Cut(rest, ";")
	ns, err3 := strconv.ParseInt(nsS, 10, 64)
	step, err4 := strconv.Atoi(stepS)
	if !ok1 || !ok2 || err3 != nil || err4 != nil {
		return m, true
	}
	m.slot, m.n, m.sentNs, m.step = slot, n, ns, step
	return m, true
}

// span is an inclusive range of sequence numbers.
type span struct{ lo, hi uint64 }

// seqTracker checks one room's sequence as one subscriber sees it: every
// number once, in order. Gaps are remembered so that a late arrival is told
// apart from a duplicate.
type seqTracker struct {
	last uint64 // highest seq seen
	gaps []span // missing ranges below last, ascending
	dups uint64 // seen twice
	ooo  uint64 // arrived after a higher seq (filled a gap)
}

func (t *seqTracker) add(seq uint64) {
	switch {
	case seq == t.last+1:
		t.last = seq
	case seq > t.last+1:
		t.gaps = append(t.gaps, span{t.last + 1, seq - 1})
		t.last = seq
	default:
		for i, g := range t.gaps {
			if seq < g.lo || seq > g.hi {
				continue
			}
			t.ooo++
			switch {
			case g.lo == g.hi:
				t.gaps = append(t.gaps[:i], t.gaps[i+1:]...)
			case seq == g.lo:
				t.gaps[i].lo++
			case seq == g.hi:
				t.gaps[i].hi--
			default:
				t.gaps = append(t.gaps[:i+1], t.gaps[i:]...)
				t.gaps[i].hi = seq - 1
				t.gaps[i+1].lo = seq + 1
			}
			return
		}
		t.dups++
	}
}

// missing returns how many of the numbers up to final were never seen.
func (t *seqTracker) missing(final uint64) uint64 {
	var n uint64
	for _, g := range t.gaps {
		n += g.hi - g.lo + 1
	}
	if final > t.last {
		n += final - t.last
	}
	return n
}

// Latency histograms record microseconds from 1 µs to 60 s with three
// significant digits.
const (
	latencyMaxMicros = 60_000_000
	latencySigFigs   = 3
	latencyShards    = 16
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, latencyMaxMicros, latencySigFigs)
}

// latencySample is one publish→receive latency, tagged with the step (or
// phase) the message was sent in.
type latencySample struct {
	step   int
	micros int64
}

// latencyShard is a set of per-step histograms behind one mutex; subscribers
// are spread over shards and record a whole WebSocket message's samples per
// lock, so recording costs little and hardly contends.
type latencyShard struct {
	mu    sync.Mutex
	hists map[int]*hdrhistogram.Histogram
}

func (s *latencyShard) record(samples []latencySample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range samples {
		h := s.hists[x.step]
		if h == nil {
			h = newHistogram()
			s.hists[x.step] = h
		}
		_ = h.RecordValue(min(x.micros, latencyMaxMicros))
	}
}

// latencySet is every shard of a run.
type latencySet struct{ shards [latencyShards]*latencyShard }

func newLatencySet() *latencySet {
	l := &latencySet{}
	for i := range l.shards {
		l.shards[i] = &latencyShard{hists: map[int]*hdrhistogram.Histogram{}}
	}
	return l
}

func (l *latencySet) shard(i int) *latencyShard { return l.shards[i%latencyShards] }

// secondHalf is added to a step's stamp for the messages sent in the
// second half of the step, so that the two halves' latencies can be told
// apart (a growing queue shows as a slower second half). It is far above
// any step number.
const secondHalf = 1 << 20

// halfStamp is the stamp of the messages sent in step's second half.
func halfStamp(step int) int { return step + secondHalf }

// merged returns the histogram of one step (both halves) over all shards.
func (l *latencySet) merged(step int) *hdrhistogram.Histogram {
	return l.mergedStamps(step, halfStamp(step))
}

// half returns the histogram of one half of a step: the messages stamped
// step (the first) or halfStamp(step) (the second).
func (l *latencySet) half(step int, second bool) *hdrhistogram.Histogram {
	if second {
		return l.mergedStamps(halfStamp(step))
	}
	return l.mergedStamps(step)
}

func (l *latencySet) mergedStamps(stamps ...int) *hdrhistogram.Histogram {
	out := newHistogram()
	for _, s := range l.shards {
		s.mu.Lock()
		for _, st := range stamps {
			if h := s.hists[st]; h != nil {
				out.Merge(h)
			}
		}
		s.mu.Unlock()
	}
	return out
}
