package bench

import (
	"fmt"
	"slices"
	"time"
)

// StepRule is how a stepped scenario decides whether a step was sustained.
type StepRule string

const (
	// RuleLegacy is chatbench's first rule: a step is behind when
	// publishes or deliveries stay under 95% of the target or p99 exceeds
	// the bound.
	RuleLegacy StepRule = "legacy"
	// RuleSustain is issue 17's many-sender rule: a step is sustained when
	// at least 97% of the target publishes and deliveries happen, p99 stays
	// within the bound (500ms in the issue) and p50 does not grow within
	// the step (see p50Grew).
	RuleSustain StepRule = "sustain"
)

// ParseStepRule reads --rule.
func ParseStepRule(s string) (StepRule, error) {
	switch r := StepRule(s); r {
	case RuleLegacy, RuleSustain:
		return r, nil
	case "":
		return RuleLegacy, nil
	}
	return "", fmt.Errorf("--rule %q: want legacy or sustain", s)
}

// share is the part of the target a step must reach under the rule.
func (r StepRule) share() float64 {
	if r == RuleSustain {
		return 0.97
	}
	return 0.95
}

// Conditions a step can fail, as StepReport.Failed names them.
const (
	condPublish     = "publish"
	condDelivery    = "delivery"
	condP99         = "p99"
	condP50Growth   = "p50_growth"
	condAcked       = "acked"
	condAckP99      = "ack_p99"
	condRefused     = "refused"
	condClosed      = "closed"
	condInterrupted = "interrupted"
)

// stepFigures are what a rule judges a step by.
type stepFigures struct {
	targetPublish, publish       float64
	targetDeliveries, deliveries float64
	p99                          time.Duration
	// firstP50 and secondP50 are the p50 latency of the messages sent in
	// each half of the step; nil when that half has no samples yet.
	firstP50, secondP50 *time.Duration
}

// stepFailure is one condition a step failed, with the reason people read.
type stepFailure struct {
	cond, reason string
}

// judgeStep applies rule to a step's figures and returns the conditions
// it failed, none when the step was sustained. It is pure, so that the
// rule can be tested on figures alone.
func judgeStep(rule StepRule, f stepFigures, maxP99 time.Duration) []stepFailure {
	var out []stepFailure
	share := rule.share()
	if f.publish < share*f.targetPublish {
		out = append(out, stepFailure{condPublish, fmt.Sprintf("published %s/s of %s/s", formatRate(f.publish), formatRate(f.targetPublish))})
	}
	if f.deliveries < share*f.targetDeliveries {
		out = append(out, stepFailure{condDelivery, fmt.Sprintf("delivered %s/s of %s/s", formatRate(f.deliveries), formatRate(f.targetDeliveries))})
	}
	if f.p99 > maxP99 {
		out = append(out, stepFailure{condP99, fmt.Sprintf("p99 %v above %v", f.p99.Round(time.Millisecond), maxP99)})
	}
	if rule == RuleSustain && f.firstP50 != nil && f.secondP50 != nil && p50Grew(*f.firstP50, *f.secondP50) {
		out = append(out, stepFailure{condP50Growth, fmt.Sprintf("p50 grew from %v in the first half to %v in the second",
			f.firstP50.Round(10*time.Microsecond), f.secondP50.Round(10*time.Microsecond))})
	}
	return out
}

// p50Grew reports whether the second half's p50 exceeds max(1.5 × the
// first half's, the first half's + 2ms): a queue that grows within the
// step shows as a rising median. The 2ms floor keeps sub-millisecond
// medians, whose jitter is a large ratio, from failing a step that keeps
// up.
func p50Grew(first, second time.Duration) bool {
	limit := max(first*3/2, first+2*time.Millisecond)
	return second > limit
}

// figures are the step's figures a rule judges.
func (s *StepReport) figures() stepFigures {
	f := stepFigures{
		targetPublish: s.TargetPublishPerSec, publish: s.PublishPerSec,
		targetDeliveries: s.TargetDeliveriesPerSec, deliveries: s.DeliveriesPerSec,
		p99: msDuration(s.Latency.P99MS),
	}
	if s.FirstHalfP50MS != nil {
		d := msDuration(*s.FirstHalfP50MS)
		f.firstP50 = &d
	}
	if s.SecondHalfP50MS != nil {
		d := msDuration(*s.SecondHalfP50MS)
		f.secondP50 = &d
	}
	return f
}

// fail marks s behind for the conditions in fails not already noted, and
// says why (nothing when fails is empty).
func (s *StepReport) fail(fails []stepFailure) {
	for _, f := range fails {
		if slices.Contains(s.Failed, f.cond) {
			continue
		}
		s.Behind = true
		s.Failed = append(s.Failed, f.cond)
		if s.Reason != "" {
			s.Reason += "; "
		}
		s.Reason += f.reason
	}
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }
