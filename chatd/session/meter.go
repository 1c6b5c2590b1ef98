package session

import (
	"time"

	"golang.org/x/time/rate"
)

// FrameMeter is a connection's token bucket for incoming frames with the
// abuse rule on top: more than AbuseLimit refusals within AbuseWindow means
// the connection should be closed (1008 on /ws). It is used by one reader
// goroutine at a time and is not safe for concurrent use.
type FrameMeter struct {
	limiter     *rate.Limiter
	abuseLimit  int
	abuseWindow time.Duration
	abuseCount  int
	abuseStart  time.Time
}

// NewFrameMeter returns a full bucket of burst tokens refilled at
// perSecond, closing after abuseLimit refusals within abuseWindow.
func NewFrameMeter(perSecond float64, burst, abuseLimit int, abuseWindow time.Duration) *FrameMeter {
	return &FrameMeter{limiter: rate.NewLimiter(rate.Limit(perSecond), burst), abuseLimit: abuseLimit, abuseWindow: abuseWindow}
}

// Allow takes a token for one frame. When none is left it counts a
// refusal; abusive is true once the refusals within the window pass the
// limit.
func (m *FrameMeter) Allow() (ok, abusive bool) {
	if m.limiter.Allow() {
		return true, false
	}
	now := time.Now()
	if now.Sub(m.abuseStart) > m.abuseWindow {
		m.abuseStart, m.abuseCount = now, 0
	}
	m.abuseCount++
	return false, m.abuseCount > m.abuseLimit
}
