package deliverycheck

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Check names one promise MultiRoom.Verify checks.
type Check string

// The checks of MultiRoom.Verify. Each one fails the test.
const (
	// CheckLost: an acknowledged message is missing at a subscriber that
	// was owed it (subscribed before its seq, never told of a gap or a new
	// epoch covering it), or that subscriber got something else at its seq.
	CheckLost Check = "lost"
	// CheckDuplicated: a subscriber got the same seq twice, or a message
	// was stored (delivered) under two seqs.
	CheckDuplicated Check = "duplicated"
	// CheckOutOfOrder: a subscriber got a seq other than the next one.
	CheckOutOfOrder Check = "out of order"
	// CheckConflict: one seq of one epoch carried two different messages
	// (from, cid, text), seen across subscribers and acks; or one message
	// was acknowledged under two seqs.
	CheckConflict Check = "conflicting seq"
	// CheckAckBeforeMessage: a sender's connection got the ack of its
	// message before the message (docs/protocol.md §5.5 and §6).
	CheckAckBeforeMessage Check = "ack before message"
	// CheckSilent: a subscriber heard nothing from a room, not even a
	// joined with recovered:false, for longer than the silence bound while
	// the room acknowledged messages newer than its last (time its node was
	// frozen or cut off, as the test declared, is not counted).
	CheckSilent Check = "silent subscriber"
	// CheckNotCaughtUp: at the end, a subscriber never reached the highest
	// acknowledged seq of its room, nor was told it could not.
	CheckNotCaughtUp Check = "not caught up"
	// CheckRestart: a room started a new epoch, erasing acknowledged
	// messages, though the test did not declare every copy of it lost.
	CheckRestart Check = "epoch restart"
	// CheckRollback: a resume was answered recovered:true with a head below
	// the seq the client had already received: the room went back.
	CheckRollback Check = "rollback"
	// CheckNoRecovery: a room touched by a fault never acknowledged a
	// message after it.
	CheckNoRecovery Check = "no recovery"
	// CheckAuthRefused: the server refused a client's hello (close 4001)
	// though the test gave it a valid token (MultiRoomConfig.Token).
	CheckAuthRefused Check = "auth refused"
	// CheckProtocol: a frame the protocol does not allow (undecodable, for
	// a room not joined, an error code a good client cannot act on).
	CheckProtocol Check = "protocol"
)

// checkOrder is the order problems are reported in.
var checkOrder = []Check{CheckLost, CheckConflict, CheckDuplicated, CheckOutOfOrder, CheckAckBeforeMessage,
	CheckSilent, CheckNotCaughtUp, CheckRestart, CheckRollback, CheckNoRecovery, CheckAuthRefused, CheckProtocol}

// maxExamples is how many concrete examples a check keeps.
const maxExamples = 12

// findings counts each check's failures and keeps their first examples.
type findings struct {
	count    map[Check]int
	examples map[Check][]string
}

func newFindings() findings {
	return findings{count: map[Check]int{}, examples: map[Check][]string{}}
}

func (f *findings) example(c Check, s string) {
	f.count[c]++
	if len(f.examples[c]) < maxExamples {
		f.examples[c] = append(f.examples[c], s)
	}
}

// Restart is a room that started a new epoch during the run.
type Restart struct {
	Room, From, To string
	// Erased is how many acknowledged messages the old epoch held;
	// Undelivered how many of them some subscriber never got.
	Erased, Undelivered int
	// Allowed says why the test expected it (every copy lost together);
	// empty when it did not.
	Allowed string
}

// Recovery is how long the rooms a fault touched took to acknowledge a
// message again.
type Recovery struct {
	Fault string
	// After is the time from the fault to the first ack in the slowest
	// of its rooms (Room); Never lists rooms that never acked again.
	After time.Duration
	Room  string
	Never []string
}

// Report is what MultiRoom.Verify found: the figures of a scenario and
// every failed check with examples.
type Report struct {
	Scenario string
	// Acked is the number of distinct messages acknowledged.
	Acked int
	// Lost is the number of acknowledged messages missing (or replaced by
	// another message) at one subscriber or more that was owed them.
	Lost int
	// LostEverywhere is how many of those no subscriber got at all (at the
	// seq they were acknowledged at).
	LostEverywhere int
	// Duplicated counts deliveries of a seq a subscriber already had, and
	// messages stored under two seqs.
	Duplicated int
	// OutOfOrder counts deliveries that were not the next seq.
	OutOfOrder int
	// ConflictingSeqs is the number of (room, epoch, seq) that carried two
	// different messages.
	ConflictingSeqs int
	// AckBeforeMessage counts acks a sender got before its own message.
	AckBeforeMessage int
	// SilentSubscribers counts subscriptions left silent past the bound.
	SilentSubscribers int
	// LongestStall is the longest a subscriber heard nothing from a room
	// that had acknowledged newer messages, not counting time its own node
	// was declared frozen or cut off.
	LongestStall time.Duration
	// AnnouncedGaps counts joined frames with recovered:false in the same
	// epoch (a gap the server owned up to).
	AnnouncedGaps int
	// Restarts are the rooms that started a new epoch.
	Restarts []Restart
	// Recoveries has one entry per fault the test announced.
	Recoveries []Recovery
	// SilenceBound is the bound CheckSilent applied.
	SilenceBound time.Duration
	find         findings
}

