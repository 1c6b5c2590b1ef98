package membership

import (
	"context"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"
)

// rejectedPeerHint is attached to memberlist's complaints about traffic it
// refused for a label or key mismatch. memberlist's own lines ("discarding
// stream with unacceptable label", "no installed keys could decrypt the
// message") are accurate but do not say what an operator should do.
const rejectedPeerHint = "a peer's gossip was rejected: every node of a cluster must use the same gossip key and cluster label"

// rejectionMarkers are lowercase fragments of memberlist's messages when it
// drops a peer's traffic because of the label or encryption settings.
// "failed to receive and remove the stream label header" is deliberately not
// one: memberlist logs it for any connection that closes before sending a
// byte, such as a TCP probe of the gossip port, which is not a mismatch.
var rejectionMarkers = []string{
	"unacceptable label",
	"no installed keys",
	"decrypt",
	"remote state is encrypted",
	"remote state is not encrypted",
}

// newLogBridge returns a *log.Logger for memberlist that forwards each line
// to l as a structured record. memberlist writes one line per Printf,
// prefixed by a level tag such as "[DEBUG]" or "[ERR]". Records carry
// origin=memberlist: the caller's logger usually already has a component
// attribute, and a second one would be ambiguous.
// Every refutation of a suspicion of this node is counted in refutes.
func newLogBridge(l *slog.Logger, refutes *atomic.Uint64) *log.Logger {
	return log.New(&logBridge{log: l.With("origin", "memberlist"), refutes: refutes}, "", 0)
}

// refuteMarkers start memberlist's messages when it refutes a suspect or
// dead message about this node: the others suspected it (it was slow, or
// paused, or cut off) and it answers with a higher incarnation. memberlist
// offers no callback for this; its log line is the one signal, and a test
// checks the pinned memberlist still writes these words.
var refuteMarkers = []string{"Refuting a suspect message", "Refuting a dead message"}

// logBridge is the io.Writer behind newLogBridge's logger. log.Logger
// serializes calls to Write, and slog handlers are safe for concurrent use.
type logBridge struct {
	log     *slog.Logger
	refutes *atomic.Uint64
}

// Write turns one memberlist log line into one slog record. It never fails,
// so memberlist never sees a logging error.
func (b *logBridge) Write(p []byte) (int, error) {
	level, msg := parseMemberlistLine(string(p))
	for _, marker := range refuteMarkers {
		if strings.HasPrefix(msg, marker) && b.refutes != nil {
			b.refutes.Add(1)
		}
	}
	lower := strings.ToLower(msg)
	for _, marker := range rejectionMarkers {
		if strings.Contains(lower, marker) {
			b.log.Warn(msg, "hint", rejectedPeerHint)
			return len(p), nil
		}
	}
	b.log.Log(context.Background(), level, msg)
	return len(p), nil
}

// parseMemberlistLine splits memberlist's "[LEVEL] memberlist: text" into a
// slog level and the text. DEBUG and INFO lines go to Debug: memberlist's
// "info" is routine protocol chatter, and this package logs the membership
// changes that matter itself. Warnings, errors and untagged lines (a few
// memberlist messages have no tag) go to Warn.
func parseMemberlistLine(line string) (slog.Level, string) {
	line = strings.TrimRight(line, "\r\n")
	level := slog.LevelWarn
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			switch line[1:end] {
			case "DEBUG", "TRACE", "INFO":
				level = slog.LevelDebug
			}
			line = strings.TrimSpace(line[end+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}
