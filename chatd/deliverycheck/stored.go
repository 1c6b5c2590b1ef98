package deliverycheck

import (
	"fmt"
	"slices"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// Durable clusters keep every acknowledged message for as long as the
// retention allows, not only as long as some node has it in memory. These
// checks hold a room's stored history (read page by page, as a client
// scrolls back) to every acknowledgement the checker recorded.

// CheckHistory compares a room's whole history, as read with history pages
// (msgs, oldest first, in epoch, whose newest page named head), with what
// was acknowledged in that room: every message acknowledged in epoch at a
// seq up to head must be there, at its seq, with its sender, cid and text
// (later seqs were acknowledged after the read); a message acknowledged in
// another epoch means the room restarted. It returns one line per problem,
// up to maxExamples and a count. It may be called while traffic runs.
func (k *MultiRoom) CheckHistory(room, epoch string, head uint64, msgs []protocol.Message) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	bySeq := make(map[uint64]protocol.Message, len(msgs))
	for _, m := range msgs {
		bySeq[m.Seq] = m
	}
	var out []string
	n := 0
	add := func(s string) {
		n++
		if len(out) < maxExamples {
			out = append(out, s)
		}
	}
	seen := map[slotKey]bool{}
	for _, r := range k.led.acks {
		if r.key.room != room || seen[r.key] || (r.key.epoch == epoch && r.key.seq > head) {
			continue
		}
		seen[r.key] = true
		if r.key.epoch != epoch {
			add(fmt.Sprintf("%s acknowledged to %s, but the history is of epoch %s", r.key, r.actor, epoch))
			continue
		}
		m, ok := bySeq[r.key.seq]
		switch {
		case !ok:
			add(fmt.Sprintf("%s acknowledged to %s as %s is not in the history", r.key, r.actor, r.c))
		case m.From != r.c.From || m.CID != r.c.CID || m.Text != r.c.Text:
			add(fmt.Sprintf("%s acknowledged to %s as %s is %s/%s %q in the history", r.key, r.actor, r.c, m.From, m.CID, m.Text))
		}
	}
	if n > len(out) {
		out = append(out, fmt.Sprintf("… %d problems in all", n))
	}
	return out
}

// Epochs returns, per room, every epoch clients were told of, in the order
// they first saw them: a durable cluster keeps one per room through any
// restart.
func (k *MultiRoom) Epochs() map[string][]string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string][]string{}
	for room, es := range k.led.epochs {
		for _, e := range es {
			out[room] = append(out[room], e.epoch)
		}
	}
	return out
}

// Refusals returns how many sends were answered with each error code the
// clients retried (unavailable, rate_limited, storage_full,
// storage_failed), for reports.
func (k *MultiRoom) Refusals() map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(k.led.refusals))
	for c, n := range k.led.refusals {
		out[c] = n
	}
	return out
}

// retried are the error codes a client answers by sending the same
// request again after a backoff: docs/protocol.md §5.5 and §7 (storage
// errors: "Retry later (same cid)"; nothing was acknowledged).
var retried = []string{protocol.CodeUnavailable, protocol.CodeRateLimited, protocol.CodeStorageFull, protocol.CodeStorageFailed}

func isRetried(code string) bool { return slices.Contains(retried, code) }