// add records a failed check found outside the ledger.
func (r *Report) add(c Check, example string) {
	if r.find.count == nil {
		r.find = newFindings()
	}
	r.find.example(c, example)
}

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, n := range r.find.count {
		if n > 0 {
			return true
		}
	}
	return false
}

// FailedChecks lists the checks that failed, in report order.
func (r Report) FailedChecks() []Check {
	var out []Check
	for _, c := range checkOrder {
		if r.find.count[c] > 0 {
			out = append(out, c)
		}
	}
	return out
}

// Problems returns, per failed check, a line with its count and its
// examples.
func (r Report) Problems() []string {
	var out []string
	for _, c := range r.FailedChecks() {
		out = append(out, fmt.Sprintf("%s: %d\n    %s", c, r.find.count[c], strings.Join(r.find.examples[c], "\n    ")))
	}
	return out
}

// Recovery returns the longest recovery of the scenario's faults, and
// false when a room never recovered or no fault was announced.
func (r Report) Recovery() (time.Duration, bool) {
	var longest time.Duration
	for _, rec := range r.Recoveries {
		if len(rec.Never) > 0 {
			return 0, false
		}
		longest = max(longest, rec.After)
	}
	return longest, len(r.Recoveries) > 0
}

// fail fails t once per failed check, with its examples.
func (r Report) fail(t testing.TB) {
	t.Helper()
	for _, p := range r.Problems() {
		t.Errorf("%s: %s", r.Scenario, p)
	}
	t.Logf("%s: %s", r.Scenario, r.Summary())
}

// Summary is the report's figures on one line.
func (r Report) Summary() string {
	rec := "n/a"
	if d, ok := r.Recovery(); ok {
		rec = d.Round(10 * time.Millisecond).String()
	} else if len(r.Recoveries) > 0 {
		rec = "never"
	}
	var each []string
	for _, x := range r.Recoveries {
		if len(x.Never) > 0 {
			each = append(each, fmt.Sprintf("%s: never (%d rooms)", x.Fault, len(x.Never)))
		} else {
			each = append(each, fmt.Sprintf("%s: %v (%s)", x.Fault, x.After.Round(10*time.Millisecond), x.Room))
		}
	}
	if len(each) > 0 {
		rec += " [" + strings.Join(each, "; ") + "]"
	}
	return fmt.Sprintf("acked %d, lost %d (%d at no subscriber), duplicated %d, out of order %d, conflicting seqs %d, ack before message %d, silent subscribers %d (bound %v), longest stall %v, recovery %s, announced gaps %d, epoch restarts %s",
		r.Acked, r.Lost, r.LostEverywhere, r.Duplicated, r.OutOfOrder, r.ConflictingSeqs, r.AckBeforeMessage, r.SilentSubscribers,
		r.SilenceBound.Round(100*time.Millisecond), r.LongestStall.Round(10*time.Millisecond), rec, r.AnnouncedGaps, r.restartCell())
}

// restartCell sums the epoch restarts up for the table.
func (r Report) restartCell() string {
	if len(r.Restarts) == 0 {
		return "none"
	}
	var allowed, unexpected, erasedOK, erasedBad int
	for _, x := range r.Restarts {
		if x.Allowed != "" {
			allowed++
			erasedOK += x.Erased
		} else {
			unexpected++
			erasedBad += x.Erased
		}
	}
	var parts []string
	if allowed > 0 {
		parts = append(parts, fmt.Sprintf("%d rooms, %d acked erased (every copy lost together)", allowed, erasedOK))
	}
	if unexpected > 0 {
		parts = append(parts, fmt.Sprintf("%d rooms, %d acked erased (NOT expected)", unexpected, erasedBad))
	}
	return strings.Join(parts, "; ")
}

// MarkdownTable renders reports as a Markdown table, one row per scenario,
// for docs/reliability.md.
func MarkdownTable(reps []Report) string {
	var b strings.Builder
	b.WriteString("| Scenario | Acked | Lost | Duplicated | Out of order | Conflicting seqs | Ack before message | Silent subscribers | Longest stall | Recovery | Epoch restarts | Result |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range reps {
		rec := "–"
		if d, ok := r.Recovery(); ok {
			rec = fmt.Sprintf("%.1f s", d.Seconds())
		} else if len(r.Recoveries) > 0 {
			rec = "never"
		}
		result := "pass"
		if checks := r.FailedChecks(); len(checks) > 0 {
			names := make([]string, len(checks))
			for i, c := range checks {
				names[i] = string(c)
			}
			result = "**FAIL**: " + strings.Join(names, ", ")
		}
		lost := fmt.Sprint(r.Lost)
		if r.LostEverywhere > 0 {
			lost = fmt.Sprintf("%d (%d at no subscriber)", r.Lost, r.LostEverywhere)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %d | %d | %d | %.1f s | %s | %s | %s |\n",
			r.Scenario, r.Acked, lost, r.Duplicated, r.OutOfOrder, r.ConflictingSeqs, r.AckBeforeMessage,
			r.SilentSubscribers, r.LongestStall.Seconds(), rec, r.restartCell(), result)
	}
	return b.String()
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
